//! Wake-ups: how an idle worker learns within milliseconds that tasks of its kind were
//! enqueued, without the enqueueing transactions paying for it.
//!
//! A NOTIFY sent inside the transaction that enqueues takes a database-wide lock at commit
//! and holds it while the commit waits for its WAL flush, so every transaction that
//! enqueues waits for every other one's flush (seen at 600 orders/s: more than half of the
//! server's active sessions waiting on that lock). So the wake-ups travel on their own:
//! code that enqueues runs its transaction through [`Notifier::wake_after`], which notes
//! the kinds it enqueued and, once it has committed, hands them to the process's
//! [`WakeUps`] session. That session sends them in a transaction of their own that does
//! not wait for the flush, one transaction for all the kinds requested while the previous
//! one was on its way; it also LISTENs on the channels of the kinds the process works.
//!
//! Wake-ups are hints: one lost (the process died between the commit and the NOTIFY, the
//! session was down) costs the sleeping worker its poll interval, never a task.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{notify_channel, prepared_sql};

/// The process's LISTEN/NOTIFY session: wake-ups in for its workers, out for the tasks it
/// enqueued. It holds one dedicated connection (LISTEN needs a session, so not a pooled
/// one) and reconnects with backoff when it drops.
#[derive(Clone, Default)]
pub struct WakeUps {
    incoming: HashMap<String, Arc<Notify>>,
    notifier: Notifier,
}

const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// The `application_name` of the wake-up sessions in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "orderflow-queue-wakeups";
/// A dead server does not always close the socket: probe the session now and then.
const LIVENESS_PROBE: Duration = Duration::from_secs(15);

impl WakeUps {
    /// Wake-ups for the workers of `kinds` (none, in a process that only enqueues).
    pub fn new(kinds: &[&str]) -> Self {
        let incoming = kinds
            .iter()
            .map(|kind| (notify_channel(kind), Arc::new(Notify::new())))
            .collect();
        Self {
            incoming,
            notifier: Notifier::default(),
        }
    }

    /// The wake-up of one kind's worker.
    pub fn wakeup(&self, kind: &str) -> Arc<Notify> {
        self.incoming
            .get(&notify_channel(kind))
            .cloned()
            .unwrap_or_default()
    }

    /// Sends this process's wake-ups through the session.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Runs the session until `shutdown` is cancelled, reconnecting as needed.
    pub async fn run(self, database_url: String, shutdown: CancellationToken) {
        let mut delay = RECONNECT_MIN;
        while !shutdown.is_cancelled() {
            match self.session(&database_url, &shutdown, &mut delay).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "task wake-up session lost its connection");
                    // Tasks enqueued while we were away wake nobody: let every worker poll.
                    self.wake_local_workers();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    async fn session(
        &self,
        database_url: &str,
        shutdown: &CancellationToken,
        reconnect_delay: &mut Duration,
    ) -> Result<(), String> {
        let mut conn = AsyncPgConnection::establish(database_url)
            .await
            .map_err(|e| e.to_string())?;
        // Operators (and the tests) can tell the sessions apart. A NOTIFY-only transaction
        // has nothing worth a flush wait: losing it in a crash loses a hint.
        let setup = [
            format!("SET application_name = '{APPLICATION_NAME}'"),
            "SET synchronous_commit = off".to_string(),
        ];
        for statement in setup {
            diesel::sql_query(statement)
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        for channel in self.incoming.keys() {
            let listen = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
            diesel::sql_query(listen)
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(
            channels = self.incoming.len(),
            "task wake-up session connected"
        );
        *reconnect_delay = RECONNECT_MIN;
        self.wake_local_workers();
        let mut probe = tokio::time::interval(LIVENESS_PROBE);
        probe.tick().await;
        loop {
            let event = {
                let mut stream = std::pin::pin!(conn.notifications_stream());
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    () = self.notifier.requested() => Event::Send,
                    _ = probe.tick() => Event::Probe,
                    next = stream.next() => match next {
                        Some(Ok(notification)) => Event::Received(notification.channel),
                        Some(Err(error)) => return Err(error.to_string()),
                        None => return Err("connection closed".into()),
                    },
                }
            };
            match event {
                Event::Received(channel) => {
                    if let Some(wakeup) = self.incoming.get(&channel) {
                        wakeup.notify_one();
                    }
                }
                Event::Send => self.send_requested(&mut conn).await?,
                Event::Probe => {
                    diesel::sql_query("SELECT 1")
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }

    /// Sends every wake-up requested since the last one, as one transaction. Those that
    /// could not be sent are requested again, for the next session.
    async fn send_requested(&self, conn: &mut AsyncPgConnection) -> Result<(), String> {
        let kinds = self.notifier.take_requested();
        if kinds.is_empty() {
            return Ok(());
        }
        let channels: Vec<String> = kinds.iter().map(|kind| notify_channel(kind)).collect();
        let sent = prepared_sql("SELECT pg_notify(channel, '') FROM unnest($1::text[]) AS channel")
            .bind::<Array<Text>, _>(channels)
            .execute(conn)
            .await;
        if let Err(error) = sent {
            for kind in kinds {
                self.notifier.wake(kind);
            }
            return Err(error.to_string());
        }
        Ok(())
    }

    fn wake_local_workers(&self) {
        for wakeup in self.incoming.values() {
            wakeup.notify_one();
        }
    }
}

enum Event {
    Received(String),
    Send,
    Probe,
}

/// Sends wake-ups for enqueued tasks through the process's [`WakeUps`] session, after the
/// transactions that enqueued them committed. Cheap to clone. One made on its own
/// (`Notifier::default()`), with no session running, sends nothing: its workers poll.
#[derive(Clone, Default)]
pub struct Notifier(Arc<Requests>);

#[derive(Default)]
struct Requests {
    /// The kinds to wake, in the order asked, each once.
    kinds: Mutex<Vec<&'static str>>,
    ready: Notify,
}

tokio::task_local! {
    /// The kinds enqueued inside the current [`Notifier::wake_after`].
    static ENQUEUED: Arc<Mutex<Vec<&'static str>>>;
}

impl Notifier {
    /// Runs `transaction` (a future that ends with its transaction committed or rolled
    /// back) and, when it succeeds, wakes the workers of every kind it enqueued
    /// ([`crate::enqueue`], [`crate::enqueue_all`], [`note_enqueued`]). A rolled-back
    /// transaction wakes nobody.
    pub async fn wake_after<T, E>(
        &self,
        transaction: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let enqueued = Arc::new(Mutex::new(Vec::new()));
        let result = ENQUEUED.scope(Arc::clone(&enqueued), transaction).await;
        if result.is_ok() {
            for kind in std::mem::take(&mut *lock(&enqueued)) {
                self.wake(kind);
            }
        }
        result
    }

    /// Asks the session to wake the workers of `kind`: for tasks already committed.
    pub fn wake(&self, kind: &'static str) {
        add_once(&mut lock(&self.0.kinds), kind);
        // Keeps a permit when the session is busy, so the request is not missed.
        self.0.ready.notify_one();
    }

    fn requested(&self) -> impl Future<Output = ()> + '_ {
        self.0.ready.notified()
    }

    fn take_requested(&self) -> Vec<&'static str> {
        std::mem::take(&mut *lock(&self.0.kinds))
    }
}

/// Notes that the current transaction enqueued a task of `kind`, so that the enclosing
/// [`Notifier::wake_after`] wakes its workers after the commit. [`crate::enqueue`] and
/// [`crate::enqueue_all`] call it; a statement that enqueues in SQL (the function
/// `enqueue_task`) calls it itself. Outside `wake_after` it does nothing.
pub fn note_enqueued(kind: &'static str) {
    let _ = ENQUEUED.try_with(|enqueued| add_once(&mut lock(enqueued), kind));
}

fn add_once(kinds: &mut Vec<&'static str>, kind: &'static str) {
    if !kinds.contains(&kind) {
        kinds.push(kind);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A list of kinds stays consistent even if a holder panicked: each use is one call.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
