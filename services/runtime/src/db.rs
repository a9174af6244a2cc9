use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseConfig;

pub use orderflow_queue::Pool;

/// The order domain's schema. The queue's ([`orderflow_queue::MIGRATIONS`]) goes first:
/// [`run_migrations`] applies both.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// bb8 reports a refused connection as a timeout; this sink logs the real cause.
#[derive(Debug, Clone, Copy)]
struct LogConnectionErrors;

impl bb8::ErrorSink<diesel_async::pooled_connection::PoolError> for LogConnectionErrors {
    fn sink(&self, error: diesel_async::pooled_connection::PoolError) {
        tracing::warn!(%error, "database connection failed");
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<diesel_async::pooled_connection::PoolError>> {
        Box::new(*self)
    }
}

/// The API's pool size when `DB_POOL_SIZE` is unset.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// Bounds on what one statement of a session may cost in time: for a service that answers
/// people (the API), so that a stalled database or a held lock ends a request with an
/// error instead of holding it.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `statement_timeout`: the longest one statement may run.
    pub statement_timeout: std::time::Duration,
    /// `lock_timeout`: the longest one statement may wait for a lock.
    pub lock_timeout: std::time::Duration,
}

impl SessionLimits {
    fn sql(&self) -> String {
        format!(
            "; SET statement_timeout = {}; SET lock_timeout = {}",
            self.statement_timeout.as_millis().max(1),
            self.lock_timeout.as_millis().max(1)
        )
    }
}

/// Builds a pool of `size` connections without connecting: the first use connects, so a
/// service can start (and report not-ready) while the database is still coming up.
pub fn pool(config: &DatabaseConfig, size: u32) -> Pool {
    pool_with_limits(config, size, None)
}

/// As [`pool`], with every session's statements bounded by `limits`.
pub fn pool_with_limits(config: &DatabaseConfig, size: u32, limits: Option<SessionLimits>) -> Pool {
    let setup = format!(
        "{SESSION_SETUP}{}",
        limits.map(|limits| limits.sql()).unwrap_or_default()
    );
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(move |url| Box::pin(establish(url, setup.clone())));
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        config.url.expose(),
        manager_config,
    );
    bb8::Pool::builder()
        .max_size(size)
        // The connection returned last is handed out first. bb8's default (first in,
        // first out) rotates the statements over every connection the pool ever opened,
        // so each statement wakes the backend that has slept longest; reusing the warm one
        // is faster and cheaper (`load-tests/RESULTS.md`, "The pool hands out the
        // connection returned last"). Connections left unused close after bb8's idle
        // timeout.
        .queue_strategy(bb8::QueueStrategy::Lifo)
        .connection_timeout(config.acquire_timeout)
        // No `SELECT 1` round trip on every checkout (it cost a statement per query under
        // load). A connection that broke while idle fails its next use instead; diesel
        // marks it broken and the pool drops it, and that request answers 503 (a task
        // is retried).
        .test_on_check_out(false)
        .error_sink(Box::new(LogConnectionErrors))
        .build_unchecked(manager)
}

/// What every pooled session is set to before its first use: what the queue requires
/// ([`orderflow_queue::SESSION_SETUP`]: generic plans, no sequential scans, no JIT), which
/// suits the services' own statements too (lookups by key, set-wise writes by key).
const SESSION_SETUP: &str = orderflow_queue::SESSION_SETUP;

/// Opens a pooled connection and applies `setup` ([`SESSION_SETUP`] and any limits).
async fn establish(url: &str, setup: String) -> diesel::ConnectionResult<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&setup)
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migration lock: {0}")]
    Lock(#[from] diesel::result::Error),
    #[error("migration failed: {0}")]
    Migrate(String),
}

/// Arbitrary, fixed: serialises migrations started by several processes at once.
const MIGRATION_LOCK_ID: i64 = 0x6f72_6465_7266_6c6f;

/// Applies pending migrations once the database accepts connections, retrying with
/// backoff until then: a service started before its database waits instead of exiting
/// (and being restarted in a loop by its supervisor). Other failures return at once.
pub async fn run_migrations_when_reachable(
    database_url: &str,
) -> Result<Vec<String>, MigrationError> {
    let mut delay = std::time::Duration::from_millis(250);
    loop {
        match run_migrations(database_url).await {
            Err(MigrationError::Connect(error)) => {
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "database not reachable; will migrate once it is");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
            outcome => return outcome,
        }
    }
}

/// Applies pending migrations, the queue's then the domain's. Needs a multi-thread tokio runtime (diesel's harness
/// blocks in place).
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, MigrationError> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_ID})"))
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let mut applied = |migrations| {
        harness
            .run_pending_migrations(migrations)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|error| MigrationError::Migrate(error.to_string()))
    };
    let applied = applied(orderflow_queue::MIGRATIONS).and_then(|mut queue| {
        queue.extend(applied(MIGRATIONS)?);
        Ok(queue)
    });
    let mut conn = harness.into_inner();
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})"))
        .execute(&mut conn)
        .await?;
    applied
}

/// Readiness probes give up quickly; a pool checkout alone may wait longer.
pub const READINESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the database answers a trivial query within [`READINESS_TIMEOUT`].
pub async fn database_ready(pool: &Pool) -> Result<(), String> {
    let probe = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(READINESS_TIMEOUT, probe)
        .await
        .unwrap_or_else(|_| Err("the database did not answer within a second".into()))
}
