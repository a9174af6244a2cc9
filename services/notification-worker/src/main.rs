use std::process::ExitCode;

use orderflow::config::{DatabaseConfig, LogFormat, MailConfig, WorkerConfig};
use orderflow::email::Mailer;
use orderflow::runtime::WorkerRuntime;

// One thread, as `orderflow::runtime` explains.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orderflow::runtime::exit_code("notification-worker", run().await)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    orderflow::telemetry::init(LogFormat::from_env()?);
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
