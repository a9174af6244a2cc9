//! The suite's databases: one per test, cloned from a template holding the queue's
//! migrations and the domain's ([`orderflow_queue::testing`] does the cloning).

use std::path::Path;

use diesel_async::AsyncPgConnection;
use orderflow_queue::testing::{ensure_template, TestDatabase};

pub use orderflow_queue::testing::{database_url, server_url};

/// A database of its own for one test, dropped when the value is.
pub struct TestDb(TestDatabase);

impl std::ops::Deref for TestDb {
    type Target = TestDatabase;
    fn deref(&self) -> &TestDatabase {
        &self.0
    }
}

impl TestDb {
    pub async fn new() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let migrations = [
            root.join("../queue/migrations"),
            root.join("../../migrations"),
        ];
        let template = ensure_template("orderflow_template", &migrations, |url| async move {
            orderflow_runtime::db::run_migrations(&url)
                .await
                .expect("the migrations apply to the template");
        })
        .await;
        Self(TestDatabase::from_template(&template, "orderflow_test").await)
    }

    pub async fn connect(&self) -> AsyncPgConnection {
        self.0.connect().await
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
