//! One attempt: the handler's `perform` and `record` under the kind's timeout, with the
//! task's correlation id and span, and what a failure does (retry after backoff, or dead).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use diesel_async::AsyncConnection;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{TaskHandler, Worker};
use crate::correlation::with_correlation_id;
use crate::lease::HeldClaims;
use crate::phase::{self, Phase};
use crate::record::{record_alone, GroupRecorder, Performed, PerformingGuard};
use crate::{fail, ClaimedTask, DeadTask, FailureOutcome, KindConfig, Pool, TaskError};

impl<H: TaskHandler> Worker<H> {
    /// Runs one attempt and records its outcome (metrics, failure, held claims).
    pub(super) fn execute(
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
        let outcome = handler.perform(task, task.payload()?).await?;
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
    let outcome = handler.perform(task, task.payload()?).await?;
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
pub(super) fn report_panic(finished: Result<(), tokio::task::JoinError>) {
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
