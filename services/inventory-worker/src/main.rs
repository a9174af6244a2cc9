use std::process::ExitCode;

use orderflow::config::{DatabaseConfig, LogFormat, WorkerConfig};
use orderflow::runtime::WorkerRuntime;

// One thread, as `orderflow::runtime` explains.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow::runtime::exit_code("inventory-worker", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    orderflow::telemetry::init(LogFormat::from_env()?);
    let mut runtime = WorkerRuntime::new(
        &DatabaseConfig::from_env()?,
        &WorkerConfig::from_env()?,
        inventory_worker::KINDS,
    );
    inventory_worker::register(&mut runtime);
    runtime.run().await;
    Ok(())
}
