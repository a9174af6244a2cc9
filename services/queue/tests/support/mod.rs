//! The queue's tests run each on a database of its own holding the queue's schema alone
//! (nothing of any application): [`orderflow_queue::testing`], plus a pool set up as the
//! queue requires.

#![allow(dead_code)]

use std::time::Duration;

use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use orderflow_queue::testing::{queue_template, TestDatabase};
use orderflow_queue::Pool;

pub use orderflow_queue::testing::wait_until;

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
        let template = queue_template().await;
        Self(TestDatabase::from_template(&template, "orderflow_test_queue").await)
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
