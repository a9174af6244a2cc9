//! Test support for the queue's own tests: a database of its own per test, cloned from a
//! template that holds the queue's schema alone (the queue's migrations, nothing of any
//! application), and a wait with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};
use diesel_migrations::MigrationHarness;
use orderflow_queue::Pool;
use sha2::{Digest, Sha256};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The server the tests create their databases on: `TEST_DATABASE_URL`, else the server of
/// `DATABASE_URL`, else the local default. Any database name in it is ignored.
pub fn server_url() -> String {
    let url = std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| DEFAULT_SERVER.to_string());
    match url.rfind('/') {
        Some(slash) if slash > "postgres://".len() => url[..slash].to_string(),
        _ => url,
    }
}

fn database_url(name: &str) -> String {
    format!("{}/{name}", server_url())
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = ensure_template().await;
        let name = format!("orderflow_test_queue_{}", uuid::Uuid::new_v4().simple());
        execute_as_admin(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await;
        Self {
            url: database_url(&name),
            name,
        }
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("a connection to the test database")
    }

    /// A pool whose sessions are set up as the queue requires
    /// ([`orderflow_queue::SESSION_SETUP`]), as a service's pool would be.
    pub fn pool(&self, size: u32) -> Pool {
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(|url| {
            Box::pin(async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.batch_execute(orderflow_queue::SESSION_SETUP)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            })
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&self.url, config);
        bb8::Pool::builder()
            .max_size(size)
            // As the services' pools: the connection returned last is handed out first.
            .queue_strategy(bb8::QueueStrategy::Lifo)
            .connection_timeout(Duration::from_secs(5))
            .build_unchecked(manager)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context: a thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&database_url("postgres"))
                    .await
                    .ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: test database {} was not dropped", self.name);
        }
    }
}

async fn admin_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&database_url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {} ({e})", server_url()))
}

async fn execute_as_admin(statement: &str) {
    let mut admin = admin_connection().await;
    diesel::sql_query(statement)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The template is named after a hash of the queue's migrations, so a changed migration
/// gets a fresh one. An advisory lock makes concurrent test processes build it once.
async fn ensure_template() -> String {
    const LOCK: i64 = 7_261_002;
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let name = format!(
        "orderflow_template_queue_{}",
        &migrations_hash(&migrations)[..16]
    );
    let mut admin = admin_connection().await;
    diesel::sql_query(format!("SELECT pg_advisory_lock({LOCK})"))
        .execute(&mut admin)
        .await
        .expect("the template lock");
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let found: Found =
        diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut admin)
            .await
            .expect("the template lookup");
    if found.n == 0 {
        let building = format!("{name}_building");
        execute_as_admin(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await;
        execute_as_admin(&format!("CREATE DATABASE {building}")).await;
        let conn = AsyncPgConnection::establish(&database_url(&building))
            .await
            .expect("a connection to the template");
        let mut harness = AsyncMigrationHarness::new(conn);
        harness
            .run_pending_migrations(orderflow_queue::MIGRATIONS)
            .expect("the queue's migrations apply");
        drop(harness);
        execute_as_admin(&format!("ALTER DATABASE {building} RENAME TO {name}")).await;
    }
    diesel::sql_query(format!("SELECT pg_advisory_unlock({LOCK})"))
        .execute(&mut admin)
        .await
        .expect("the template unlock");
    name
}

fn migrations_hash(dir: &Path) -> String {
    let mut files = walk(dir);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let name = file.strip_prefix(dir).unwrap_or(&file);
        hasher.update(name.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap_or_default());
    }
    hex::encode(hasher.finalize())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Polls `check` until it yields a value or `deadline` passes. The deadline bounds a hung
/// system; it is not a performance assertion.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() <= deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
