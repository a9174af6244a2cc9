//! Test support for the queue's own tests and for applications built on it (feature
//! `testing`): one database per test, cloned from a template that holds the migrated
//! schema, and a wait with a deadline. The template is named after a hash of the
//! migrations, so a changed migration gets a fresh one; an advisory lock makes concurrent
//! test processes build it once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The server tests create their databases on: `TEST_DATABASE_URL`, else the server of
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

pub fn database_url(name: &str) -> String {
    format!("{}/{name}", server_url())
}

/// A connection to the server's `postgres` database, for creating and dropping others.
pub async fn admin_connection() -> AsyncPgConnection {
    AsyncPgConnection::establish(&database_url("postgres"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {} ({e}); run the tests through scripts/test.sh",
                server_url()
            )
        })
}

async fn execute(conn: &mut AsyncPgConnection, statement: &str) {
    diesel::sql_query(statement)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A database of its own for one test, cloned from `template`, dropped when the value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// `prefix` names the databases (`<prefix>_<uuid>`), so leftovers can be found.
    pub async fn from_template(template: &str, prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        execute(
            &mut admin_connection().await,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await;
        Self {
            url: database_url(&name),
            name,
        }
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.name))
    }
}

impl Drop for TestDatabase {
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

/// The template for `prefix`'s tests: built once per content of `migration_dirs` by
/// `migrate`, given the URL of the database being built, and returned by name.
pub async fn ensure_template<F, Fut>(prefix: &str, migration_dirs: &[PathBuf], migrate: F) -> String
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = format!("{prefix}_{}", &migrations_hash(migration_dirs)[..16]);
    let mut admin = admin_connection().await;
    // One lock per prefix, so that different templates build side by side.
    let lock = i64::from_le_bytes(
        Sha256::digest(prefix.as_bytes())[..8]
            .try_into()
            .unwrap_or_default(),
    );
    execute(&mut admin, &format!("SELECT pg_advisory_lock({lock})")).await;
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
            .expect("the template lookup runs");
    if found.n == 0 {
        let building = format!("{name}_building");
        execute(
            &mut admin,
            &format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
        )
        .await;
        execute(&mut admin, &format!("CREATE DATABASE {building}")).await;
        migrate(database_url(&building)).await;
        execute(
            &mut admin,
            &format!("ALTER DATABASE {building} RENAME TO {name}"),
        )
        .await;
    }
    execute(&mut admin, &format!("SELECT pg_advisory_unlock({lock})")).await;
    name
}

fn migrations_hash(dirs: &[PathBuf]) -> String {
    let mut hasher = Sha256::new();
    for dir in dirs {
        let mut files = walk(dir);
        files.sort();
        for file in files {
            // Relative names: every checkout of the same migrations shares one template.
            let name = file.strip_prefix(dir).unwrap_or(&file);
            hasher.update(name.to_string_lossy().as_bytes());
            hasher.update(std::fs::read(&file).unwrap_or_default());
        }
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
/// system; it is not a performance assertion (machines here are shared and noisy).
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

/// The queue's own schema alone, as a template: what the queue's tests run on.
pub async fn queue_template() -> String {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    ensure_template(
        "orderflow_template_queue",
        &[migrations],
        |url| async move {
            use diesel_migrations::MigrationHarness;
            let conn = AsyncPgConnection::establish(&url)
                .await
                .expect("a connection to the template being built");
            let mut harness = diesel_async::AsyncMigrationHarness::new(conn);
            harness
                .run_pending_migrations(crate::MIGRATIONS)
                .expect("the queue's migrations apply");
        },
    )
    .await
}
