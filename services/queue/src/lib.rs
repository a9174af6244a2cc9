//! A PostgreSQL task queue. It knows task kinds and payloads only as data; the
//! services that use it bring the meaning. It owns its schema ([`MIGRATIONS`], applied by
//! the application before its own) and says what its sessions must be set to
//! ([`SESSION_SETUP`]).
//!
//! # Guarantees
//! - **Transactional enqueue.** [`enqueue`] runs on the caller's connection, inside the
//!   caller's transaction: a task exists if and only if that transaction commits. The
//!   table's insert trigger sends a NOTIFY on the kind's channel, delivered at commit.
//!   A statement written in SQL enqueues with the SQL function `enqueue_task(kind,
//!   payload, max_attempts, unique_key, correlation_id)`, the same insert.
//! - **Leased batch claims.** [`claim_batch`] takes up to N waiting tasks of one kind
//!   with `FOR UPDATE SKIP LOCKED`, gives each a fresh claim token and a lease, and
//!   commits at once: no transaction stays open while a task runs. The claim's commit
//!   does not wait for the WAL flush: a claim lost in a crash is harmless (fencing).
//! - **Fenced completion.** An attempt has two parts ([`TaskHandler`]): `perform` talks to
//!   the outside world with no transaction open, then `record` writes the effects and the
//!   follow-up tasks in the transaction that completes the task. The worker opens that
//!   transaction and completes the task first, only while the claim token matches and the
//!   lease is live, so a worker whose claim was lost cannot commit: effects in PostgreSQL
//!   are exactly-once although delivery is at-least-once. The recording's commit does not
//!   wait for the WAL flush either: a recording lost in a server crash is an attempt that
//!   did not finish, made again once its lease runs out, and an attempt's outside effects
//!   must bear a second call anyway (at-least-once). A caller completing a task in its own
//!   transaction ([`ClaimedTask::complete`]) keeps its own setting.
//! - **Group commit.** Attempts of a kind that finish while another group is being
//!   recorded are recorded together: one transaction, one fenced `UPDATE` completing all
//!   of them, then each task's effects. A busy kind pays one commit for many tasks; an
//!   idle one waits for nobody (a group waits, at most 3 ms, only for the worker's attempts
//!   still performing, so that one claim's tasks share it). If the group's transaction fails,
//!   its tasks are recorded again one per transaction, so one bad task fails alone. A kind
//!   can write a group's effects set-wise, a few statements for the whole group
//!   ([`TaskHandler::record_group`]), or opt out ([`TaskHandler::GROUP_COMMIT`]).
//! - **Leases with a heartbeat.** While a task runs, its worker extends the lease every
//!   third of a lease, the leases of all its running tasks in one statement, so a long
//!   task keeps its claim, a worker can hold hundreds of attempts in flight without a
//!   statement each, and a dead worker's task is free again one lease after its last beat.
//!   Each kind bounds one attempt with a timeout, so a hung handler cannot hold a task
//!   forever.
//! - **Nothing is lost.** A task whose lease expired (its worker died) is made waiting
//!   again by its kind's workers on their next poll tick ([`rescue_expired`]), ahead of
//!   newer tasks, also while those workers are saturated; on its last attempt it is moved
//!   to `dead` instead.
//! - **Retries, then dead.** A failed attempt is retried after exponential backoff with
//!   jitter, up to the kind's attempt limit; a permanent error or the last attempt moves
//!   the task to `dead`, with every attempt's error kept. The handler's dead hook runs in
//!   the same transaction, so the owner of the task can make the failure visible. Dead
//!   tasks can be retried by an operator ([`admin::retry_dead`]).
//! - **Correlation.** Each task stores the correlation id current when it was enqueued (the
//!   API's request id, or the id of the task that enqueued it), and its worker runs it under
//!   that id again, so one id follows a piece of work across services and logs.
//! - **Wake-ups.** Workers LISTEN on their kinds' channels and poll as a fallback. A quiet
//!   kind claims at once on each wake-up; a busy one (its tasks arriving fast enough to
//!   gather [`MIN_PACED_BATCH`] within the claim cooldown, [`WorkerOptions::claim_cooldown`],
//!   15 ms by default) claims at most once per cooldown, serving many wake-ups with one
//!   larger claim and one commit group. A worker whose claims keep coming back full
//!   stops listening ([`WorkerOptions::unlisten_after`]) until one comes back short, then
//!   listens and claims once more: a missed NOTIFY costs no task and no poll interval.
//! - **Retention.** Completed tasks are kept for a while (a day by default,
//!   [`WorkerOptions::completed_retention`]), then deleted by their kind's workers, a
//!   batch per poll tick ([`admin::prune_completed`]), so the table holds recent traffic
//!   rather than all of it. Waiting, running and dead tasks are never deleted. A unique
//!   key is unique among the tasks kept: once its completed task is gone, it is free.
//! - **Graceful stop.** On shutdown a worker stops claiming and lets in-flight tasks
//!   finish within a grace period; what is still running then is stopped and given back
//!   ([`release`]) without counting the attempt.

mod args;
mod claim;
mod correlation;
mod error;
mod lease;
mod limit;
mod listener;
mod pacing;
mod phase;
mod prepared;
mod record;
pub use record::record_as_group;
mod schema;
mod session;
mod task;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub mod admin;

pub use args::TaskArgs;
pub use claim::{
    claim_batch, enqueue, enqueue_all, extend_lease, fail, notify_channel, release, rescue_expired,
    FailureOutcome,
};
pub use correlation::{current_correlation_id, with_correlation_id};
pub use error::TaskError;
pub use listener::{Listener, Wakeup, APPLICATION_NAME as LISTENER_APPLICATION_NAME};
pub use pacing::MIN_PACED_BATCH;
pub use prepared::{prepared_sql, PreparedSql};
pub use session::{MIGRATIONS, SESSION_SETUP};
pub use task::{ClaimedTask, DeadTask, KindConfig, LeaseClock, NewTask};
pub use worker::{
    record_through_group, run_once, Recording, TaskHandler, Worker, WorkerOptions,
    DEFAULT_CLAIM_COOLDOWN, DEFAULT_COMPLETED_RETENTION,
};

/// The connection pool the queue works with.
pub type Pool = diesel_async::pooled_connection::bb8::Pool<diesel_async::AsyncPgConnection>;
