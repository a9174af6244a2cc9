use std::process::ExitCode;
use std::sync::Arc;

use orderflow::payment::PaymentGateway;
use orderflow_runtime::config::{DatabaseConfig, LogFormat, PaymentConfig, WorkerConfig};
use orderflow_runtime::runtime::WorkerRuntime;

// One thread, as `orderflow_runtime::runtime` explains.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow_runtime::runtime::exit_code("payment-worker", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let mut runtime = WorkerRuntime::new(
        &DatabaseConfig::from_env()?,
        &WorkerConfig::from_env()?,
        payment_worker::KINDS,
    );
    let payment = PaymentConfig::from_env()?;
    let gateway: Arc<dyn PaymentGateway> = match &payment.gateway_url {
        Some(url) => {
            tracing::info!(%url, "charging through the provider over HTTP");
            Arc::new(payment_worker::http_gateway::HttpGateway::new(
                url, &payment,
            )?)
        }
        None => {
            tracing::info!(
                "charging through the in-process provider simulator (PAYMENT_GATEWAY_URL unset)"
            );
            Arc::new(gateway_sim::SimulatedGateway::new(payment))
        }
    };
    payment_worker::register(&mut runtime, gateway);
    runtime.run().await;
    Ok(())
}
