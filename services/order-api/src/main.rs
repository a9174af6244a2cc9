use std::process::ExitCode;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use orderflow_runtime::config::{ApiConfig, DatabaseConfig, LogFormat};

const USAGE: &str = "usage: order-api [command]
  serve                     run the HTTP API (default); migrates first unless MIGRATE_ON_START=false
  migrate                   apply pending database migrations and exit
  seed                      add the demo catalog (idempotent) and exit
  healthcheck               exit 0 if the API at API_ADDR answers /readyz with 200 (for containers)
operator commands (read DATABASE_URL directly):
  queue                     tasks by kind and state, oldest waiting age, tasks past their lease
  dead-tasks [LIMIT]        the most recent dead tasks (default 20) with their last error
  retry-task ID             give a dead task a fresh set of attempts
  timeline ORDER_ID [--follow]  an order's status and timeline; --follow waits for new events
  check-invariants STOCK_JSON   check the spec's invariants after a run, given each product's
                            stock before it ({\"<product id>\": stock, ...}); exit 1 on a violation";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let result = match command.as_deref() {
        None | Some("serve") => serve().await,
        Some("migrate") => migrate().await,
        Some("seed") => seed().await,
        Some("healthcheck") => healthcheck().await,
        Some("check-invariants") => check_invariants(std::env::args().nth(2)).await,
        Some(command @ ("queue" | "dead-tasks" | "retry-task" | "timeline")) => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            operator(command, &args).await
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    };
    orderflow_runtime::runtime::exit_code("order-api", result)
}

type AnyError = Box<dyn std::error::Error>;

async fn migrate() -> Result<(), AnyError> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let database = DatabaseConfig::from_env()?;
    let applied = orderflow_runtime::db::run_migrations(database.url.expose()).await?;
    tracing::info!(?applied, "migrations applied");
    Ok(())
}

async fn seed() -> Result<(), AnyError> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let database = DatabaseConfig::from_env()?;
    let mut conn = AsyncPgConnection::establish(database.url.expose()).await?;
    let added = orderflow::catalog::seed_demo_catalog(&mut conn).await?;
    tracing::info!(added, "demo catalog seeded");
    Ok(())
}

async fn operator(command: &str, args: &[String]) -> Result<(), AnyError> {
    use order_api::operator;
    let database = DatabaseConfig::from_env()?;
    let mut conn = AsyncPgConnection::establish(database.url.expose()).await?;
    let arg = |n: usize, what: &str| {
        args.get(n)
            .cloned()
            .ok_or_else(|| format!("{command} needs {what}\n{USAGE}"))
    };
    let text = match command {
        "queue" => operator::queue(&mut conn).await?,
        "dead-tasks" => {
            let limit = match args.first() {
                Some(raw) => raw
                    .parse()
                    .map_err(|_| format!("LIMIT must be a number, not {raw:?}"))?,
                None => 20,
            };
            if !(1..=500).contains(&limit) {
                return Err("LIMIT must be from 1 to 500".into());
            }
            operator::dead_tasks(&mut conn, limit).await?
        }
        "retry-task" => {
            let raw = arg(0, "a task id")?;
            let id = raw.parse().map_err(|_| format!("not a task id: {raw:?}"))?;
            operator::retry_task(&mut conn, id).await?
        }
        _ => {
            let raw = arg(0, "an order id")?;
            let id =
                uuid::Uuid::parse_str(&raw).map_err(|_| format!("not an order id: {raw:?}"))?;
            let follow = args.iter().any(|a| a == "--follow" || a == "-f");
            operator::timeline(&mut conn, id, follow, &mut std::io::stdout()).await?;
            String::new()
        }
    };
    print!("{text}");
    Ok(())
}

async fn check_invariants(stock_file: Option<String>) -> Result<(), AnyError> {
    let path = stock_file.ok_or_else(|| format!("check-invariants needs STOCK_JSON\n{USAGE}"))?;
    let raw = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let initial_stock: std::collections::HashMap<uuid::Uuid, i32> =
        serde_json::from_str(&raw).map_err(|e| format!("{path}: {e}"))?;
    let database = DatabaseConfig::from_env()?;
    let mut conn = AsyncPgConnection::establish(database.url.expose()).await?;
    let report = orderflow::invariants::check(&mut conn, &initial_stock, None).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.violations.is_empty() {
        Ok(())
    } else {
        Err(format!("{} invariant violation(s)", report.violations.len()).into())
    }
}

async fn healthcheck() -> Result<(), AnyError> {
    let api = ApiConfig::from_env()?;
    order_api::healthcheck::probe(api.addr).await?;
    Ok(())
}

async fn serve() -> Result<(), AnyError> {
    orderflow_runtime::telemetry::init(LogFormat::from_env()?);
    let database = DatabaseConfig::from_env()?;
    let api = ApiConfig::from_env()?;
    if api.migrate_on_start {
        tokio::select! {
            applied = orderflow_runtime::db::run_migrations_when_reachable(database.url.expose()) => {
                tracing::info!(applied = ?applied?, "migrations applied");
            }
            () = orderflow_runtime::runtime::shutdown_signal() => {
                tracing::info!("stopped while waiting for the database");
                return Ok(());
            }
        }
    }
    let pool = order_api::startup::api_pool(&database, &api);
    let app = order_api::startup::build(&api, pool)?;
    tracing::info!(addr = %app.addr, admin = api.admin_token.is_some(), "order API listening");
    app.server.await?;
    Ok(())
}
