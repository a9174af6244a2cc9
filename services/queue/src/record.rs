//! Recording finished attempts: the task's completion, its effects and its follow-up tasks
//! in one transaction, fenced by the claim.
//!
//! Attempts of a kind that allows it are recorded in groups: one transaction completes
//! every task of the group with one fenced `UPDATE` and then writes the group's effects
//! ([`TaskHandler::record_group`]: each task's `record` in turn, or set-wise).
//! While one group commits, the attempts finishing meanwhile queue up for the next, so a
//! busy kind pays one commit for many tasks and an idle one waits for nobody. A group
//! also waits, briefly ([`MAX_GROUP_WAIT`]), for the attempts of this worker that are
//! still performing: the tasks of one claim finish together and are recorded together,
//! rather than the first alone and the rest in a second group. A group whose transaction
//! fails is recorded again one task per transaction, so that one bad task cannot hold
//! back the others.
//!
//! A recording commits without waiting for the WAL flush (`synchronous_commit = off` for
//! its transaction only, set by the completion statement). Losing it in a server crash
//! loses no work: the server comes back with the tasks as they were before the recording,
//! still claimed under leases that run out, so they are claimed and performed again; their
//! outside effects are idempotent, as at-least-once delivery already requires (the same
//! charge key, the same `Message-ID`). Everything committed later waits for the flush of
//! what came before it, so a durable commit (a placement, a cancellation) never outlives
//! a recording it followed. What it buys: the flush is no longer in a step's path, and the
//! NOTIFY lock, which PostgreSQL holds through the flush, is held for less.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::claim::{complete_claims, CommitWait};
use crate::phase::{self, Phase};
use crate::worker::panic_message;
use crate::{ClaimedTask, Pool, Recording, TaskError, TaskHandler};

/// The most tasks one transaction records.
const MAX_GROUP: usize = 64;

/// The longest a group waits for attempts still performing. It bounds what a slow
/// attempt (a gateway taking its time) costs the others; the tasks of one claim usually
/// finish within a millisecond of each other.
pub const MAX_GROUP_WAIT: Duration = Duration::from_millis(3);

/// An attempt whose outside-world part is done, waiting to be recorded.
pub(crate) struct Performed<H: TaskHandler> {
    pub task: ClaimedTask,
    pub outcome: H::Outcome,
    /// The attempt's span, so that what `record` logs is attributed to its task.
    pub span: tracing::Span,
    /// When `perform` returned: the start of its wait for a group.
    pub performed_at: Instant,
}

type Reply<H> = oneshot::Sender<Result<<H as TaskHandler>::Recorded, TaskError>>;

/// The queue of one kind's group recorder. Cloned into every attempt; the recorder stops
/// once every clone is gone and the queue is empty.
pub(crate) struct GroupRecorder<H: TaskHandler> {
    queue: mpsc::UnboundedSender<(Performed<H>, Reply<H>)>,
    performing: Arc<Performing>,
}

impl<H: TaskHandler> Clone for GroupRecorder<H> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            performing: Arc::clone(&self.performing),
        }
    }
}

/// How many attempts of the kind are claimed and not yet done performing: those a group
/// may wait for.
#[derive(Default)]
struct Performing {
    count: AtomicUsize,
    none_left: Notify,
}

/// Counts one attempt as performing until dropped: when its outcome is queued, or when
/// it failed, panicked or was stopped.
pub(crate) struct PerformingGuard(Arc<Performing>);

impl Drop for PerformingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

impl<H: TaskHandler> GroupRecorder<H> {
    /// Starts the recorder task of one kind.
    pub fn start(pool: Pool, handler: Arc<H>) -> (Self, tokio::task::JoinHandle<()>) {
        // Unbounded, yet never longer than the worker's concurrency: each queued attempt
        // holds one of its slots.
        let (queue, mut pending) = mpsc::unbounded_channel::<(Performed<H>, Reply<H>)>();
        let performing = Arc::new(Performing::default());
        let waiting_for = Arc::clone(&performing);
        let running = tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let group = gather_group(first, &mut pending, &waiting_for).await;
                record_group(&pool, handler.as_ref(), group).await;
            }
        });
        (Self { queue, performing }, running)
    }

    /// Counts an attempt as performing (see [`PerformingGuard`]); taken when it is claimed.
    pub fn performing(&self) -> PerformingGuard {
        self.performing.count.fetch_add(1, Ordering::AcqRel);
        PerformingGuard(Arc::clone(&self.performing))
    }

    /// Queues the attempt for the next group and waits until it is recorded. The attempt
    /// stops counting as performing once it is queued, not before, so that a group that
    /// saw the count fall to zero finds it in the queue.
    pub async fn record(
        &self,
        performed: Performed<H>,
        performing: Option<PerformingGuard>,
    ) -> Result<H::Recorded, TaskError> {
        let (reply, recorded) = oneshot::channel();
        let queued = self.queue.send((performed, reply));
        drop(performing);
        queued.map_err(|_| TaskError::retryable("the recorder has stopped"))?;
        recorded
            .await
            .unwrap_or_else(|_| Err(TaskError::retryable("the recorder has stopped")))
    }
}

/// The next group: `first`, whatever else is queued, and the attempts still performing
/// that finish within [`MAX_GROUP_WAIT`].
async fn gather_group<H: TaskHandler>(
    first: (Performed<H>, Reply<H>),
    pending: &mut mpsc::UnboundedReceiver<(Performed<H>, Reply<H>)>,
    performing: &Performing,
) -> Vec<(Performed<H>, Reply<H>)> {
    let mut group = vec![first];
    let deadline = tokio::time::Instant::now() + MAX_GROUP_WAIT;
    loop {
        while group.len() < MAX_GROUP {
            match pending.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // Registered before the count is read, so that the last attempt's drop between
        // the two is not missed.
        let none_left = performing.none_left.notified();
        if group.len() >= MAX_GROUP || performing.count.load(Ordering::Acquire) == 0 {
            return group;
        }
        tokio::select! {
            next = pending.recv() => match next {
                Some(next) => group.push(next),
                None => return group,
            },
            () = none_left => {}
            () = tokio::time::sleep_until(deadline) => return group,
        }
    }
}

/// Records a group; each attempt gets its own result.
async fn record_group<H: TaskHandler>(
    pool: &Pool,
    handler: &H,
    group: Vec<(Performed<H>, Reply<H>)>,
) {
    let (performed, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    let began = Instant::now();
    for attempt in &performed {
        let gathered = began.saturating_duration_since(attempt.performed_at);
        phase::observe(&attempt.task, Phase::Gathering, gathered);
    }
    match record_together(pool, handler, &performed).await {
        Ok(results) => {
            for ((attempt, reply), result) in performed.iter().zip(replies).zip(results) {
                finish(handler, attempt, reply, result, began);
            }
        }
        Err(error) if performed.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(%error, tasks = performed.len(), "recording a group failed; recording its tasks one by one");
            for (attempt, reply) in performed.iter().zip(replies) {
                let result = record_in_own_transaction(pool, handler, attempt).await;
                finish(handler, attempt, reply, result, began);
            }
        }
    }
}

/// Replies to a recorded attempt; `began` is when its recording started.
fn finish<H: TaskHandler>(
    handler: &H,
    attempt: &Performed<H>,
    reply: Reply<H>,
    result: Result<H::Recorded, TaskError>,
    began: Instant,
) {
    phase::observe(&attempt.task, Phase::Recording, began.elapsed());
    if let Ok(recorded) = &result {
        after_commit(handler, attempt, recorded);
    }
    // The attempt may have been stopped meanwhile (shutdown); what was recorded stays.
    let _ = reply.send(result);
}

/// Records attempts that were performed outside a [`crate::Worker`] as one group, the way
/// a worker's group recorder does: one transaction, each task completed only under its own
/// claim, then the live ones' effects ([`TaskHandler::record_group`]). One result per
/// attempt, in order (tools and tests; see [`crate::run_once`]).
pub async fn record_as_group<H: TaskHandler>(
    pool: &Pool,
    handler: &H,
    attempts: Vec<(ClaimedTask, H::Outcome)>,
) -> Result<Vec<Result<H::Recorded, TaskError>>, TaskError> {
    let performed: Vec<Performed<H>> = attempts
        .into_iter()
        .map(|(task, outcome)| Performed {
            task,
            outcome,
            span: tracing::Span::current(),
            performed_at: Instant::now(),
        })
        .collect();
    record_together(pool, handler, &performed).await
}

/// Records one attempt in its own transaction, then runs the handler's `committed` hook.
pub(crate) async fn record_alone<H: TaskHandler>(
    pool: &Pool,
    handler: &H,
    attempt: &Performed<H>,
) -> Result<H::Recorded, TaskError> {
    let began = Instant::now();
    let recorded = record_in_own_transaction(pool, handler, attempt).await;
    phase::observe(&attempt.task, Phase::Recording, began.elapsed());
    let recorded = recorded?;
    after_commit(handler, attempt, &recorded);
    Ok(recorded)
}

/// The handler's `committed` hook. The task is recorded whatever the hook does: a panic in
/// it is logged, and must not take the group recorder down with it.
fn after_commit<H: TaskHandler>(handler: &H, attempt: &Performed<H>, recorded: &H::Recorded) {
    let hook = || handler.committed(&attempt.task, &attempt.outcome, recorded);
    let outcome = attempt
        .span
        .in_scope(|| std::panic::catch_unwind(AssertUnwindSafe(hook)));
    if let Err(panic) = outcome {
        let message = panic_message(&*panic);
        attempt.span.in_scope(
            || tracing::error!(%message, "the committed hook panicked; the task stays recorded"),
        );
    }
}

async fn record_in_own_transaction<H: TaskHandler>(
    pool: &Pool,
    handler: &H,
    attempt: &Performed<H>,
) -> Result<H::Recorded, TaskError> {
    record_together(pool, handler, std::slice::from_ref(attempt))
        .await?
        .pop()
        .unwrap_or(Err(TaskError::ClaimLost))
}

/// One transaction: completes the attempts' tasks whose claims are still live, then writes
/// their effects ([`TaskHandler::record_group`]). A task whose claim was lost gets [`TaskError::ClaimLost`] and none
/// of its effects; an error in any task's effects rolls the whole transaction back.
async fn record_together<H: TaskHandler>(
    pool: &Pool,
    handler: &H,
    attempts: &[Performed<H>],
) -> Result<Vec<Result<H::Recorded, TaskError>>, TaskError> {
    let claims: Vec<(i64, uuid::Uuid)> = attempts
        .iter()
        .map(|attempt| (attempt.task.id, attempt.task.claim_token))
        .collect();
    let mut conn = pool.get().await?;
    conn.transaction(async |conn| {
        let completed: HashSet<(i64, uuid::Uuid)> =
            complete_claims(conn, &claims, CommitWait::NoFlush)
                .await?
                .into_iter()
                .collect();
        let live_claim = |attempt: &Performed<H>| {
            completed.contains(&(attempt.task.id, attempt.task.claim_token))
        };
        let live: Vec<Recording<'_, H::Outcome>> = attempts
            .iter()
            .filter(|attempt| live_claim(attempt))
            .map(|attempt| Recording {
                task: &attempt.task,
                outcome: &attempt.outcome,
                span: &attempt.span,
            })
            .collect();
        let mut recorded = run_record_group(conn, handler, &live).await?.into_iter();
        Ok(attempts
            .iter()
            .map(|attempt| {
                if live_claim(attempt) {
                    recorded.next().ok_or(TaskError::ClaimLost)
                } else {
                    Err(TaskError::ClaimLost)
                }
            })
            .collect())
    })
    .await
}

/// The handler's `record_group`; a panic is an error, and so is a count that does not match.
async fn run_record_group<H: TaskHandler>(
    conn: &mut AsyncPgConnection,
    handler: &H,
    group: &[Recording<'_, H::Outcome>],
) -> Result<Vec<H::Recorded>, TaskError> {
    if group.is_empty() {
        return Ok(Vec::new());
    }
    let recorded = match AssertUnwindSafe(handler.record_group(conn, group))
        .catch_unwind()
        .await
    {
        Ok(result) => result?,
        Err(panic) => return Err(TaskError::Retryable(panic_message(&*panic))),
    };
    if recorded.len() == group.len() {
        Ok(recorded)
    } else {
        Err(TaskError::permanent(format!(
            "record_group returned {} results for {} tasks",
            recorded.len(),
            group.len()
        )))
    }
}
