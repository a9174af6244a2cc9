use std::time::Duration;

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

/// A task this worker holds under a lease. Only the holder of the current claim token
/// can complete or fail it.
#[derive(Debug, Clone, QueryableByName)]
pub struct ClaimedTask {
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

impl ClaimedTask {
    /// Marks the task completed, fenced by the claim token and the lease, in the caller's
    /// transaction. A [`crate::Worker`] does this itself when it records an attempt; this is
    /// for code that holds a claim outside a worker. It locks the task row, so a concurrent
    /// re-claim waits, and it fails with [`TaskError::ClaimLost`] when the claim is no
    /// longer ours.
    pub async fn complete(&self, conn: &mut AsyncPgConnection) -> Result<(), TaskError> {
        let completed = crate::claim::complete_claims(conn, &[(self.id, self.claim_token)]).await?;
        if completed == [self.id] {
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
