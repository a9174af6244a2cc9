use std::process::ExitCode;
use std::sync::Arc;

use orderflow::config::{ConfigError, DatabaseConfig, LogFormat, PaymentConfig, WorkerConfig};
use orderflow::payment::SimulatedGateway;
use orderflow::runtime::WorkerRuntime;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("payment-worker: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), ConfigError> {
    orderflow::telemetry::init(LogFormat::from_env()?);
    let mut runtime = WorkerRuntime::new(
        &DatabaseConfig::from_env()?,
        &WorkerConfig::from_env()?,
        payment_worker::KINDS,
    );
    let gateway = Arc::new(SimulatedGateway::new(PaymentConfig::from_env()?));
    payment_worker::register(&mut runtime, gateway);
    runtime.run().await;
    Ok(())
}
