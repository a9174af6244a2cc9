use std::process::ExitCode;

use orderflow_runtime::config::{DatabaseConfig, LogFormat, MailConfig, WorkerConfig};
use orderflow_runtime::mailer::Mailer;
use orderflow_runtime::runtime::WorkerRuntime;

// One thread, as `orderflow_runtime::runtime` explains.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow_runtime::runtime::exit_code("notification-worker", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let mail = MailConfig::from_env()?;
    let mailer = Mailer::from_config(&mail)?;
    let mut runtime = WorkerRuntime::new(
        &DatabaseConfig::from_env()?,
        &WorkerConfig::from_env()?,
        notification_worker::KINDS,
    );
    notification_worker::register(&mut runtime, mailer, mail.letterhead());
    runtime.run().await;
    Ok(())
}
