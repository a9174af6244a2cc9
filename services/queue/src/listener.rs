use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
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
///
/// A worker whose claims keep coming back full needs no wake-ups, and PostgreSQL signals
/// every listening session of the database on each commit that notifies, whatever the
/// channel: such a worker asks the listener to stop listening on its channel
/// ([`crate::WorkerOptions::unlisten_after`]), and to listen again once a claim comes back
/// short. A session with no channel left is no longer signalled at all.
#[derive(Clone, Default)]
pub struct Listener {
    channels: HashMap<String, Arc<Channel>>,
    /// Set when a worker changed whether its channel should be listened on.
    interest_changed: Arc<Notify>,
}

/// One channel's wake-up and whether its worker wants it.
#[derive(Debug)]
struct Channel {
    wakeup: Notify,
    wanted: AtomicBool,
}

impl Channel {
    fn is_wanted(&self) -> bool {
        // Fully qualified: diesel's `RunQueryDsl::load` is in scope here.
        AtomicBool::load(&self.wanted, Ordering::SeqCst)
    }
}

impl Default for Channel {
    fn default() -> Self {
        Self {
            wakeup: Notify::new(),
            wanted: AtomicBool::new(true),
        }
    }
}

/// What woke the listening session's loop.
enum Event {
    Notified(String),
    InterestChanged,
    ProbeDue,
}

/// A worker's end of its kind's channel: the wake-ups, and whether it wants them. The
/// default one belongs to no listener (a worker that only polls).
#[derive(Clone, Debug, Default)]
pub struct Wakeup {
    channel: Arc<Channel>,
    interest_changed: Option<Arc<Notify>>,
}

impl Wakeup {
    /// Resolves on the next NOTIFY of the channel (or at once if one came since the last
    /// call), or when the listener asks for a claim after (re)connecting.
    pub async fn notified(&self) {
        self.channel.wakeup.notified().await;
    }

    /// Asks the listener to LISTEN (true) or UNLISTEN (false) on the channel. After it
    /// listens again, the listener wakes the worker once: tasks enqueued while it was not
    /// listening sent their NOTIFY to nobody.
    pub(crate) fn set_listening(&self, wanted: bool) {
        let before = self.channel.wanted.swap(wanted, Ordering::SeqCst);
        if before != wanted {
            if let Some(changed) = &self.interest_changed {
                changed.notify_one();
            }
        }
    }
}

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// The `application_name` of the LISTEN sessions in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "orderflow-queue-listener";
/// A dead server does not always close the socket: probe the session now and then.
const LIVENESS_PROBE: Duration = Duration::from_secs(15);

impl Listener {
    pub fn new(kinds: &[&str]) -> Self {
        let channels = kinds
            .iter()
            .map(|kind| (notify_channel(kind), Arc::default()))
            .collect();
        Self {
            channels,
            interest_changed: Arc::default(),
        }
    }

    /// The wake-up of one kind, shared with that kind's worker.
    pub fn wakeup(&self, kind: &str) -> Wakeup {
        match self.channels.get(&notify_channel(kind)) {
            Some(channel) => Wakeup {
                channel: Arc::clone(channel),
                interest_changed: Some(Arc::clone(&self.interest_changed)),
            },
            None => Wakeup::default(),
        }
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
        let mut listening = HashSet::new();
        self.follow_interest(&mut conn, &mut listening).await?;
        tracing::info!(channels = listening.len(), "task listener connected");
        *reconnect_delay = RECONNECT_MIN;
        self.wake_all();
        let mut probe = tokio::time::interval(LIVENESS_PROBE);
        probe.tick().await;
        loop {
            let event = {
                let mut stream = std::pin::pin!(conn.notifications_stream());
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = probe.tick() => Event::ProbeDue,
                    () = self.interest_changed.notified() => Event::InterestChanged,
                    next = stream.next() => match next {
                        Some(Ok(notification)) => Event::Notified(notification.channel),
                        Some(Err(error)) => return Err(error.to_string()),
                        None => return Err("connection closed".into()),
                    },
                }
            };
            match event {
                Event::Notified(name) => {
                    if let Some(channel) = self.channels.get(&name) {
                        channel.wakeup.notify_one();
                    }
                }
                Event::InterestChanged => self.follow_interest(&mut conn, &mut listening).await?,
                Event::ProbeDue => {
                    diesel::sql_query("SELECT 1")
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// LISTENs on the channels whose workers want wake-ups and UNLISTENs on the others,
    /// as far as `listening` (what this session listens on) differs. A channel listened on
    /// again wakes its worker: what was enqueued meanwhile notified nobody.
    async fn follow_interest(
        &self,
        conn: &mut AsyncPgConnection,
        listening: &mut HashSet<String>,
    ) -> Result<(), String> {
        for (name, channel) in &self.channels {
            let wanted = channel.is_wanted();
            if wanted == listening.contains(name) {
                continue;
            }
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            let statement = if wanted { "LISTEN" } else { "UNLISTEN" };
            diesel::sql_query(format!("{statement} {quoted}"))
                .execute(conn)
                .await
                .map_err(|e| e.to_string())?;
            if wanted {
                listening.insert(name.clone());
                channel.wakeup.notify_one();
            } else {
                listening.remove(name);
            }
            tracing::debug!(channel = %name, statement, "task listener");
        }
        Ok(())
    }

    fn wake_all(&self) {
        for channel in self.channels.values() {
            channel.wakeup.notify_one();
        }
    }
}
