use std::process::ExitCode;
use std::sync::Arc;

use gateway_sim::{Behaviour, Latency, Provider, Retention};
use orderflow_runtime::config::{GatewaySimConfig, LogFormat};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow_runtime::runtime::exit_code("gateway-sim", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let config = GatewaySimConfig::from_env()?;
    let behaviour = Behaviour {
        latency: Latency {
            median: config.latency_p50,
            p99: config.latency_p99,
        },
        transient_failure_rate: config.transient_failure_rate,
        lost_response_rate: config.lost_response_rate,
    };
    let retention = Retention {
        window: config.idempotency_window,
        max_keys: config.max_keys,
    };
    let provider = match &config.journal_dir {
        Some(dir) => Provider::with_journal(behaviour, retention, dir.clone())
            .map_err(|e| format!("GATEWAY_JOURNAL_DIR {}: {e}", dir.display()))?,
        None => Provider::new(behaviour, retention),
    };
    let audit = provider.audit();
    let (server, addr) =
        gateway_sim::server::serve(config.addr, Arc::new(provider), config.api_key.clone())?;
    tracing::info!(%addr, keys_from_journal = audit.keys_held, ?behaviour, "gateway-sim listening");
    server.await?;
    Ok(())
}
