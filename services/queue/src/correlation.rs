//! The correlation id of the work in progress: the request that an API handler serves, or
//! the task a worker runs. [`crate::enqueue`] stores it with every task, and the worker
//! restores it while the task runs, so follow-up tasks inherit it and one id follows a
//! piece of work through every service.

use std::future::Future;

tokio::task_local! {
    static CORRELATION_ID: Option<String>;
}

/// Runs `work` with `id` as the current correlation id.
pub async fn with_correlation_id<F: Future>(id: Option<String>, work: F) -> F::Output {
    CORRELATION_ID.scope(id, work).await
}

/// The current correlation id, if the caller runs inside [`with_correlation_id`].
pub fn current_correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(Clone::clone).ok().flatten()
}
