use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::claim::{bury_expired, release, rescue_expired};
use crate::correlation::with_correlation_id;
use crate::lease::{keep_leases, HeldClaims};
use crate::limit::{ConcurrencyLimit, ADJUST_EVERY};
use crate::listener::Wakeup;
use crate::pacing::ClaimPacing;
use crate::phase::{self, Phase};
use crate::record::{record_alone, GroupRecorder, Performed, PerformingGuard};
use crate::{
    claim_batch, fail, ClaimedTask, DeadTask, FailureOutcome, KindConfig, Pool, TaskError,
};

/// The business step of one task kind, in two parts: [`TaskHandler::perform`] talks to the
/// outside world with no transaction open; [`TaskHandler::record`] writes what came of it
/// in the transaction that completes the task. The worker owns that transaction and the
/// fenced completion, so a handler can neither forget to complete its task nor commit
/// after its claim was lost.
pub trait TaskHandler: Send + Sync + 'static {
    /// What an attempt learnt outside the database (a gateway's answer, say).
    type Outcome: Send + Sync + 'static;
    /// What recording an outcome did, for [`TaskHandler::committed`].
    type Recorded: Send + 'static;

    /// Whether the attempts of this kind may be recorded together, many tasks in one
    /// transaction (see the crate's guarantees). Turn it off for a kind whose recording
    /// must not wait for other tasks' (a slow `record`, say).
    const GROUP_COMMIT: bool = true;

    /// Reads what the attempt needs and talks to the outside world. No transaction is
    /// open; an error fails the attempt (retried or dead, as the error says).
    fn perform(
        &self,
        task: &ClaimedTask,
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

/// The most tasks one claim takes: a claim is one statement, and its tasks are recorded
/// in groups of at most 64 anyway.
const MAX_CLAIM: usize = 128;

fn lock_limit(
    limit: &std::sync::Mutex<ConcurrencyLimit>,
) -> std::sync::MutexGuard<'_, ConcurrencyLimit> {
    limit
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most expired tasks one poll tick makes waiting again.
const RESCUE_BATCH: i64 = 1000;

/// The most completed tasks one poll tick deletes: more than a tick's worth of tasks at
/// the rates this runs at, so that a backlog shrinks, in statements that stay short.
const PRUNE_BATCH: i64 = 1000;

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

    /// Runs until `shutdown` is cancelled, then stops claiming and waits up to the grace
    /// period for in-flight tasks. A task still running after that is stopped and given
    /// back, claimable again at once; one that had finished its outside work and waited to
    /// be recorded is still recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let limit = Arc::new(std::sync::Mutex::new(ConcurrencyLimit::new(
            self.options.min_concurrency,
            self.options.concurrency,
        )));
        let mut running = JoinSet::new();
        let held = HeldClaims::default();
        let stop_leases = CancellationToken::new();
        let leases = tokio::spawn(keep_leases(
            held.clone(),
            self.pool.clone(),
            self.kind.kind,
            self.kind.lease,
            stop_leases.clone(),
        ));
        let recording = H::GROUP_COMMIT
            .then(|| GroupRecorder::start(self.pool.clone(), Arc::clone(&self.handler)));
        let recorder = recording.as_ref().map(|(recorder, _)| recorder.clone());
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            kind = self.kind.kind,
            min_concurrency = self.options.min_concurrency,
            max_concurrency = self.options.concurrency,
            "worker started"
        );
        // Whether a claim could find anything: set by a wake-up, a poll tick or a full
        // batch; cleared by a claim that found fewer tasks than it asked for. A finished
        // task frees a slot but is no sign of new work, so it does not trigger a claim
        // (seen: 1.6 claims per task, most of them empty, before this).
        let mut work_may_wait = true;
        let mut next_claim_at = tokio::time::Instant::now();
        let mut pacing = ClaimPacing::new(self.options.claim_cooldown);
        let mut saturation = Saturation::default();

        while !shutdown.is_cancelled() {
            while let Some(finished) = running.try_join_next() {
                report_panic(finished);
            }
            let free = lock_limit(&limit)
                .current()
                .saturating_sub(running.len())
                .min(MAX_CLAIM);
            if free > 0 && work_may_wait && tokio::time::Instant::now() < next_claim_at {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    () = tokio::time::sleep_until(next_claim_at) => {}
                }
                continue;
            }
            if free > 0 && work_may_wait {
                let claim_started = tokio::time::Instant::now();
                match self.claim(free).await {
                    Ok(tasks) => {
                        let full = tasks.len() == free;
                        {
                            let mut limit = lock_limit(&limit);
                            limit.adjust(full, running.len() + tasks.len(), Instant::now());
                            metrics::gauge!("orderflow_queue_concurrency_limit", "kind" => self.kind.kind)
                                .set(limit.current() as f64);
                        }
                        next_claim_at = pacing.claimed(claim_started, tasks.len(), full);
                        work_may_wait = full;
                        saturation.claimed(full, self.options.unlisten_after, &self.wakeup);
                        let found = match tasks.len() {
                            0 => "none",
                            _ if full => "full",
                            _ => "some",
                        };
                        metrics::counter!("orderflow_queue_claims_total", "kind" => self.kind.kind, "found" => found)
                            .increment(1);
                        if !tasks.is_empty() {
                            metrics::counter!("orderflow_queue_tasks_claimed_total", "kind" => self.kind.kind)
                                .increment(tasks.len() as u64);
                        }
                        for task in tasks {
                            phase::observe(&task, Phase::Waiting, task.waited());
                            let lost = held.insert(&task);
                            let attempt = self.execute(task, held.clone(), lost, recorder.clone());
                            let limit = Arc::clone(&limit);
                            running.spawn(async move {
                                let started = Instant::now();
                                attempt.await;
                                lock_limit(&limit).finished(started.elapsed());
                            });
                        }
                        // A full batch means more may be waiting: claim again as soon
                        // as a slot frees up, without waiting for a wake-up. While the
                        // limit may still grow, look again once it may have moved: with
                        // outside calls of half a second, waiting for a slot would let it
                        // grow only once per round of calls. The poll tick's upkeep goes
                        // on meanwhile: a kind that stays saturated must still rescue the
                        // tasks of a worker that died.
                        if full {
                            let growable = lock_limit(&limit).can_grow();
                            tokio::select! {
                                Some(finished) = running.join_next() => report_panic(finished),
                                () = tokio::time::sleep(ADJUST_EVERY), if growable => {
                                    lock_limit(&limit).adjust(true, running.len(), Instant::now());
                                }
                                _ = poll.tick() => self.upkeep().await,
                                _ = shutdown.cancelled() => {}
                            }
                            continue;
                        }
                    }
                    Err(error) => {
                        // Tried again on the next wake-up or poll tick.
                        work_may_wait = false;
                        saturation.claimed(false, self.options.unlisten_after, &self.wakeup);
                        tracing::warn!(kind = self.kind.kind, %error, "claiming tasks failed");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.wakeup.notified() => work_may_wait = true,
                _ = poll.tick() => {
                    self.upkeep().await;
                    work_may_wait = true;
                }
                Some(finished) = running.join_next(), if !running.is_empty() => report_panic(finished),
            }
        }

        tracing::info!(
            kind = self.kind.kind,
            in_flight = running.len(),
            "worker stopping"
        );
        let drained = tokio::time::timeout(self.options.shutdown_grace, async {
            while let Some(finished) = running.join_next().await {
                report_panic(finished);
            }
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        // Attempts stopped while waiting to be recorded are still recorded: their outside
        // work is done. The recorder ends once every attempt's handle on it is gone.
        drop(recorder);
        if let Some((recorder, mut recording)) = recording {
            drop(recorder);
            if tokio::time::timeout(self.options.shutdown_grace, &mut recording)
                .await
                .is_err()
            {
                recording.abort();
            }
        }
        stop_leases.cancel();
        let _ = leases.await;
        if drained.is_err() {
            self.give_back(held.take()).await;
        }
    }

    /// Releases the claims of tasks stopped at shutdown, so that another worker takes them
    /// now rather than when their lease expires.
    async fn give_back(&self, claims: Vec<(i64, uuid::Uuid)>) {
        let result: Result<usize, TaskError> = async {
            let mut conn = self.pool.get().await?;
            Ok(release(&mut conn, self.kind.kind, &claims).await?)
        }
        .await;
        match result {
            Ok(released) => tracing::warn!(
                kind = self.kind.kind,
                released,
                "grace period over; unfinished tasks given back"
            ),
            Err(error) => tracing::warn!(
                kind = self.kind.kind,
                %error,
                "grace period over; unfinished tasks will be re-claimed when their lease expires"
            ),
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedTask>, TaskError> {
        let mut conn = self.pool.get().await?;
        Ok(claim_batch(&mut conn, self.kind.kind, limit as i64, self.kind.lease).await?)
    }

    /// Runs one attempt and records its outcome (metrics, failure, held claims).
    fn execute(
        &self,
        task: ClaimedTask,
        held: HeldClaims,
        lost: CancellationToken,
        recorder: Option<GroupRecorder<H>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let pool = self.pool.clone();
        let kind = self.kind.clone();
        let handler = Arc::clone(&self.handler);
        // Counted from the claim on, so that a group forming meanwhile waits for it.
        let performing = recorder.as_ref().map(GroupRecorder::performing);
        let span = tracing::info_span!(
            "task",
            task_id = task.id,
            kind = %task.kind,
            attempt = task.attempt,
            request_id = task.correlation_id.as_deref().unwrap_or_default(),
        );
        // Made inside the task span, so that it is its child in every log line.
        let owner_span = span.in_scope(|| handler.span(&task));
        let attempt = async move {
            let started = std::time::Instant::now();
            let outcome = run_attempt(
                handler.as_ref(),
                &pool,
                &kind,
                &task,
                lost,
                recorder,
                performing,
            )
            .await;
            let label = match outcome {
                Ok(_) => {
                    tracing::debug!("task completed");
                    metrics::counter!("orderflow_queue_tasks_completed_total", "kind" => kind.kind)
                        .increment(1);
                    "completed"
                }
                Err(TaskError::ClaimLost) => {
                    tracing::warn!("claim lost before completion; another attempt owns the task");
                    "claim_lost"
                }
                Err(error) => record_failure(&pool, &kind, handler.as_ref(), &task, error).await,
            };
            metrics::histogram!("orderflow_queue_task_duration_seconds", "kind" => kind.kind, "outcome" => label)
                .record(started.elapsed().as_secs_f64());
            held.remove(task.id);
        };
        attempt.instrument(owner_span).instrument(span)
    }

    /// What each poll tick does besides looking for work.
    async fn upkeep(&self) {
        self.rescue_expired().await;
        self.prune_completed().await;
    }

    /// Tasks whose lease expired (their worker died or hung) are waiting again, or dead on
    /// their last attempt; they would otherwise sit in `running`.
    async fn rescue_expired(&self) {
        let result: Result<(usize, Vec<DeadTask>), TaskError> = async {
            let mut conn = self.pool.get().await?;
            let handler = self.handler.as_ref();
            let kind = self.kind.kind;
            Ok(conn
                .transaction(async |conn| {
                    let rescued = rescue_expired(conn, kind, RESCUE_BATCH).await?;
                    let buried = bury_expired(conn, kind).await?;
                    for task in &buried {
                        handler.on_dead(conn, task).await?;
                    }
                    Ok::<_, diesel::result::Error>((rescued, buried))
                })
                .await?)
        }
        .await;
        match result {
            Ok((rescued, buried)) => {
                if rescued > 0 {
                    metrics::counter!("orderflow_queue_tasks_rescued_total", "kind" => self.kind.kind)
                        .increment(rescued as u64);
                    tracing::warn!(
                        kind = self.kind.kind,
                        rescued,
                        "tasks whose lease expired are waiting again"
                    );
                }
                if !buried.is_empty() {
                    metrics::counter!("orderflow_queue_tasks_dead_total", "kind" => self.kind.kind)
                        .increment(buried.len() as u64);
                }
                for task in buried {
                    tracing::error!(task_id = task.id, kind = %task.kind, "task dead: lease expired during its last attempt");
                }
            }
            Err(error) => {
                tracing::warn!(kind = self.kind.kind, %error, "rescuing expired tasks failed")
            }
        }
    }

    /// Deletes the kind's completed tasks older than the retention period, a batch a tick.
    async fn prune_completed(&self) {
        let Some(retention) = self.options.completed_retention else {
            return;
        };
        let result: Result<usize, TaskError> = async {
            let mut conn = self.pool.get().await?;
            let kind = self.kind.kind;
            Ok(crate::admin::prune_completed(&mut conn, kind, retention, PRUNE_BATCH).await?)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(pruned) => {
                metrics::counter!("orderflow_queue_tasks_pruned_total", "kind" => self.kind.kind)
                    .increment(pruned as u64);
                tracing::debug!(
                    kind = self.kind.kind,
                    pruned,
                    "completed tasks past their retention deleted"
                );
            }
            Err(error) => {
                tracing::warn!(kind = self.kind.kind, %error, "deleting completed tasks failed")
            }
        }
    }
}

/// Since when a worker's claims have all come back full.
#[derive(Default)]
struct Saturation {
    full_since: Option<tokio::time::Instant>,
}

impl Saturation {
    /// Follows a claim's outcome: full claims for `unlisten_after` stop the wake-ups, a
    /// short (or failed) one brings them back, and with them one more claim (the listener
    /// wakes the worker once it listens again), so that nothing enqueued in between waits
    /// for the poll. Asking for the state the channel is already in does nothing.
    fn claimed(&mut self, full: bool, unlisten_after: Option<Duration>, wakeup: &Wakeup) {
        if !full {
            self.full_since = None;
            wakeup.set_listening(true);
            return;
        }
        let since = *self
            .full_since
            .get_or_insert_with(tokio::time::Instant::now);
        if unlisten_after.is_some_and(|after| since.elapsed() >= after) {
            wakeup.set_listening(false);
        }
    }
}

/// One attempt: the handler under the kind's timeout, with the task's correlation id, while
/// the worker's lease keeper renews its claim (`lost` is cancelled if the claim is lost). A
/// panic in the handler is an attempt that failed, recorded now with its backoff rather
/// than found when the lease runs out.
async fn run_attempt<H: TaskHandler>(
    handler: &H,
    pool: &Pool,
    kind: &KindConfig,
    task: &ClaimedTask,
    lost: CancellationToken,
    recorder: Option<GroupRecorder<H>>,
    performing: Option<PerformingGuard>,
) -> Result<H::Recorded, TaskError> {
    let attempt = async {
        let started = Instant::now();
        let outcome = handler.perform(task).await?;
        phase::observe(task, Phase::Performing, started.elapsed());
        let performed = Performed {
            task: task.clone(),
            outcome,
            span: tracing::Span::current(),
            performed_at: Instant::now(),
        };
        match recorder {
            Some(recorder) => recorder.record(performed, performing).await,
            None => record_alone(pool, handler, &performed).await,
        }
    };
    let run = AssertUnwindSafe(with_correlation_id(task.correlation_id.clone(), attempt))
        .catch_unwind()
        .map(|result| {
            result.unwrap_or_else(|panic| Err(TaskError::Retryable(panic_message(&*panic))))
        });
    tokio::select! {
        // A completion that raced the heartbeat's last beat still counts.
        biased;
        outcome = tokio::time::timeout(kind.timeout, run) => {
            outcome.unwrap_or_else(|_| Err(TaskError::Retryable(format!(
                "timed out after {} ms", kind.timeout.as_millis()
            ))))
        }
        () = lost.cancelled() => Err(TaskError::ClaimLost),
    }
}

/// Runs one attempt of `task` outside a [`Worker`]: [`TaskHandler::perform`], then
/// [`TaskHandler::record`] in its own transaction, fenced by the claim (tools and tests).
pub async fn run_once<H: TaskHandler>(
    handler: &H,
    pool: &Pool,
    task: &ClaimedTask,
) -> Result<H::Recorded, TaskError> {
    let outcome = handler.perform(task).await?;
    let performed = Performed {
        task: task.clone(),
        outcome,
        span: tracing::Span::current(),
        performed_at: Instant::now(),
    };
    record_alone(pool, handler, &performed).await
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("handler panicked: {text}")
}

/// Handler panics are caught in [`Worker::execute`]; one that escapes (in the worker's own
/// bookkeeping) leaves its task `running` until the lease runs out and it is claimed again.
fn report_panic(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        if error.is_panic() {
            tracing::error!("task attempt panicked; the task is retried when its lease expires");
        }
    }
}

/// Records a failed attempt; returns the outcome's metric label.
async fn record_failure<H: TaskHandler>(
    pool: &Pool,
    kind: &KindConfig,
    handler: &H,
    task: &ClaimedTask,
    error: TaskError,
) -> &'static str {
    let backoff = kind.backoff(task.attempt);
    let result: Result<FailureOutcome, TaskError> = async {
        let mut conn = pool.get().await?;
        Ok(conn
            .transaction(async |conn| {
                let outcome = fail(conn, task, &error, backoff).await?;
                if outcome == FailureOutcome::Dead {
                    let mut dead = DeadTask::from(task);
                    dead.last_error = Some(error.to_string());
                    handler.on_dead(conn, &dead).await?;
                }
                Ok::<_, diesel::result::Error>(outcome)
            })
            .await?)
    }
    .await;
    match result {
        Ok(FailureOutcome::Retrying) => {
            tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "task attempt failed");
            metrics::counter!("orderflow_queue_tasks_retried_total", "kind" => kind.kind)
                .increment(1);
            "retried"
        }
        Ok(FailureOutcome::Dead) => {
            tracing::error!(%error, "task dead");
            metrics::counter!("orderflow_queue_tasks_dead_total", "kind" => kind.kind).increment(1);
            "dead"
        }
        Ok(FailureOutcome::ClaimLost) => {
            tracing::warn!(%error, "task failed after its claim was lost");
            "claim_lost"
        }
        // The lease will expire and the task will be claimed again.
        Err(record_error) => {
            tracing::error!(%error, %record_error, "could not record the task's failure");
            "unrecorded"
        }
    }
}
