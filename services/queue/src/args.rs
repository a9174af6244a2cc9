//! Typed task arguments: a kind's name, its payload type and its queue settings tied to
//! one type, so that a task is enqueued from a value and handed to its handler decoded.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{KindConfig, NewTask};

/// The arguments of one task kind.
///
/// ```ignore
/// #[derive(Serialize, Deserialize)]
/// struct ChargeArgs { order_id: Uuid }
///
/// impl TaskArgs for ChargeArgs {
///     const KIND: &'static str = "payment.charge";
///     fn config() -> KindConfig { /* attempts, lease, timeout, backoff */ }
/// }
///
/// enqueue(conn, &ChargeArgs { order_id }.to_task()).await?;
/// ```
///
/// A handler names its arguments' type ([`crate::TaskHandler::Args`]) and receives each
/// task's payload decoded into it; a payload that does not decode fails its task for good.
pub trait TaskArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name: stored with each task, and the name of its wake-up channel.
    const KIND: &'static str;

    /// How the queue treats the kind: attempts, lease, timeout, backoff.
    fn config() -> KindConfig;

    /// A key that makes the task unique: while a task with the same key is kept, enqueueing
    /// another does nothing ([`NewTask::unique`]). None by default.
    fn unique_key(&self) -> Option<String> {
        None
    }

    /// The task to enqueue, with the kind's attempt limit and the arguments as payload.
    fn to_task(&self) -> NewTask {
        // Arguments are plain structs (string keys, no maps keyed by other types), which
        // always serialise.
        let payload = serde_json::to_value(self).unwrap_or_default();
        let task = NewTask::new(&Self::config(), payload);
        match self.unique_key() {
            Some(key) => task.unique(key),
            None => task,
        }
    }
}
