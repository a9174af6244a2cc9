use std::fmt;

/// How a task attempt failed. The variant decides what the queue does next.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Worth another attempt after a backoff (a timeout, a connection refused, a busy database).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Will fail the same way every time (bad payload, a rejected address): dead at once.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The claim is no longer ours (lease expired or task re-claimed): nothing was committed
    /// and the task's current owner decides its fate.
    #[error("claim lost: the lease expired or the task was claimed again")]
    ClaimLost,
}

impl TaskError {
    pub fn retryable(error: impl fmt::Display) -> Self {
        Self::Retryable(error.to_string())
    }

    pub fn permanent(error: impl fmt::Display) -> Self {
        Self::Permanent(error.to_string())
    }
}

/// Database errors inside a task are retried: the next attempt usually succeeds
/// (connection reset, serialization failure, failover).
impl From<diesel::result::Error> for TaskError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Retryable(format!("database: {error}"))
    }
}

impl From<diesel_async::pooled_connection::bb8::RunError> for TaskError {
    fn from(error: diesel_async::pooled_connection::bb8::RunError) -> Self {
        Self::Retryable(format!("database pool: {error}"))
    }
}
