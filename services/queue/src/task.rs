use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::sql_types::{Int4, Int8, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::TaskError;

/// How the queue treats one kind of task.
#[derive(Debug, Clone)]
pub struct KindConfig {
    pub kind: &'static str,
    /// Attempts before the task is dead (the first run counts).
    pub max_attempts: i32,
    /// How long a claim stays exclusive without a heartbeat. The worker extends it while
    /// the task runs, so this is how long a task waits after its worker died.
    pub lease: Duration,
    /// The longest one attempt may run; then it fails (retryably) and stops extending its
    /// lease, so a hung handler cannot hold a task forever.
    pub timeout: Duration,
    /// Backoff before the second attempt; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl KindConfig {
    /// Delay before retrying after `attempt` failed: exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that tasks failing together spread out.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exponent = attempt.saturating_sub(1).clamp(0, 30) as u32;
        let full = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// A task to enqueue.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub kind: &'static str,
    pub payload: serde_json::Value,
    pub max_attempts: i32,
    /// At most one task with this key is enqueued, whatever its state, while that task is
    /// kept (a completed one is deleted after the retention period, freeing its key).
    pub unique_key: Option<String>,
    /// The correlation id to store; unset, the current one ([`crate::with_correlation_id`]).
    pub correlation_id: Option<String>,
}

impl NewTask {
    pub fn new(config: &KindConfig, payload: serde_json::Value) -> Self {
        Self {
            kind: config.kind,
            payload,
            max_attempts: config.max_attempts,
            unique_key: None,
            correlation_id: None,
        }
    }

    /// Stores `correlation_id` with the task instead of the current one: for code that
    /// enqueues the follow-ups of several tasks at once ([`crate::enqueue_all`]).
    pub fn caused_by(mut self, correlation_id: Option<String>) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// The correlation id stored with the task: its own, or else the current one.
    pub fn stored_correlation_id(&self) -> Option<String> {
        self.correlation_id
            .clone()
            .or_else(crate::current_correlation_id)
    }

    /// Makes the task unique: enqueueing it again (another path asking for the same work)
    /// is a no-op, for as long as the first task is kept (see [`NewTask::unique_key`]).
    pub fn unique(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
}

/// When this process's claim on a task runs out, by its own monotonic clock: the time a
/// claim or a heartbeat was sent, plus the lease. The database started the lease later
/// than that, so this errs early, never late. Shared by the attempt and its heartbeat.
#[derive(Debug, Clone)]
pub struct LeaseClock(Arc<Mutex<Instant>>);

impl LeaseClock {
    pub fn until(deadline: Instant) -> Self {
        Self(Arc::new(Mutex::new(deadline)))
    }

    /// The lease was extended: it now runs out at `deadline`.
    pub(crate) fn renew(&self, deadline: Instant) {
        let mut current = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *current = (*current).max(deadline);
    }

    fn remaining(&self) -> Duration {
        let deadline = *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        deadline.saturating_duration_since(Instant::now())
    }
}

/// A task this worker holds under a lease. Only the holder of the current claim token
/// can complete or fail it.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// 1 on the first run.
    pub attempt: i32,
    pub max_attempts: i32,
    pub claim_token: Uuid,
    pub lease_expires_at: DateTime<Utc>,
    /// When the task became due: enqueued (the start of the enqueueing transaction), or
    /// the end of a retry's backoff.
    pub run_at: DateTime<Utc>,
    /// When this claim took it, by the same (the database's) clock as `run_at`.
    pub claimed_at: DateTime<Utc>,
    /// The request or task that caused this one.
    pub correlation_id: Option<String>,
    /// When the claim runs out unless the heartbeat extends it.
    pub lease: LeaseClock,
}

/// A claimed task as the claim statement returns it.
#[derive(QueryableByName)]
pub(crate) struct ClaimedRow {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    /// 1 on the first run.
    #[diesel(sql_type = Int4)]
    pub attempt: i32,
    #[diesel(sql_type = Int4)]
    pub max_attempts: i32,
    #[diesel(sql_type = SqlUuid)]
    pub claim_token: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub lease_expires_at: DateTime<Utc>,
    /// When the task became due: enqueued (the start of the enqueueing transaction), or
    /// the end of a retry's backoff.
    #[diesel(sql_type = Timestamptz)]
    pub run_at: DateTime<Utc>,
    /// When this claim took it, by the same (the database's) clock as `run_at`.
    #[diesel(sql_type = Timestamptz)]
    pub claimed_at: DateTime<Utc>,
    /// The request or task that caused this one.
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub correlation_id: Option<String>,
}

impl ClaimedRow {
    /// The task, its claim running out `lease` after `sent` (when the claim was sent).
    pub(crate) fn into_task(self, sent: Instant, lease: Duration) -> ClaimedTask {
        ClaimedTask {
            id: self.id,
            kind: self.kind,
            payload: self.payload,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            claim_token: self.claim_token,
            lease_expires_at: self.lease_expires_at,
            run_at: self.run_at,
            claimed_at: self.claimed_at,
            correlation_id: self.correlation_id,
            lease: LeaseClock::until(sent + lease),
        }
    }
}

impl ClaimedTask {
    /// Fails with [`TaskError::ClaimLost`] unless the claim will still be ours for at
    /// least `margin`. Call it right before an outside call that must not be made twice
    /// at once (a charge): past its lease, another worker may be making the same call.
    pub fn ensure_lease(&self, margin: Duration) -> Result<(), TaskError> {
        if self.lease.remaining() > margin {
            Ok(())
        } else {
            Err(TaskError::ClaimLost)
        }
    }

    /// Marks the task completed, fenced by the claim token and the lease, in the caller's
    /// transaction. A [`crate::Worker`] does this itself when it records an attempt; this is
    /// for code that holds a claim outside a worker. It locks the task row, so a concurrent
    /// re-claim waits, and it fails with [`TaskError::ClaimLost`] when the claim is no
    /// longer ours.
    pub async fn complete(&self, conn: &mut AsyncPgConnection) -> Result<(), TaskError> {
        let claim = (self.id, self.claim_token);
        let completed =
            crate::claim::complete_claims(conn, &[claim], crate::claim::CommitWait::Flush).await?;
        if completed == [claim] {
            Ok(())
        } else {
            Err(TaskError::ClaimLost)
        }
    }

    /// How long the task waited, due, for this claim (zero if the clocks disagree).
    pub fn waited(&self) -> Duration {
        (self.claimed_at - self.run_at).to_std().unwrap_or_default()
    }

    /// The payload decoded into the kind's payload type; a payload that does not decode
    /// never will, so the error is permanent.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, TaskError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|error| TaskError::permanent(format!("bad {} payload: {error}", self.kind)))
    }
}

/// A task that has just been moved to `dead`, as the owner's dead hook sees it.
#[derive(Debug, Clone, QueryableByName)]
pub struct DeadTask {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub last_error: Option<String>,
}

impl From<&ClaimedTask> for DeadTask {
    fn from(task: &ClaimedTask) -> Self {
        Self {
            id: task.id,
            kind: task.kind.clone(),
            payload: task.payload.clone(),
            attempts: task.attempt,
            last_error: None,
        }
    }
}
