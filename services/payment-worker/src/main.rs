use std::process::ExitCode;
use std::sync::Arc;

use orderflow::config::{DatabaseConfig, LogFormat, PaymentConfig, WorkerConfig};
use orderflow::payment::SimulatedGateway;
use orderflow::runtime::WorkerRuntime;

// One thread, as `orderflow::runtime` explains.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow::runtime::exit_code("payment-worker", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
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
