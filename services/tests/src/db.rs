use std::path::Path;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

/// The server tests create their databases on: `TEST_DATABASE_URL`, else the server of
/// `DATABASE_URL`, else the default local one. Any database name in it is ignored.
pub fn server_url() -> String {
    let url = std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| orderflow_runtime::config::DEFAULT_DATABASE_URL.to_string());
    match url.rfind('/') {
        Some(slash) if slash > "postgres://".len() => url[..slash].to_string(),
        _ => url,
    }
}

pub fn database_url(name: &str) -> String {
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
        let name = format!("orderflow_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await;
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
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

    pub fn pool(&self, size: u32) -> orderflow_runtime::db::Pool {
        orderflow_runtime::db::pool(&self.database_config(size), size)
    }

    pub fn database_config(&self, pool_size: u32) -> orderflow_runtime::config::DatabaseConfig {
        orderflow_runtime::config::DatabaseConfig {
            url: orderflow_runtime::config::Secret::new(self.url.clone()),
            pool_size: Some(pool_size),
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context: use a thread with its own small runtime.
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
    let url = database_url("postgres");
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach PostgreSQL at {} ({e}); run the tests through scripts/test.sh",
                server_url()
            )
        })
}

/// The template is named after a hash of the migrations, so a changed migration gets a
/// fresh template. An advisory lock makes concurrent test processes build it once.
async fn ensure_template() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The queue's migrations and the domain's: both are applied to the template.
    let hash = migrations_hash(&[
        root.join("../queue/migrations"),
        root.join("../../migrations"),
    ]);
    let name = format!("orderflow_template_{}", &hash[..16]);
    let mut admin = admin_connection().await;
    diesel::sql_query("SELECT pg_advisory_lock(7261001)")
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("template lock: {e}"));
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
            .unwrap_or_else(|e| panic!("template lookup: {e}"));
    if found.n == 0 {
        let building = format!("{name}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            diesel::sql_query(statement)
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("template setup: {e}"));
        }
        orderflow_runtime::db::run_migrations(&database_url(&building))
            .await
            .unwrap_or_else(|e| panic!("migrating the template: {e}"));
        diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("template rename: {e}"));
    }
    diesel::sql_query("SELECT pg_advisory_unlock(7261001)")
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("template unlock: {e}"));
    name
}

fn migrations_hash(dirs: &[std::path::PathBuf]) -> String {
    let mut hasher = Sha256::new();
    for dir in dirs {
        let mut files: Vec<_> = walk(dir);
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

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
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
