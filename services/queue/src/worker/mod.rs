//! The worker of one task kind, by duty: [`TaskHandler`] (what a kind does), the claim
//! loop (`claim_loop.rs`: when to claim, how many, pacing and shutdown), one attempt
//! (`attempt.rs`: perform, record, failure), and the poll tick's maintenance
//! (`maintenance.rs`: rescuing expired leases, deleting completed tasks).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use tracing::Instrument;

use crate::correlation::with_correlation_id;
use crate::listener::Wakeup;
use crate::{ClaimedTask, DeadTask, KindConfig, Pool, TaskError};

mod attempt;
mod claim_loop;
mod maintenance;

pub(crate) use attempt::panic_message;
pub use attempt::run_once;

/// The business step of one task kind, in two parts: [`TaskHandler::perform`] talks to the
/// outside world with no transaction open; [`TaskHandler::record`] writes what came of it
/// in the transaction that completes the task. The worker owns that transaction and the
/// fenced completion, so a handler can neither forget to complete its task nor commit
/// after its claim was lost.
pub trait TaskHandler: Send + Sync + 'static {
    /// The kind's arguments: each task's payload, decoded before [`TaskHandler::perform`]
    /// (a [`crate::TaskArgs`] type; `serde_json::Value` takes any payload as it is). A
    /// payload that does not decode fails its task for good.
    type Args: serde::de::DeserializeOwned + Send + 'static;
    /// What an attempt learnt outside the database (a gateway's answer, say).
    type Outcome: Send + Sync + 'static;
    /// What recording an outcome did, for [`TaskHandler::committed`].
    type Recorded: Send + 'static;

    /// Whether the attempts of this kind may be recorded together, many tasks in one
    /// transaction (see the crate's guarantees). Turn it off for a kind whose recording
    /// must not wait for other tasks' (a slow `record`, say).
    const GROUP_COMMIT: bool = true;

    /// Reads what the attempt needs and talks to the outside world, given the task and its
    /// decoded arguments. No transaction is open; an error fails the attempt (retried or
    /// dead, as the error says).
    fn perform(
        &self,
        task: &ClaimedTask,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Outcome, TaskError>> + Send;

    /// Writes the outcome's effects and follow-up tasks on `conn`, inside the transaction
    /// that has just completed the task under its claim. That transaction may record other
    /// tasks of the kind too: write only this task's effects. An error rolls it back (the
    /// others are then recorded one per transaction) and fails this attempt.
    fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        outcome: &Self::Outcome,
    ) -> impl Future<Output = Result<Self::Recorded, TaskError>> + Send;

    /// Writes the effects of a group of attempts, in the transaction that has just
    /// completed their tasks, and returns what each recording did, in the group's order.
    /// The default runs [`TaskHandler::record`] for each, under its task's correlation id
    /// and span. A kind whose step can be written set-wise (a few statements for the whole
    /// group) overrides it; so must a kind whose records lock rows that its tasks share,
    /// taking those locks for the whole group first and in one order, because two groups
    /// that lock as they go can deadlock. An error rolls the group back; its tasks are
    /// then recorded one group of one at a time.
    fn record_group(
        &self,
        conn: &mut AsyncPgConnection,
        group: &[Recording<'_, Self::Outcome>],
    ) -> impl Future<Output = Result<Vec<Self::Recorded>, TaskError>> + Send {
        async move {
            let mut recorded = Vec::with_capacity(group.len());
            for attempt in group {
                let record = self.record(conn, attempt.task, attempt.outcome);
                let correlated = with_correlation_id(attempt.task.correlation_id.clone(), record);
                recorded.push(correlated.instrument(attempt.span.clone()).await?);
            }
            Ok(recorded)
        }
    }

    /// Runs once the transaction that recorded the outcome has committed (metrics, say).
    fn committed(&self, _task: &ClaimedTask, _outcome: &Self::Outcome, _recorded: &Self::Recorded) {
    }

    /// Runs in the transaction that moves a task to `dead`, so that the failure is
    /// recorded where its owner will see it.
    fn on_dead(
        &self,
        _conn: &mut AsyncPgConnection,
        _task: &DeadTask,
    ) -> impl Future<Output = diesel::QueryResult<()>> + Send {
        async { Ok(()) }
    }

    /// A span with what the owner knows about the task (its subject's id, say). Every log
    /// line of the attempt, the worker's included, is written inside it.
    fn span(&self, _task: &ClaimedTask) -> tracing::Span {
        tracing::Span::none()
    }
}

/// One attempt of a group being recorded ([`TaskHandler::record_group`]).
pub struct Recording<'a, O> {
    pub task: &'a ClaimedTask,
    pub outcome: &'a O,
    /// The attempt's span: what is logged about this task belongs in it.
    pub span: &'a tracing::Span,
}

/// Records one task through the handler's [`TaskHandler::record_group`], as a group of
/// one: the `record` of a handler that writes set-wise.
pub async fn record_through_group<H: TaskHandler>(
    handler: &H,
    conn: &mut AsyncPgConnection,
    task: &ClaimedTask,
    outcome: &H::Outcome,
) -> Result<H::Recorded, TaskError> {
    let span = tracing::Span::current();
    let attempt = Recording {
        task,
        outcome,
        span: &span,
    };
    handler
        .record_group(conn, &[attempt])
        .await?
        .pop()
        .ok_or_else(|| TaskError::permanent("record_group returned no result"))
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The most tasks of this kind running at once in this process. Within it, the worker
    /// sizes its limit from what it observes (`limit.rs`): up while tasks wait and attempts
    /// take their usual time, down when they slow down.
    pub concurrency: usize,
    /// The least the adaptive limit goes down to (and where it starts); at or above
    /// `concurrency`, the limit is fixed at `concurrency`.
    pub min_concurrency: usize,
    /// Fallback when no NOTIFY arrives (listener down, missed wake-up, retries coming due);
    /// each tick also rescues expired leases and deletes completed tasks past retention.
    pub poll_interval: Duration,
    /// How long in-flight tasks may take to finish after shutdown is requested.
    pub shutdown_grace: Duration,
    /// The least time between two claims of a busy kind: one whose tasks arrive fast
    /// enough to gather a batch of [`MIN_PACED_BATCH`](crate::MIN_PACED_BATCH) within it.
    /// Its wake-ups within the cooldown are then served by one claim (a batch) instead of
    /// one claim, transaction and group each. A quiet kind claims at once on each wake-up,
    /// and a full claim is followed as soon as a slot frees up; zero turns pacing off.
    pub claim_cooldown: Duration,
    /// How long completed tasks of the kind are kept before the worker deletes them (on
    /// its poll ticks, a batch at a time); `None` keeps them forever.
    pub completed_retention: Option<Duration>,
    /// How long claims must keep coming back full before the worker stops listening for
    /// its kind's NOTIFYs, until a claim comes back short; `None` always listens. A
    /// saturated worker claims again as each task finishes and has no use for wake-ups,
    /// while PostgreSQL signals every listening session on each notifying commit.
    pub unlisten_after: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            min_concurrency: 8,
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(10),
            claim_cooldown: DEFAULT_CLAIM_COOLDOWN,
            completed_retention: Some(DEFAULT_COMPLETED_RETENTION),
            unlisten_after: Some(Duration::from_millis(250)),
        }
    }
}

/// Long enough that a kind running at 600 tasks/s claims about nine at a time, short
/// enough that a kind below about 270 tasks/s (where a cooldown would gather fewer than
/// [`MIN_PACED_BATCH`](crate::MIN_PACED_BATCH)) is not paced at all.
pub const DEFAULT_CLAIM_COOLDOWN: Duration = Duration::from_millis(15);

/// A day: long enough to look into what happened to an order's tasks, short enough that
/// the table holds a day of traffic rather than all of it.
pub const DEFAULT_COMPLETED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Claims and runs the tasks of one kind until shut down.
pub struct Worker<H> {
    pool: Pool,
    kind: KindConfig,
    handler: Arc<H>,
    options: WorkerOptions,
    wakeup: Wakeup,
}

impl<H: TaskHandler> Worker<H> {
    pub fn new(
        pool: Pool,
        kind: KindConfig,
        handler: Arc<H>,
        options: WorkerOptions,
        wakeup: Wakeup,
    ) -> Self {
        Self {
            pool,
            kind,
            handler,
            options,
            wakeup,
        }
    }
}
