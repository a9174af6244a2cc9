//! The queue's guarantees, each tried against a real PostgreSQL: fencing, lease expiry,
//! backoff, dead tasks, transactional enqueue and NOTIFY wake-ups. Each test has a
//! database of its own holding the queue's schema alone: nothing here knows of orders.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use orderflow_queue::{
    admin, claim_batch, enqueue, fail, rescue_expired, ClaimedTask, DeadTask, FailureOutcome,
    KindConfig, Listener, NewTask, TaskError, TaskHandler, Worker, WorkerOptions,
};
use serde_json::json;
use support::{wait_until, TestDb};
use tokio_util::sync::CancellationToken;

/// The associated types and the `record` of a test handler whose tasks have no effects
/// to write (the worker still completes them).
macro_rules! records_nothing {
    () => {
        type Args = serde_json::Value;
        type Outcome = ();
        type Recorded = ();

        async fn record(
            &self,
            _conn: &mut AsyncPgConnection,
            _task: &ClaimedTask,
            _outcome: &(),
        ) -> Result<(), TaskError> {
            Ok(())
        }
    };
}

/// A `perform` with nothing to do outside the database.
macro_rules! performs_nothing {
    () => {
        async fn perform(
            &self,
            _task: &ClaimedTask,
            _args: serde_json::Value,
        ) -> Result<(), TaskError> {
            Ok(())
        }
    };
}

fn kind(name: &'static str, max_attempts: i32) -> KindConfig {
    KindConfig {
        kind: name,
        max_attempts,
        lease: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    }
}

#[derive(QueryableByName, Debug)]
struct TaskRow {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Jsonb)]
    errors: serde_json::Value,
}

async fn task_row(conn: &mut AsyncPgConnection, id: i64) -> TaskRow {
    diesel::sql_query("SELECT state, attempts, last_error, errors FROM tasks WHERE id = $1")
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("task {id}: {e}"))
}

async fn enqueue_one(conn: &mut AsyncPgConnection, config: &KindConfig) -> i64 {
    enqueue(conn, &NewTask::new(config, json!({ "n": 1 })))
        .await
        .expect("enqueue")
        .unwrap_or_else(|| panic!("a task without a unique key is always enqueued"))
}

/// A write standing for a task's effects, to see whether the transaction committed.
async fn complete_with_marker(
    conn: &mut AsyncPgConnection,
    task: &ClaimedTask,
) -> Result<(), TaskError> {
    conn.transaction(async |conn| {
        task.complete(conn).await?;
        diesel::sql_query("CREATE TABLE IF NOT EXISTS effects (task_id bigint)")
            .execute(conn)
            .await?;
        diesel::sql_query("INSERT INTO effects VALUES ($1)")
            .bind::<BigInt, _>(task.id)
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

async fn effects(conn: &mut AsyncPgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'effects'")
        .get_result::<Count>(conn)
        .await
        .map(|c| c.n)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_lease_expired_cannot_complete_its_task() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.fenced", 3);
    let id = enqueue_one(&mut conn, &config).await;

    // A zero lease has expired by the time anyone tries to complete.
    let claimed = claim_batch(&mut conn, config.kind, 10, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);
    let outcome = complete_with_marker(&mut conn, &claimed[0]).await;
    assert!(matches!(outcome, Err(TaskError::ClaimLost)), "{outcome:?}");
    assert_eq!(
        effects(&mut conn).await,
        0,
        "the effects were rolled back with the completion"
    );
    assert_eq!(task_row(&mut conn, id).await.state, "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_claim_is_claimed_again_and_only_the_new_claim_completes() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.reclaim", 3);
    let id = enqueue_one(&mut conn, &config).await;

    let first = claim_batch(&mut conn, config.kind, 10, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(first.len(), 1);
    let later = enqueue_one(&mut conn, &config).await;
    // The rescue (a worker's poll tick) makes it waiting again, ahead of the newer task.
    let rescued = rescue_expired(&mut conn, config.kind, 100).await;
    assert_eq!(rescued.ok(), Some(1));
    let row = task_row(&mut conn, id).await;
    assert_eq!(row.state, "waiting");
    assert_eq!(row.attempts, 1, "the lost attempt stays counted");
    assert_eq!(row.errors[0]["error"], "lease expired; waiting again");
    let second = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(second.len(), 1, "the expired claim is claimable again");
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].attempt, 2);
    assert_ne!(second[0].claim_token, first[0].claim_token);

    assert!(matches!(
        first[0].complete(&mut conn).await,
        Err(TaskError::ClaimLost)
    ));
    assert!(complete_with_marker(&mut conn, &second[0]).await.is_ok());
    assert_eq!(effects(&mut conn).await, 1);
    assert_eq!(task_row(&mut conn, id).await.state, "completed");
    assert_eq!(task_row(&mut conn, later).await.state, "waiting");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_claim_is_not_handed_out_twice() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.exclusive", 3);
    enqueue_many(&mut conn, &config, 5).await;
    let first = claim_batch(&mut conn, config.kind, 3, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    let second = claim_batch(&mut conn, config.kind, 10, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    let third = claim_batch(&mut conn, config.kind, 10, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!((first.len(), second.len(), third.len()), (3, 2, 0));
    let mut ids: Vec<i64> = first.iter().chain(&second).map(|t| t.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    // Another kind's claim path does not see these tasks.
    let other = claim_batch(&mut conn, "test.other", 10, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert!(other.is_empty());
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn synchronous_commit(conn: &mut AsyncPgConnection) -> String {
    diesel::sql_query("SELECT current_setting('synchronous_commit') AS value")
        .get_result::<Setting>(conn)
        .await
        .map_or_else(|e| format!("error: {e}"), |s| s.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_commits_without_the_flush_wait_and_only_its_own_transaction() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.async_claim", 3);
    enqueue_one(&mut conn, &config).await;
    let durable = synchronous_commit(&mut conn).await;
    assert_ne!(durable, "off", "the test server commits durably by default");

    // Inside a transaction, to look at the setting before the claim's commit.
    let seen = conn
        .transaction(async |conn| {
            let claimed = claim_batch(conn, config.kind, 1, Duration::from_secs(30)).await?;
            Ok::<_, diesel::result::Error>((claimed.len(), synchronous_commit(conn).await))
        })
        .await
        .expect("the setting is read");
    assert_eq!(seen, (1, "off".to_string()));
    // The session's next transactions (an enqueue, say) commit durably again.
    assert_eq!(synchronous_commit(&mut conn).await, durable);
    enqueue_one(&mut conn, &config).await;
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);
    assert_eq!(synchronous_commit(&mut conn).await, durable);
}

/// Reads, inside its recording's transaction, how that transaction will commit.
struct ReadsCommitSetting;

impl TaskHandler for ReadsCommitSetting {
    type Args = serde_json::Value;
    type Outcome = ();
    type Recorded = String;

    performs_nothing!();

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        _task: &ClaimedTask,
        _outcome: &(),
    ) -> Result<String, TaskError> {
        Ok(synchronous_commit(conn).await)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_commits_without_the_flush_wait_and_only_its_own_transaction() {
    let db = TestDb::new().await;
    // One connection, so that the recording and the check after it share a session.
    let pool = db.pool(1);
    let mut conn = db.connect().await;
    let config = kind("test.async_record", 3);
    let id = enqueue_one(&mut conn, &config).await;
    let durable = synchronous_commit(&mut conn).await;
    assert_ne!(durable, "off", "the test server commits durably by default");
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);

    let results = orderflow_queue::record_as_group(
        &pool,
        &ReadsCommitSetting,
        vec![(claimed[0].clone(), ())],
    )
    .await
    .expect("the group is recorded");
    assert_eq!(
        results.into_iter().map(Result::ok).collect::<Vec<_>>(),
        [Some("off".to_string())]
    );
    assert_eq!(task_row(&mut conn, id).await.state, "completed");
    // The pooled session's next transactions (an enqueue, say) commit durably again.
    let mut pooled = pool.get().await.expect("the pool's connection");
    assert_eq!(synchronous_commit(&mut pooled).await, durable);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completion_in_the_callers_transaction_leaves_its_commit_durable() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.durable_complete", 3);
    enqueue_one(&mut conn, &config).await;
    let durable = synchronous_commit(&mut conn).await;
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);
    let seen = conn
        .transaction(async |conn| {
            claimed[0].complete(conn).await?;
            Ok::<_, TaskError>(synchronous_commit(conn).await)
        })
        .await
        .expect("the task completes");
    assert_eq!(seen, durable);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_tells_how_long_its_task_waited_due() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.waited", 1);
    let id = enqueue_one(&mut conn, &config).await;
    // Due for two seconds already, as a task enqueued during a backlog would be.
    diesel::sql_query("UPDATE tasks SET run_at = now() - interval '2 seconds' WHERE id = $1")
        .bind::<BigInt, _>(id)
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .expect("claim batch");
    let [task] = claimed.as_slice() else {
        panic!("one task is due, claimed {}", claimed.len());
    };
    assert!(
        task.waited() >= Duration::from_secs(2),
        "{:?}",
        task.waited()
    );
    assert!(
        task.waited() < Duration::from_secs(60),
        "{:?}",
        task.waited()
    );
    assert_eq!(
        task.lease_expires_at - task.claimed_at,
        chrono::Duration::seconds(30)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_attempt_waits_for_its_backoff() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.backoff", 5);
    let id = enqueue_one(&mut conn, &config).await;
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    let outcome = fail(
        &mut conn,
        &claimed[0],
        &TaskError::retryable("gateway timeout"),
        Duration::from_secs(3600),
    )
    .await
    .expect("the failure is recorded");
    assert_eq!(outcome, FailureOutcome::Retrying);
    let row = task_row(&mut conn, id).await;
    assert_eq!(row.state, "waiting");
    assert_eq!(
        row.last_error.as_deref(),
        Some("retryable: gateway timeout")
    );
    let again = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert!(again.is_empty(), "not due before its backoff");
    // A stale claim cannot record a failure either.
    let stale = fail(
        &mut conn,
        &claimed[0],
        &TaskError::retryable("late"),
        Duration::ZERO,
    )
    .await;
    assert_eq!(stale.ok(), Some(FailureOutcome::ClaimLost));
}

#[test]
fn backoff_grows_exponentially_within_its_jitter_and_cap() {
    let config = KindConfig {
        kind: "test.math",
        max_attempts: 10,
        lease: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
    };
    for (attempt, full_ms) in [
        (1, 100u64),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1600),
        (6, 2000),
        (30, 2000),
    ] {
        for _ in 0..50 {
            let delay = config.backoff(attempt).as_millis() as u64;
            assert!(
                (full_ms / 2..=full_ms).contains(&delay),
                "attempt {attempt}: {delay} ms"
            );
        }
    }
}

fn count(counter: &AtomicUsize) -> usize {
    AtomicUsize::load(counter, Ordering::SeqCst)
}

/// A handler that fails every attempt and counts dead-hook calls.
struct AlwaysFails {
    permanent: bool,
    runs: AtomicUsize,
    dead_hook_calls: AtomicUsize,
}

impl AlwaysFails {
    fn new(permanent: bool) -> Arc<Self> {
        Arc::new(Self {
            permanent,
            runs: AtomicUsize::new(0),
            dead_hook_calls: AtomicUsize::new(0),
        })
    }
}

/// A worker running in the background until stopped.
struct RunningWorker {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

fn start_worker<H: TaskHandler>(
    db: &TestDb,
    config: KindConfig,
    handler: &Arc<H>,
) -> RunningWorker {
    start_worker_with(db, config, handler, options())
}

fn start_worker_with<H: TaskHandler>(
    db: &TestDb,
    config: KindConfig,
    handler: &Arc<H>,
    options: WorkerOptions,
) -> RunningWorker {
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        db.pool(4),
        config,
        Arc::clone(handler),
        options,
        Default::default(),
    );
    RunningWorker {
        handle: tokio::spawn(worker.run(shutdown.clone())),
        shutdown,
    }
}

impl RunningWorker {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.handle.await;
    }
}

impl TaskHandler for AlwaysFails {
    records_nothing!();

    async fn perform(
        &self,
        _task: &ClaimedTask,
        _args: serde_json::Value,
    ) -> Result<(), TaskError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.permanent {
            Err(TaskError::permanent("card declined"))
        } else {
            Err(TaskError::retryable("connection refused"))
        }
    }

    async fn on_dead(
        &self,
        _conn: &mut AsyncPgConnection,
        task: &DeadTask,
    ) -> diesel::QueryResult<()> {
        assert!(task.last_error.is_some());
        self.dead_hook_calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn options() -> WorkerOptions {
    WorkerOptions {
        concurrency: 4,
        // A fixed limit (the floor at or above the bound): these tests count claims.
        min_concurrency: usize::MAX,
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(5),
        claim_cooldown: Duration::from_millis(2),
        completed_retention: None,
        ..WorkerOptions::default()
    }
}

async fn wait_for_state(conn: &mut AsyncPgConnection, id: i64, state: &str) -> TaskRow {
    let conn = tokio::sync::Mutex::new(conn);
    wait_until(
        &format!("task {id} to be {state}"),
        Duration::from_secs(20),
        || async {
            let row = task_row(*conn.lock().await, id).await;
            (row.state == state).then_some(row)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_task_is_retried_until_its_limit_then_dead_with_its_errors() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.flaky", 3);
    let id = enqueue_one(&mut conn, &config).await;
    let handler = AlwaysFails::new(false);
    let worker = start_worker(&db, config.clone(), &handler);

    let row = wait_for_state(&mut conn, id, "dead").await;
    assert_eq!(row.attempts, 3);
    assert_eq!(
        row.errors.as_array().map(Vec::len),
        Some(3),
        "every attempt's error is kept"
    );
    assert_eq!(
        row.last_error.as_deref(),
        Some("retryable: connection refused")
    );
    assert_eq!(count(&handler.runs), 3);
    assert_eq!(count(&handler.dead_hook_calls), 1);

    let dead = admin::dead_tasks(&mut conn, &admin::DeadFilter::default(), 10)
        .await
        .unwrap_or_default();
    assert_eq!(dead.iter().map(|t| t.id).collect::<Vec<_>>(), [id]);
    // Filtered by kind and by a piece of the error, case-insensitively; `%` and `_` in the
    // text match themselves.
    for (kind, text, expected) in [
        (Some(config.kind), Some("CONNECTION refused"), 1),
        (Some("test.other"), None, 0),
        (None, Some("connection_refused"), 0),
        (None, Some("100%"), 0),
    ] {
        let filter = admin::DeadFilter {
            kind: kind.map(str::to_string),
            error_contains: text.map(str::to_string),
        };
        let listed = admin::dead_tasks(&mut conn, &filter, 10)
            .await
            .unwrap_or_else(|e| panic!("dead tasks {filter:?}: {e}"));
        assert_eq!(listed.len(), expected, "{filter:?}");
        let counted = admin::count_dead(&mut conn, &filter)
            .await
            .unwrap_or_else(|e| panic!("count {filter:?}: {e}"));
        assert_eq!(counted, expected as i64, "{filter:?}");
    }
    // An operator retries it: a fresh set of attempts.
    assert!(admin::retry_dead(&mut conn, id).await.unwrap_or(false));
    let row = wait_for_state(&mut conn, id, "dead").await;
    assert_eq!(row.errors.as_array().map(Vec::len), Some(6));
    assert_eq!(count(&handler.dead_hook_calls), 2);
    assert!(
        !admin::retry_dead(&mut conn, id + 1000)
            .await
            .unwrap_or(true),
        "no such task"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_error_kills_the_task_at_once() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.permanent", 10);
    let id = enqueue_one(&mut conn, &config).await;
    let handler = AlwaysFails::new(true);
    let worker = start_worker(&db, config, &handler);
    let row = wait_for_state(&mut conn, id, "dead").await;
    assert_eq!(row.attempts, 1);
    assert_eq!(count(&handler.runs), 1);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_worker_died_on_its_last_attempt_is_buried_dead() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.last-attempt", 1);
    let id = enqueue_one(&mut conn, &config).await;
    // The "dead worker": claims with a lease that is already over, and never reports.
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);
    let handler = AlwaysFails::new(false);
    let worker = start_worker(&db, config, &handler);
    let row = wait_for_state(&mut conn, id, "dead").await;
    assert_eq!(
        row.last_error.as_deref(),
        Some("lease expired during the last attempt")
    );
    assert_eq!(count(&handler.runs), 0, "not run a second time");
    wait_until("the dead hook", Duration::from_secs(10), || async {
        (count(&handler.dead_hook_calls) == 1).then_some(())
    })
    .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_exists_only_if_its_transaction_commits_and_then_notifies() {
    let db = TestDb::new().await;
    let config = kind("test.tx", 3);
    let mut listener = db.connect().await;
    diesel::sql_query("LISTEN \"tasks.test.tx\"")
        .execute(&mut listener)
        .await
        .expect("the statement runs");

    let mut conn = db.connect().await;
    let rolled_back: Result<(), diesel::result::Error> = conn
        .transaction(async |conn| {
            enqueue_one(conn, &config).await;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(rolled_back.is_err());
    let claimable = claim_batch(&mut conn, config.kind, 10, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert!(claimable.is_empty(), "a rolled-back enqueue left a task");

    let committed: Result<i64, diesel::result::Error> = conn
        .transaction(async |conn| Ok(enqueue_one(conn, &config).await))
        .await;
    let id = committed.expect("the transaction commits");
    let mut notifications = std::pin::pin!(listener.notifications_stream());
    let notification = tokio::time::timeout(Duration::from_secs(10), notifications.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no NOTIFY after commit"));
    assert_eq!(notification.channel, "tasks.test.tx");
    assert_eq!(task_row(&mut conn, id).await.state, "waiting");
}

/// Completes every task it gets, with no effects.
struct Completes;

impl TaskHandler for Completes {
    records_nothing!();

    performs_nothing!();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notify_wakes_an_idle_worker_without_waiting_for_the_poll() {
    let db = TestDb::new().await;
    let config = kind("test.wakeup", 3);
    let pool = db.pool(4);
    let listener = Listener::new(&[config.kind]);
    let shutdown = CancellationToken::new();
    let options = WorkerOptions {
        // Far longer than the test's deadline: only a NOTIFY can get the task done.
        poll_interval: Duration::from_secs(3600),
        ..options()
    };
    let worker = Worker::new(
        pool.clone(),
        config.clone(),
        Arc::new(Completes),
        options,
        listener.wakeup(config.kind),
    );
    let listening = tokio::spawn(listener.run(db.url.clone(), shutdown.clone()));
    let running = tokio::spawn(worker.run(shutdown.clone()));
    // Let the worker go idle (its first claim finds nothing) before enqueueing.
    let mut conn = db.connect().await;
    wait_for_listener_statement(&db, "LISTEN").await;
    // One at a time, each after the previous finished, so that the worker is idle
    // (waiting for a wake-up) when the next arrives.
    for _ in 0..3 {
        let id = enqueue_one(&mut conn, &config).await;
        wait_for_state(&mut conn, id, "completed").await;
    }
    shutdown.cancel();
    let _ = running.await;
    let _ = listening.await;
}

/// Completes every task, noting when each attempt started.
#[derive(Default)]
struct Stamps(std::sync::Mutex<Vec<std::time::Instant>>);

impl Stamps {
    fn stamps(&self) -> std::sync::MutexGuard<'_, Vec<std::time::Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn taken(&self) -> Vec<std::time::Instant> {
        self.stamps().clone()
    }
}

impl TaskHandler for Stamps {
    records_nothing!();

    async fn perform(
        &self,
        _task: &ClaimedTask,
        _args: serde_json::Value,
    ) -> Result<(), TaskError> {
        self.stamps().push(std::time::Instant::now());
        Ok(())
    }
}

async fn enqueue_many(conn: &mut AsyncPgConnection, config: &KindConfig, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(enqueue_one(conn, config).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_kind_waits_out_the_claim_cooldown_before_its_next_claim() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.paced", 3);
    let cooldown = Duration::from_secs(3);
    // Five tasks in one claim of sixteen slots: a rate that a cooldown this long turns
    // into batches, and a claim that is not full.
    let first = enqueue_many(&mut conn, &config, 5).await;
    let handler = Arc::new(Stamps::default());
    let options = WorkerOptions {
        concurrency: 16,
        claim_cooldown: cooldown,
        unlisten_after: None,
        ..options()
    };
    let worker = start_worker_with(&db, config.clone(), &handler, options);
    for id in first {
        wait_for_state(&mut conn, id, "completed").await;
    }
    let late = enqueue_one(&mut conn, &config).await;
    wait_for_state(&mut conn, late, "completed").await;
    worker.stop().await;

    let stamps = handler.taken();
    assert_eq!(stamps.len(), 6);
    // The first claim started before its tasks did; a claim that took more than a
    // second would make this pass too late, never too early.
    let gap = stamps[5].duration_since(stamps[0]);
    assert!(
        gap >= cooldown - Duration::from_secs(1),
        "the next claim came {gap:?} after the first, within the {cooldown:?} cooldown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_claim_is_followed_at_once_whatever_the_cooldown() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.backlog", 3);
    // Twelve tasks, four slots: three full claims. Paced, they would take two minutes.
    let ids = enqueue_many(&mut conn, &config, 12).await;
    let handler = Arc::new(Stamps::default());
    let options = WorkerOptions {
        concurrency: 4,
        claim_cooldown: Duration::from_secs(60),
        unlisten_after: None,
        ..options()
    };
    let worker = start_worker_with(&db, config.clone(), &handler, options);
    for id in ids {
        wait_for_state(&mut conn, id, "completed").await;
    }
    worker.stop().await;
    assert_eq!(handler.taken().len(), 12);
}

/// The last statement of the listener's session in the test's database, once it has one.
async fn listener_statement(db: &TestDb) -> Option<String> {
    #[derive(QueryableByName)]
    struct Statement {
        #[diesel(sql_type = Text)]
        query: String,
    }
    let mut probe = db.connect().await;
    let statement: Statement = diesel::sql_query(
        "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
    )
    .bind::<Text, _>(orderflow_queue::LISTENER_APPLICATION_NAME)
    .get_result(&mut probe)
    .await
    .ok()?;
    Some(statement.query)
}

async fn wait_for_listener_statement(db: &TestDb, prefix: &str) {
    wait_until(
        &format!("the listener's session to run {prefix}"),
        Duration::from_secs(10),
        || async {
            listener_statement(db)
                .await
                .filter(|query| query.starts_with(prefix))
                .map(drop)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_worker_stops_listening_until_a_claim_comes_back_short() {
    let db = TestDb::new().await;
    let config = kind("test.saturated", 3);
    let listener = Listener::new(&[config.kind]);
    let shutdown = CancellationToken::new();
    // The first two attempts wait for the gate: the first claim is full (two of two).
    let handler = Arc::new(Gate {
        hold_first: 2,
        ..Gate::default()
    });
    let options = WorkerOptions {
        concurrency: 2,
        // Far longer than the test's deadlines: only a NOTIFY or a claim of the worker's
        // own can get a task done.
        poll_interval: Duration::from_secs(3600),
        unlisten_after: Some(Duration::ZERO),
        ..options()
    };
    let worker = Worker::new(
        db.pool(4),
        config.clone(),
        Arc::clone(&handler),
        options,
        listener.wakeup(config.kind),
    );
    let listening = tokio::spawn(listener.run(db.url.clone(), shutdown.clone()));
    wait_for_listener_statement(&db, "LISTEN").await;
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let mut conn = db.connect().await;
    let ids = enqueue_many(&mut conn, &config, 5).await;
    handler.wait_started(2).await;
    wait_for_listener_statement(&db, "UNLISTEN").await;

    // The held attempts finish; the worker claims the other three itself (two, then one:
    // short), and listens again.
    let conn_cell = tokio::sync::Mutex::new(&mut conn);
    wait_until(
        "every task to complete",
        Duration::from_secs(20),
        || async {
            handler.open.notify_waiters();
            let mut conn = conn_cell.lock().await;
            for &id in &ids {
                if task_row(&mut conn, id).await.state != "completed" {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let conn = conn_cell.into_inner();
    wait_for_listener_statement(&db, "LISTEN").await;
    // Idle again, the worker is woken by the NOTIFY alone.
    let id = enqueue_one(conn, &config).await;
    wait_for_state(conn, id, "completed").await;
    shutdown.cancel();
    let _ = running.await;
    let _ = listening.await;
}

/// A handler that holds each attempt until the test opens the gate (or forever), counting
/// attempts started and attempts whose future was dropped unfinished.
#[derive(Default)]
struct Gate {
    started: AtomicUsize,
    dropped: AtomicUsize,
    open: tokio::sync::Notify,
    /// Attempts after this many complete at once.
    hold_first: usize,
}

/// Counts an attempt's future dropped before it finished (stopped by the worker).
struct DropCounter<'a>(&'a AtomicUsize, bool);

impl Drop for DropCounter<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Gate {
    /// Waits until `n` attempts have started.
    async fn wait_started(&self, n: usize) {
        wait_until(
            &format!("{n} attempt(s) to start"),
            Duration::from_secs(10),
            || async { (count(&self.started) == n).then_some(()) },
        )
        .await;
    }
}

impl TaskHandler for Gate {
    records_nothing!();

    async fn perform(
        &self,
        _task: &ClaimedTask,
        _args: serde_json::Value,
    ) -> Result<(), TaskError> {
        let attempt = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let mut guard = DropCounter(&self.dropped, false);
        if attempt <= self.hold_first {
            self.open.notified().await;
        }
        guard.1 = true;
        Ok(())
    }
}

fn gated_kind(name: &'static str, lease: Duration, timeout: Duration) -> KindConfig {
    KindConfig {
        lease,
        timeout,
        ..kind(name, 5)
    }
}

#[derive(QueryableByName)]
struct Lease {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    original_lease_over: bool,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_task_keeps_its_claim_past_its_lease_through_heartbeats() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = gated_kind(
        "test.long",
        Duration::from_millis(1500),
        Duration::from_secs(60),
    );
    let id = enqueue_one(&mut conn, &config).await;
    let handler = Arc::new(Gate {
        hold_first: 1,
        ..Gate::default()
    });
    let worker = start_worker(&db, config.clone(), &handler);
    handler.wait_started(1).await;
    let first_lease: chrono::DateTime<chrono::Utc> = lease_of(&mut conn, id).await;
    let conn_cell = tokio::sync::Mutex::new(&mut conn);
    wait_until(
        "the first lease to run out",
        Duration::from_secs(10),
        || async {
            let over: Lease = diesel::sql_query("SELECT now() > $1 AS original_lease_over")
                .bind::<diesel::sql_types::Timestamptz, _>(first_lease)
                .get_result(*conn_cell.lock().await)
                .await
                .ok()?;
            over.original_lease_over.then_some(())
        },
    )
    .await;
    let conn = conn_cell.into_inner();
    let stolen = claim_batch(conn, config.kind, 10, config.lease)
        .await
        .expect("claim");
    assert!(stolen.is_empty(), "the heartbeat kept the claim");
    assert!(lease_of(conn, id).await > first_lease);
    handler.open.notify_waiters();
    let row = wait_for_state(conn, id, "completed").await;
    assert_eq!(row.attempts, 1, "one attempt, never re-claimed");
    assert_eq!(count(&handler.dropped), 0);
    worker.stop().await;
}

/// A claim whose row another transaction holds locked (its attempt being recorded, say)
/// does not hold up the renewal of the worker's other claims: the renewal skips that row
/// instead of waiting for it (waiting also deadlocked against group records under load).
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_claim_does_not_hold_up_the_renewal_of_the_others() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = gated_kind(
        "test.locked",
        Duration::from_millis(1500),
        Duration::from_secs(60),
    );
    let locked = enqueue_one(&mut conn, &config).await;
    let other = enqueue_one(&mut conn, &config).await;
    let handler = Arc::new(Gate {
        hold_first: 2,
        ..Gate::default()
    });
    let worker = start_worker(&db, config.clone(), &handler);
    handler.wait_started(2).await;
    let mut holder = db.connect().await;
    diesel::sql_query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("BEGIN");
    diesel::sql_query("SELECT id FROM tasks WHERE id = $1 FOR UPDATE")
        .bind::<BigInt, _>(locked)
        .execute(&mut holder)
        .await
        .unwrap_or_else(|e| panic!("lock task {locked}: {e}"));
    let lease_when_locked = lease_of(&mut conn, other).await;
    // A beat comes every half second (a third of the lease).
    let conn_cell = tokio::sync::Mutex::new(&mut conn);
    wait_until(
        "the other claim's lease to be renewed while one row is locked",
        Duration::from_secs(10),
        || async {
            let lease = lease_of(*conn_cell.lock().await, other).await;
            (lease > lease_when_locked).then_some(())
        },
    )
    .await;
    let conn = conn_cell.into_inner();
    diesel::sql_query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("ROLLBACK");
    handler.open.notify_waiters();
    let row = wait_for_state(conn, other, "completed").await;
    assert_eq!(row.attempts, 1, "the other claim was never lost");
    wait_for_state(conn, locked, "completed").await;
    worker.stop().await;
}

async fn lease_of(conn: &mut AsyncPgConnection, id: i64) -> chrono::DateTime<chrono::Utc> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        lease_expires_at: chrono::DateTime<chrono::Utc>,
    }
    let row: Row = diesel::sql_query("SELECT lease_expires_at FROM tasks WHERE id = $1")
        .bind::<BigInt, _>(id)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("lease of task {id}: {e}"));
    row.lease_expires_at
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_worker_still_rescues_expired_leases_on_its_poll_tick() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = gated_kind(
        "test.busy_rescue",
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    // A task claimed by a worker that then died: its short lease runs out unextended.
    let orphan = enqueue_one(&mut conn, &config).await;
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::from_millis(200))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // Another task takes the worker's only slot and holds it: the worker's claim was full,
    // so it waits for the slot rather than for a wake-up.
    enqueue_one(&mut conn, &config).await;
    let handler = Arc::new(Gate {
        hold_first: 1,
        ..Gate::default()
    });
    let worker = start_worker_with(
        &db,
        config,
        &handler,
        WorkerOptions {
            concurrency: 1,
            ..options()
        },
    );
    handler.wait_started(1).await;
    let row = wait_for_state(&mut conn, orphan, "waiting").await;
    assert_eq!(row.attempts, 1, "rescued, not yet run again");
    handler.open.notify_waiters();
    wait_for_state(&mut conn, orphan, "completed").await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_attempt_times_out_and_the_task_is_retried() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = gated_kind(
        "test.hung",
        Duration::from_secs(30),
        Duration::from_millis(200),
    );
    let id = enqueue_one(&mut conn, &config).await;
    // The first attempt never returns; the second completes.
    let handler = Arc::new(Gate {
        hold_first: 1,
        ..Gate::default()
    });
    let worker = start_worker(&db, config, &handler);
    let row = wait_for_state(&mut conn, id, "completed").await;
    assert_eq!(row.attempts, 2);
    assert_eq!(count(&handler.dropped), 1, "the hung attempt was stopped");
    let first_error = row.errors[0]["error"].as_str().unwrap_or_default();
    assert!(first_error.contains("timed out"), "{first_error}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attempt_whose_claim_was_taken_stops_at_the_next_heartbeat() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = gated_kind(
        "test.taken",
        Duration::from_millis(300),
        Duration::from_secs(60),
    );
    let id = enqueue_one(&mut conn, &config).await;
    let handler = Arc::new(Gate {
        hold_first: usize::MAX,
        ..Gate::default()
    });
    let worker = start_worker(&db, config, &handler);
    handler.wait_started(1).await;
    // Another worker's claim replaces ours (as after a re-claim).
    diesel::sql_query("UPDATE tasks SET claim_token = gen_random_uuid() WHERE id = $1")
        .bind::<BigInt, _>(id)
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    wait_until(
        "the attempt to be stopped",
        Duration::from_secs(10),
        || async { (count(&handler.dropped) == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        task_row(&mut conn, id).await.state,
        "running",
        "nothing recorded by the loser"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn at_shutdown_tasks_still_running_after_the_grace_period_are_given_back() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = gated_kind(
        "test.shutdown",
        Duration::from_secs(30),
        Duration::from_secs(60),
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue_one(&mut conn, &config).await);
    }
    let handler = Arc::new(Gate {
        hold_first: usize::MAX,
        ..Gate::default()
    });
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        db.pool(4),
        config.clone(),
        Arc::clone(&handler),
        WorkerOptions {
            shutdown_grace: Duration::from_millis(100),
            ..options()
        },
        Default::default(),
    );
    let running = tokio::spawn(worker.run(shutdown.clone()));
    handler.wait_started(3).await;
    shutdown.cancel();
    running.await.expect("worker");
    assert_eq!(count(&handler.dropped), 3, "the attempts were stopped");
    for id in ids {
        let row = task_row(&mut conn, id).await;
        assert_eq!(row.state, "waiting", "task {id} given back");
        assert_eq!(row.attempts, 0, "the interrupted attempt does not count");
    }
    let claimable = claim_batch(&mut conn, config.kind, 10, config.lease)
        .await
        .unwrap_or_default();
    assert_eq!(claimable.len(), 3, "claimable at once, not after the lease");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_overview_shows_a_running_task_past_its_lease() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.stuck", 5);
    enqueue_one(&mut conn, &config).await;
    enqueue_one(&mut conn, &config).await;
    // A worker that claimed with a lease already over and never came back.
    let claimed = claim_batch(&mut conn, config.kind, 1, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(claimed.len(), 1);
    let overview = admin::overview(&mut conn).await.expect("overview");
    let running = overview
        .iter()
        .find(|row| row.kind == config.kind && row.state == "running")
        .unwrap_or_else(|| panic!("no running row in {overview:?}"));
    assert_eq!((running.count, running.past_lease), (1, 1));
    let waiting = overview
        .iter()
        .find(|row| row.kind == config.kind && row.state == "waiting")
        .unwrap_or_else(|| panic!("no waiting row in {overview:?}"));
    assert_eq!((waiting.count, waiting.past_lease), (1, 0));
    assert!(waiting.oldest_age_seconds.is_some_and(|age| age >= 0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_with_a_unique_key_is_enqueued_once_whatever_its_state() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.unique", 3);
    let task = NewTask::new(&config, json!({ "n": 1 })).unique("order-1:confirmation");
    let first = enqueue(&mut conn, &task).await.expect("enqueue");
    assert!(first.is_some());
    assert_eq!(
        enqueue(&mut conn, &task).await.ok(),
        Some(None),
        "a waiting twin"
    );
    // Still a duplicate once the first one ran.
    let claimed = claim_batch(&mut conn, config.kind, 1, config.lease)
        .await
        .unwrap_or_default();
    let mut tx_conn = db.connect().await;
    let _done = claimed[0].complete(&mut tx_conn).await;
    assert_eq!(
        enqueue(&mut conn, &task).await.ok(),
        Some(None),
        "a completed twin"
    );
    let other = NewTask::new(&config, json!({ "n": 2 })).unique("order-2:confirmation");
    assert!(enqueue(&mut conn, &other).await.ok().flatten().is_some());
    let tasks: i64 = diesel::sql_query("SELECT count(*) AS n FROM tasks")
        .get_result::<Count>(&mut conn)
        .await
        .map(|row| row.n)
        .unwrap_or_default();
    assert_eq!(tasks, 2);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Moves a task to `state` as if it had got there `age_hours` ago.
async fn age_task(conn: &mut AsyncPgConnection, id: i64, state: &str, age_hours: f64) {
    diesel::sql_query(
        "UPDATE tasks SET state = $1, \
             completed_at = CASE WHEN $1 = 'completed' THEN now() - $2 * interval '1 hour' END, \
             updated_at = now() - $2 * interval '1 hour' \
         WHERE id = $3",
    )
    .bind::<Text, _>(state)
    .bind::<diesel::sql_types::Double, _>(age_hours)
    .bind::<BigInt, _>(id)
    .execute(conn)
    .await
    .expect("the statement runs");
}

async fn task_ids(conn: &mut AsyncPgConnection) -> Vec<i64> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    diesel::sql_query("SELECT id FROM tasks ORDER BY id")
        .load::<Id>(conn)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|row| row.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_completed_tasks_past_their_retention_are_deleted_oldest_first() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.retention", 3);
    let other = kind("test.retention-other", 3);
    let keyed = NewTask::new(&config, json!({ "n": 0 })).unique("order-1:confirmation");
    let oldest = enqueue(&mut conn, &keyed)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("enqueue failed"));
    age_task(&mut conn, oldest, "completed", 72.0).await;
    let old = enqueue_one(&mut conn, &config).await;
    age_task(&mut conn, old, "completed", 48.0).await;
    let recent = enqueue_one(&mut conn, &config).await;
    age_task(&mut conn, recent, "completed", 1.0).await;
    let dead = enqueue_one(&mut conn, &config).await;
    age_task(&mut conn, dead, "dead", 72.0).await;
    let other_kind = enqueue_one(&mut conn, &other).await;
    age_task(&mut conn, other_kind, "completed", 72.0).await;
    let running = enqueue_one(&mut conn, &config).await;
    let claimed = claim_batch(&mut conn, config.kind, 1, config.lease)
        .await
        .unwrap_or_default();
    assert_eq!(claimed.iter().map(|t| t.id).collect::<Vec<_>>(), [running]);
    let waiting = enqueue_one(&mut conn, &config).await;
    age_task(&mut conn, waiting, "waiting", 72.0).await;
    let day = Duration::from_secs(24 * 3600);

    // A batch of one takes the oldest.
    let pruned = admin::prune_completed(&mut conn, config.kind, day, 1).await;
    assert_eq!(pruned.ok(), Some(1));
    assert!(!task_ids(&mut conn).await.contains(&oldest));
    let pruned = admin::prune_completed(&mut conn, config.kind, day, 100).await;
    assert_eq!(
        pruned.ok(),
        Some(1),
        "only the other one past the retention"
    );
    assert_eq!(
        task_ids(&mut conn).await,
        vec![recent, dead, other_kind, running, waiting],
        "recent, dead, waiting and running tasks stay, and so do other kinds'"
    );
    // The key of a deleted task is free again.
    assert!(enqueue(&mut conn, &keyed).await.ok().flatten().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_deletes_its_kinds_completed_tasks_once_their_retention_is_over() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.pruned", 3);
    let other = kind("test.pruned-other", 3);
    let kept = enqueue_one(&mut conn, &other).await;
    age_task(&mut conn, kept, "completed", 72.0).await;
    let id = enqueue_one(&mut conn, &config).await;
    let shutdown = CancellationToken::new();
    let worker = Worker::new(
        db.pool(4),
        config.clone(),
        Arc::new(Completes),
        WorkerOptions {
            completed_retention: Some(Duration::ZERO),
            ..options()
        },
        Default::default(),
    );
    let running = tokio::spawn(worker.run(shutdown.clone()));
    wait_until(
        "the completed task to be deleted",
        Duration::from_secs(10),
        || async {
            let mut probe = db.connect().await;
            (!task_ids(&mut probe).await.contains(&id)).then_some(())
        },
    )
    .await;
    shutdown.cancel();
    let _ = running.await;
    assert_eq!(
        task_ids(&mut conn).await,
        vec![kept],
        "another kind's task is not its to delete"
    );
}

/// Panics on its first attempt, completes on the next.
struct PanicsOnce {
    runs: AtomicUsize,
}

impl TaskHandler for PanicsOnce {
    records_nothing!();

    async fn perform(
        &self,
        _task: &ClaimedTask,
        _args: serde_json::Value,
    ) -> Result<(), TaskError> {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("boom");
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_panic_is_a_failed_attempt_retried_at_once_not_after_the_lease() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    // A lease far longer than the test's deadline: only the recorded failure can bring the
    // task back in time.
    let config = KindConfig {
        lease: Duration::from_secs(3600),
        ..kind("test.panics", 3)
    };
    let id = enqueue_one(&mut conn, &config).await;
    let handler = Arc::new(PanicsOnce {
        runs: AtomicUsize::new(0),
    });
    let worker = start_worker(&db, config, &handler);
    let row = wait_for_state(&mut conn, id, "completed").await;
    assert_eq!(row.attempts, 2);
    let first_error = row.errors[0]["error"].as_str().unwrap_or_default();
    assert!(
        first_error.contains("handler panicked: boom"),
        "{first_error}"
    );
    worker.stop().await;
}

/// Makes the recorder's groups observable. The first recording waits until every expected
/// attempt has performed, so that the others queue up meanwhile and are recorded together;
/// each committed task reports its transaction id. A task whose payload says `"panic"`
/// performs only once a recording has started (so it is not in the first group) and
/// panics whenever its first attempt is recorded: in its group, then alone.
struct GroupProbe {
    expected: usize,
    performed: AtomicUsize,
    recording: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
    committed: std::sync::Mutex<Vec<(i64, i64)>>,
}

impl GroupProbe {
    fn new(expected: usize) -> Self {
        Self {
            expected,
            performed: AtomicUsize::new(0),
            recording: Default::default(),
            changed: tokio::sync::Notify::new(),
            committed: Default::default(),
        }
    }

    async fn wait_for(&self, condition: impl Fn(&Self) -> bool) {
        loop {
            // Registered before the check, so that a change in between is not missed.
            let changed = self.changed.notified();
            if condition(self) {
                return;
            }
            changed.await;
        }
    }

    /// (task id, transaction id) of every committed recording.
    fn committed(&self) -> Vec<(i64, i64)> {
        self.committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl TaskHandler for GroupProbe {
    type Args = serde_json::Value;
    type Outcome = ();
    type Recorded = i64;

    async fn perform(&self, _task: &ClaimedTask, args: serde_json::Value) -> Result<(), TaskError> {
        if args["panic"] == true {
            self.wait_for(|probe: &Self| {
                std::sync::atomic::AtomicBool::load(&probe.recording, Ordering::SeqCst)
            })
            .await;
        }
        self.performed.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        _outcome: &(),
    ) -> Result<i64, TaskError> {
        self.recording.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
        self.wait_for(|probe: &Self| {
            AtomicUsize::load(&probe.performed, Ordering::SeqCst) >= probe.expected
        })
        .await;
        if task.payload["panic"] == true && task.attempt == 1 {
            panic!("boom in record");
        }
        #[derive(QueryableByName)]
        struct Txid {
            #[diesel(sql_type = BigInt)]
            txid: i64,
        }
        let row: Txid = diesel::sql_query("SELECT txid_current() AS txid")
            .get_result(conn)
            .await?;
        Ok(row.txid)
    }

    fn committed(&self, task: &ClaimedTask, _outcome: &(), txid: &i64) {
        self.committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((task.id, *txid));
    }
}

fn largest_group(committed: &[(i64, i64)]) -> usize {
    let mut sizes = std::collections::HashMap::new();
    for (_, txid) in committed {
        *sizes.entry(*txid).or_insert(0) += 1;
    }
    sizes.into_values().max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn attempts_finishing_together_are_recorded_in_one_transaction() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.group", 3);
    let mut ids = Vec::new();
    for _ in 0..options().concurrency {
        ids.push(enqueue_one(&mut conn, &config).await);
    }
    let handler = Arc::new(GroupProbe::new(ids.len()));
    let worker = start_worker(&db, config, &handler);
    for id in &ids {
        let row = wait_for_state(&mut conn, *id, "completed").await;
        assert_eq!(row.attempts, 1);
    }
    worker.stop().await;

    let committed = handler.committed();
    let mut tasks: Vec<i64> = committed.iter().map(|(task, _)| *task).collect();
    tasks.sort_unstable();
    assert_eq!(tasks, ids, "each task recorded exactly once");
    assert!(
        largest_group(&committed) >= 2,
        "no two tasks shared a transaction: {committed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_fails_its_recording_does_not_fail_the_rest_of_its_group() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    // A lease far longer than the test's deadline: only the recorded failure can bring the
    // panicking task back in time.
    let config = KindConfig {
        lease: Duration::from_secs(3600),
        ..kind("test.group_panic", 3)
    };
    let mut ids = Vec::new();
    for _ in 1..options().concurrency {
        ids.push(enqueue_one(&mut conn, &config).await);
    }
    let bad = enqueue(&mut conn, &NewTask::new(&config, json!({ "panic": true })))
        .await
        .expect("enqueue")
        .unwrap_or_else(|| panic!("a task without a unique key is always enqueued"));
    let handler = Arc::new(GroupProbe::new(ids.len() + 1));
    let worker = start_worker(&db, config, &handler);

    let row = wait_for_state(&mut conn, bad, "completed").await;
    assert_eq!(row.attempts, 2);
    let error = row.errors[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("handler panicked: boom in record"),
        "{error}"
    );
    for id in &ids {
        let row = wait_for_state(&mut conn, *id, "completed").await;
        assert_eq!(row.attempts, 1, "task {id} was failed with the bad one");
        assert!(row.last_error.is_none(), "{:?}", row.last_error);
    }
    worker.stop().await;
    let committed = handler.committed();
    assert_eq!(committed.len(), ids.len() + 1, "{committed:?}");
}

/// Completes its tasks; its `committed` hook panics the first time it runs.
#[derive(Default)]
struct HookPanicsOnce {
    hooks: AtomicUsize,
}

impl TaskHandler for HookPanicsOnce {
    records_nothing!();

    performs_nothing!();

    fn committed(&self, _task: &ClaimedTask, _outcome: &(), _recorded: &()) {
        if self.hooks.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("hook boom");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_the_committed_hook_neither_undoes_the_task_nor_stops_the_recorder() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let config = kind("test.hook_panics", 3);
    let handler = Arc::new(HookPanicsOnce::default());
    let worker = start_worker(&db, config.clone(), &handler);
    // One after the other: the second is recorded only if the recorder outlived the panic.
    for _ in 0..2 {
        let id = enqueue_one(&mut conn, &config).await;
        let row = wait_for_state(&mut conn, id, "completed").await;
        assert_eq!(row.attempts, 1);
        assert!(row.last_error.is_none(), "{:?}", row.last_error);
    }
    // The hook runs once the worker has its commit's answer, which can be after the test
    // sees the task completed.
    wait_until("both hooks", Duration::from_secs(10), || async {
        (AtomicUsize::load(&handler.hooks, Ordering::SeqCst) == 2).then_some(())
    })
    .await;
    worker.stop().await;
}

async fn prepared_copies(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1")
        .bind::<Text, _>(sql)
        .get_result::<Count>(conn)
        .await
        .map(|row| row.n)
        .unwrap_or(-1)
}

/// A hand-written statement is prepared once per connection and then reused (the claim
/// and the order placement are such statements); `sql_query` is planned on every call. A
/// placeholder may be used again; one first used out of order is refused before sending.
#[tokio::test(flavor = "multi_thread")]
async fn hand_written_sql_is_prepared_once_per_connection() {
    #[derive(QueryableByName)]
    struct Sum {
        #[diesel(sql_type = Int4)]
        value: i32,
    }
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    const PREPARED: &str = "SELECT $1::int4 + $2::int4 * $1 AS value";
    for (a, b, expected) in [(1, 2, 3), (2, 5, 12), (3, 0, 3)] {
        let sum: Sum = orderflow_queue::prepared_sql(PREPARED)
            .bind::<Int4, _>(a)
            .bind::<Int4, _>(b)
            .get_result(&mut conn)
            .await
            .expect("the query runs");
        assert_eq!(sum.value, expected, "{a} + {b} * {a}");
    }
    assert_eq!(prepared_copies(&mut conn, PREPARED).await, 1);

    const UNPREPARED: &str = "SELECT $1::int4 AS value";
    for value in [1, 2] {
        let sum: Sum = diesel::sql_query(UNPREPARED)
            .bind::<Int4, _>(value)
            .get_result(&mut conn)
            .await
            .expect("the query runs");
        assert_eq!(sum.value, value);
    }
    assert_eq!(prepared_copies(&mut conn, UNPREPARED).await, 0);

    let out_of_order = orderflow_queue::prepared_sql("SELECT $2::int4 + $1::int4 AS value")
        .bind::<Int4, _>(1)
        .bind::<Int4, _>(2)
        .get_result::<Sum>(&mut conn)
        .await;
    assert!(
        matches!(
            out_of_order,
            Err(diesel::result::Error::QueryBuilderError(_))
        ),
        "placeholders out of order must be refused"
    );
    let missing_bind = orderflow_queue::prepared_sql("SELECT $1::int4 + $2::int4 AS value")
        .bind::<Int4, _>(1)
        .get_result::<Sum>(&mut conn)
        .await;
    assert!(matches!(
        missing_bind,
        Err(diesel::result::Error::QueryBuilderError(_))
    ));
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Plans {
    #[diesel(sql_type = BigInt)]
    generic_plans: i64,
    #[diesel(sql_type = BigInt)]
    custom_plans: i64,
}

/// How the session planned the claim statement, as `pg_prepared_statements` counts it.
async fn claim_plans(conn: &mut AsyncPgConnection) -> Plans {
    diesel::sql_query(
        "SELECT coalesce(sum(generic_plans), 0)::int8 AS generic_plans, \
                coalesce(sum(custom_plans), 0)::int8 AS custom_plans \
         FROM pg_prepared_statements WHERE statement LIKE 'WITH due AS%SKIP LOCKED%'",
    )
    .get_result(conn)
    .await
    .expect("the query runs")
}

/// The services' pooled sessions plan a prepared statement once and reuse that plan; a
/// session left to PostgreSQL's default makes a plan per execution for (at least) the
/// first five.
#[tokio::test(flavor = "multi_thread")]
async fn pooled_sessions_reuse_one_plan_per_prepared_statement() {
    let db = TestDb::new().await;
    let config = kind("test.generic_plan", 3);
    let pool = db.pool(1);
    let mut pooled = pool.get().await.expect("a pooled connection");
    let mut plain = db.connect().await;
    for conn in [&mut *pooled, &mut plain] {
        for _ in 0..3 {
            enqueue_one(conn, &config).await;
            let claimed = claim_batch(conn, config.kind, 1, Duration::from_secs(30))
                .await
                .expect("claim batch");
            assert_eq!(claimed.len(), 1);
        }
    }
    assert_eq!(
        claim_plans(&mut pooled).await,
        Plans {
            generic_plans: 3,
            custom_plans: 0
        }
    );
    assert_eq!(
        claim_plans(&mut plain).await,
        Plans {
            generic_plans: 0,
            custom_plans: 3
        }
    );
}

/// The pool hands out the connection returned last, so that a service keeps reusing its
/// warm sessions rather than rotating its statements over every connection it opened.
#[tokio::test]
async fn the_pool_hands_out_the_connection_returned_last() {
    let db = TestDb::new().await;
    let pool = db.pool(3);
    let mut first = pool.get().await.expect("a pooled connection");
    let mut second = pool.get().await.expect("a pooled connection");
    let first_pid = backend_pid(&mut first).await;
    let second_pid = backend_pid(&mut second).await;
    assert_ne!(first_pid, second_pid);
    drop(first);
    drop(second);
    for _ in 0..3 {
        let mut conn = pool.get().await.expect("a pooled connection");
        assert_eq!(backend_pid(&mut conn).await, second_pid);
    }
}

#[derive(QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = Int4)]
    pid: i32,
}

async fn backend_pid(conn: &mut AsyncPgConnection) -> i32 {
    diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<BackendPid>(conn)
        .await
        .expect("the query runs")
        .pid
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

/// The generic plan the session makes for a completion-shaped statement (tasks by id and
/// claim token), while `tasks` holds a single row.
async fn completion_plan(conn: &mut AsyncPgConnection) -> String {
    diesel::sql_query(
        "PREPARE completion_probe(int8[], uuid[]) AS \
         UPDATE tasks SET updated_at = now() WHERE id = ANY($1) AND claim_token = ANY($2)",
    )
    .execute(conn)
    .await
    .expect("the statement runs");
    explain(conn, "EXECUTE completion_probe('{1}', '{}')").await
}

/// The plan `EXPLAIN` (without running it) gives for `statement`, as text.
async fn explain(conn: &mut AsyncPgConnection, statement: &str) -> String {
    let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN {statement}"))
        .load(conn)
        .await
        .expect("the query runs");
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A plan is made once and kept until the next `ANALYZE`: made while the queue table is
/// small, it would read the whole table for every completion as the table grows. The
/// pooled sessions look tasks up by their key however small the table was when they
/// planned; a session that only forces generic plans scans.
#[tokio::test(flavor = "multi_thread")]
async fn pooled_sessions_find_tasks_by_key_even_in_plans_made_on_a_small_table() {
    let db = TestDb::new().await;
    let pool = db.pool(1);
    let mut pooled = pool.get().await.expect("a pooled connection");
    enqueue_one(&mut pooled, &kind("test.plan_on_small_table", 3)).await;
    let pooled_plan = completion_plan(&mut pooled).await;
    assert!(
        pooled_plan.contains("tasks_pkey") && !pooled_plan.contains("Seq Scan"),
        "{pooled_plan}"
    );

    let mut plain = db.connect().await;
    diesel::sql_query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut plain)
        .await
        .expect("the statement runs");
    let plain_plan = completion_plan(&mut plain).await;
    assert!(plain_plan.contains("Seq Scan on tasks"), "{plain_plan}");
}

#[derive(QueryableByName)]
struct JitAvailable {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    available: bool,
}

/// With sequential scans off, a scan that no index can replace is costed far past
/// `jit_above_cost`. The pooled sessions never compile it (JIT would cost about 100 ms on
/// every execution of a statement that takes well under one); a session with only
/// sequential scans off would, where the server has JIT.
#[tokio::test(flavor = "multi_thread")]
async fn pooled_sessions_do_not_jit_compile_a_scan_they_cannot_avoid() {
    const UNAVOIDABLE_SCAN: &str = "SELECT count(*) FROM tasks WHERE payload ? 'marker'";
    let db = TestDb::new().await;
    let pool = db.pool(1);
    let mut pooled = pool.get().await.expect("a pooled connection");
    let pooled_plan = explain(&mut pooled, UNAVOIDABLE_SCAN).await;
    assert!(
        pooled_plan.contains("Seq Scan on tasks") && !pooled_plan.contains("JIT"),
        "{pooled_plan}"
    );

    let mut plain = db.connect().await;
    let jit: JitAvailable = diesel::sql_query("SELECT pg_jit_available() AS available")
        .get_result(&mut plain)
        .await
        .expect("the query runs");
    if jit.available {
        diesel::sql_query("SET enable_seqscan = off")
            .execute(&mut plain)
            .await
            .expect("the statement runs");
        let plain_plan = explain(&mut plain, UNAVOIDABLE_SCAN).await;
        assert!(plain_plan.contains("JIT"), "{plain_plan}");
    }
}

/// Records which claims' effects it wrote.
#[derive(Default)]
struct RecordsClaims(std::sync::Mutex<Vec<(i64, uuid::Uuid)>>);

impl TaskHandler for RecordsClaims {
    type Args = serde_json::Value;
    type Outcome = ();
    type Recorded = ();

    performs_nothing!();

    async fn record(
        &self,
        _conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        _outcome: &(),
    ) -> Result<(), TaskError> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((task.id, task.claim_token));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_one_group_a_stale_attempt_of_a_task_records_nothing_beside_its_fresh_one() {
    let db = TestDb::new().await;
    let pool = db.pool(2);
    let mut conn = db.connect().await;
    let config = kind("test.group_fence", 3);
    let id = enqueue_one(&mut conn, &config).await;

    // The first claim runs out and the task is claimed again: two attempts of one task,
    // both finishing in the same worker, end up in one group.
    let stale = claim_batch(&mut conn, config.kind, 1, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(
        rescue_expired(&mut conn, config.kind, 10).await.ok(),
        Some(1)
    );
    let fresh = claim_batch(&mut conn, config.kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!((stale.len(), fresh.len()), (1, 1));
    assert_eq!(stale[0].id, fresh[0].id);

    let handler = RecordsClaims::default();
    let results = orderflow_queue::record_as_group(
        &pool,
        &handler,
        vec![(stale[0].clone(), ()), (fresh[0].clone(), ())],
    )
    .await
    .expect("record as group");
    assert!(
        matches!(results[0], Err(TaskError::ClaimLost)),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    let recorded = handler
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    assert_eq!(
        recorded,
        [(id, fresh[0].claim_token)],
        "only the live claim's effects are written"
    );
    assert_eq!(task_row(&mut conn, id).await.state, "completed");
}
