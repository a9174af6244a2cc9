use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::notify_channel;

/// Turns NOTIFYs on the task channels into in-process wake-ups. It holds one dedicated
/// connection (LISTEN needs a session, so not a pooled one) and reconnects with backoff
/// when it drops. Wake-ups are hints: workers poll anyway, so a missed one costs latency,
/// never a task.
#[derive(Clone, Default)]
pub struct Listener {
    wakeups: HashMap<String, Arc<Notify>>,
}

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// The `application_name` of the LISTEN sessions in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "orderflow-queue-listener";
/// A dead server does not always close the socket: probe the session now and then.
const LIVENESS_PROBE: Duration = Duration::from_secs(15);

impl Listener {
    pub fn new(kinds: &[&str]) -> Self {
        let wakeups = kinds
            .iter()
            .map(|kind| (notify_channel(kind), Arc::new(Notify::new())))
            .collect();
        Self { wakeups }
    }

    /// The wake-up of one kind, shared with that kind's worker.
    pub fn wakeup(&self, kind: &str) -> Arc<Notify> {
        self.wakeups
            .get(&notify_channel(kind))
            .cloned()
            .unwrap_or_default()
    }

    /// Listens until `shutdown` is cancelled, reconnecting as needed.
    pub async fn run(self, database_url: String, shutdown: CancellationToken) {
        let mut delay = RECONNECT_MIN;
        while !shutdown.is_cancelled() {
            match self.listen_once(&database_url, &shutdown, &mut delay).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "task listener lost its connection");
                    // Tasks enqueued while we were away wake nobody: let every worker poll.
                    self.wake_all();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    async fn listen_once(
        &self,
        database_url: &str,
        shutdown: &CancellationToken,
        reconnect_delay: &mut Duration,
    ) -> Result<(), String> {
        let mut conn = AsyncPgConnection::establish(database_url)
            .await
            .map_err(|e| e.to_string())?;
        // Operators (and the tests) can tell the listening sessions apart.
        diesel::sql_query(format!("SET application_name = '{APPLICATION_NAME}'"))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        for channel in self.wakeups.keys() {
            let listen = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
            diesel::sql_query(listen)
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(channels = self.wakeups.len(), "task listener connected");
        *reconnect_delay = RECONNECT_MIN;
        self.wake_all();
        let mut probe = tokio::time::interval(LIVENESS_PROBE);
        probe.tick().await;
        loop {
            let notification = {
                let mut stream = std::pin::pin!(conn.notifications_stream());
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = probe.tick() => None,
                    next = stream.next() => match next {
                        Some(Ok(notification)) => Some(notification),
                        Some(Err(error)) => return Err(error.to_string()),
                        None => return Err("connection closed".into()),
                    },
                }
            };
            match notification {
                Some(notification) => {
                    if let Some(wakeup) = self.wakeups.get(&notification.channel) {
                        wakeup.notify_one();
                    }
                }
                None => {
                    diesel::sql_query("SELECT 1")
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }

    fn wake_all(&self) {
        for wakeup in self.wakeups.values() {
            wakeup.notify_one();
        }
    }
}
