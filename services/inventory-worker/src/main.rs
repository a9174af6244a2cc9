use std::process::ExitCode;

use orderflow::config::{ConfigError, DatabaseConfig, LogFormat, WorkerConfig};
use orderflow::runtime::WorkerRuntime;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("inventory-worker: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), ConfigError> {
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
