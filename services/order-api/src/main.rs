use std::process::ExitCode;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use orderflow::config::{ApiConfig, DatabaseConfig, LogFormat};

const USAGE: &str = "usage: order-api [serve | migrate | seed | healthcheck]
  serve        run the HTTP API (default); migrates first unless MIGRATE_ON_START=false
  migrate      apply pending database migrations and exit
  seed         add the demo catalog (idempotent) and exit
  healthcheck  exit 0 if the API at API_ADDR answers /readyz with 200 (for containers)";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let result = match command.as_deref() {
        None | Some("serve") => serve().await,
        Some("migrate") => migrate().await,
        Some("seed") => seed().await,
        Some("healthcheck") => healthcheck().await,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    };
    orderflow::runtime::exit_code("order-api", result)
}

type AnyError = Box<dyn std::error::Error>;

async fn migrate() -> Result<(), AnyError> {
    orderflow::telemetry::init(LogFormat::from_env()?);
    let database = DatabaseConfig::from_env()?;
    let applied = orderflow::db::run_migrations(database.url.expose()).await?;
    tracing::info!(?applied, "migrations applied");
    Ok(())
}

async fn seed() -> Result<(), AnyError> {
    orderflow::telemetry::init(LogFormat::from_env()?);
    let database = DatabaseConfig::from_env()?;
    let mut conn = AsyncPgConnection::establish(database.url.expose()).await?;
    let added = orderflow::catalog::seed_demo_catalog(&mut conn).await?;
    tracing::info!(added, "demo catalog seeded");
    Ok(())
}

async fn healthcheck() -> Result<(), AnyError> {
    let api = ApiConfig::from_env()?;
    order_api::healthcheck::probe(api.addr).await?;
    Ok(())
}

async fn serve() -> Result<(), AnyError> {
    orderflow::telemetry::init(LogFormat::from_env()?);
    let database = DatabaseConfig::from_env()?;
    let api = ApiConfig::from_env()?;
    if api.migrate_on_start {
        tokio::select! {
            applied = orderflow::db::run_migrations_when_reachable(database.url.expose()) => {
                tracing::info!(applied = ?applied?, "migrations applied");
            }
            () = orderflow::runtime::shutdown_signal() => {
                tracing::info!("stopped while waiting for the database");
                return Ok(());
            }
        }
    }
    let pool = orderflow::db::pool(
        &database,
        database.pool_size_or(orderflow::db::DEFAULT_POOL_SIZE),
    );
    let app = order_api::startup::build(&api, pool)?;
    tracing::info!(addr = %app.addr, admin = api.admin_token.is_some(), "order API listening");
    app.server.await?;
    Ok(())
}
