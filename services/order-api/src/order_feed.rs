//! Which orders just moved, for the live order pages. One LISTEN session per API process
//! hears the database's `order_events` notifications (a trigger sends one per statement
//! that appends to timelines) and fans the order ids out to every open event stream, so a
//! thousand open pages cost one database connection, not a thousand. The session is held
//! only while a stream is open: a listening session is woken for every notification, which
//! cost PostgreSQL CPU on every order under load while nobody watched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use orderflow_runtime::db::Pool;
use tokio::sync::Notify;
use uuid::Uuid;

/// The channel the `order_events_notify` trigger sends on.
const CHANNEL: &str = "order_events";
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A LISTEN session that hears nothing for this long proves it is alive with a query, and
/// is closed when no stream has been open since the last check.
const LIVENESS_PROBE: Duration = Duration::from_secs(30);
/// How often a listening session checks whether anyone still watches.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The open streams, by the order each one follows. A change wakes only the streams of
/// that order (a hash lookup per id), however many pages are open.
#[derive(Clone, Default)]
pub struct OrderFeed {
    watchers: Arc<Mutex<HashMap<Uuid, Vec<Arc<Notify>>>>>,
    /// Signalled when the first stream opens: time to listen.
    wanted: Arc<Notify>,
}

/// One stream's interest in one order; dropping it ends the interest.
pub struct Watch {
    feed: OrderFeed,
    order_id: Uuid,
    moved: Arc<Notify>,
}

impl Watch {
    /// Waits until the order's timeline grew since the last call (or since the watch
    /// began): a change that came while nobody waited is kept, not lost.
    pub async fn moved(&self) {
        self.moved.notified().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = self.feed.lock();
        if let Some(list) = watchers.get_mut(&self.order_id) {
            list.retain(|moved| !Arc::ptr_eq(moved, &self.moved));
            if list.is_empty() {
                watchers.remove(&self.order_id);
            }
        }
    }
}

impl OrderFeed {
    /// Follows one order from now on. A stream watches before it first reads its order,
    /// so that no change falls between the read and the watch.
    pub fn watch(&self, order_id: Uuid) -> Watch {
        let moved = Arc::new(Notify::new());
        let mut watchers = self.lock();
        if watchers.is_empty() {
            self.wanted.notify_one();
        }
        watchers
            .entry(order_id)
            .or_default()
            .push(Arc::clone(&moved));
        drop(watchers);
        Watch {
            feed: self.clone(),
            order_id,
            moved,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Arc<Notify>>>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.watchers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Listens while any stream is open, on a connection of its own (outside the pool),
    /// reconnecting with backoff. Every stream reads its order again once the session
    /// listens (a change made before was heard by nobody).
    pub fn start(&self, pool: Pool) {
        let feed = self.clone();
        tokio::spawn(async move {
            let mut delay = RECONNECT_MIN;
            loop {
                if feed.lock().is_empty() {
                    feed.wanted.notified().await;
                    continue;
                }
                match feed.listen(&pool, &mut delay).await {
                    // Nobody watches any more.
                    Ok(()) => continue,
                    Err(error) => {
                        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "order feed lost its connection");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RECONNECT_MAX);
            }
        });
    }

    async fn listen(&self, pool: &Pool, reconnect_delay: &mut Duration) -> Result<(), String> {
        let mut conn: AsyncPgConnection = pool
            .dedicated_connection()
            .await
            .map_err(|e| e.to_string())?;
        diesel::sql_query(format!("LISTEN {CHANNEL}"))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        *reconnect_delay = RECONNECT_MIN;
        // Whatever moved while this session was away notified nobody: every stream reads
        // its order again.
        self.wake_all();
        let mut idle_check = tokio::time::interval(IDLE_CHECK);
        idle_check.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            let heard = {
                let mut stream = std::pin::pin!(conn.notifications_stream());
                tokio::select! {
                    next = stream.next() => match next {
                        Some(Ok(notification)) => Some(notification.payload),
                        Some(Err(error)) => return Err(error.to_string()),
                        None => return Err("connection closed".into()),
                    },
                    _ = idle_check.tick() => None,
                }
            };
            if let Some(payload) = heard {
                last_heard = tokio::time::Instant::now();
                self.fan_out(&payload);
                continue;
            }
            if self.lock().is_empty() {
                // Dropping the connection ends the LISTEN.
                return Ok(());
            }
            if last_heard.elapsed() >= LIVENESS_PROBE {
                diesel::sql_query("SELECT 1")
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                last_heard = tokio::time::Instant::now();
            }
        }
    }

    /// A payload is a comma-separated list of order ids.
    fn fan_out(&self, payload: &str) {
        let watchers = self.lock();
        if watchers.is_empty() {
            return;
        }
        for id in payload.split(',').filter_map(|id| Uuid::parse_str(id).ok()) {
            for moved in watchers.get(&id).into_iter().flatten() {
                moved.notify_one();
            }
        }
    }

    fn wake_all(&self) {
        for moved in self.lock().values().flatten() {
            moved.notify_one();
        }
    }
}
