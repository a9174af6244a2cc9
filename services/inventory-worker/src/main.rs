use std::process::ExitCode;

use orderflow_runtime::config::{DatabaseConfig, LogFormat, WorkerConfig};
use orderflow_runtime::runtime::WorkerRuntime;

// One thread, as `orderflow_runtime::runtime` explains.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow_runtime::runtime::exit_code("inventory-worker", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let mut runtime = WorkerRuntime::new(
        &DatabaseConfig::from_env()?,
        &WorkerConfig::from_env()?,
        inventory_worker::KINDS,
    );
    inventory_worker::register(&mut runtime);
    runtime.run().await;
    Ok(())
}
