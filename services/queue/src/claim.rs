use std::time::Duration;

use diesel::sql_types::{Array, Bool, Double, Int8, Text, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::task::ClaimedRow;
use crate::{prepared_sql, ClaimedTask, DeadTask, NewTask, TaskError};

/// The NOTIFY channel of a task kind.
pub fn notify_channel(kind: &str) -> String {
    format!("tasks.{kind}")
}

/// Enqueues a task on the caller's connection. Inside a transaction, the task (and its
/// NOTIFY, sent by the table's insert trigger) exist only if the transaction commits.
/// PostgreSQL folds identical notifications of one transaction into one, so enqueueing
/// many tasks of a kind costs one wake-up. The task keeps the current correlation id
/// ([`crate::with_correlation_id`]). Returns the new task's id, or `None` when the task has
/// a unique key that an earlier task already holds (nothing is written then).
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    task: &NewTask,
) -> diesel::QueryResult<Option<i64>> {
    use crate::schema::tasks;
    use diesel::upsert::DecoratableTarget;
    use diesel::{ExpressionMethods, OptionalExtension as _};
    // Built with the query builder, so the statement is prepared once per connection.
    diesel::insert_into(tasks::table)
        .values((
            tasks::kind.eq(task.kind),
            tasks::payload.eq(&task.payload),
            tasks::max_attempts.eq(task.max_attempts),
            tasks::unique_key.eq(task.unique_key.as_deref()),
            tasks::correlation_id.eq(task.stored_correlation_id()),
        ))
        .on_conflict(tasks::unique_key)
        .filter_target(tasks::unique_key.is_not_null())
        .do_nothing()
        .returning(tasks::id)
        .get_result(conn)
        .await
        .optional()
}

/// Enqueues several tasks with one statement, on the caller's connection (see [`enqueue`]);
/// a task whose unique key is taken is skipped. Returns how many were enqueued.
///
/// The tasks travel as one array per column, so the statement's text is the same for
/// any number of tasks and stays prepared; a multi-row `VALUES` would be a new statement,
/// parsed and planned on every call, for each group size.
pub async fn enqueue_all(
    conn: &mut AsyncPgConnection,
    new_tasks: &[NewTask],
) -> diesel::QueryResult<usize> {
    use diesel::sql_types::{Int4, Jsonb, Nullable};
    if new_tasks.is_empty() {
        return Ok(0);
    }
    let kinds: Vec<&str> = new_tasks.iter().map(|task| task.kind).collect();
    let payloads: Vec<&serde_json::Value> = new_tasks.iter().map(|task| &task.payload).collect();
    let max_attempts: Vec<i32> = new_tasks.iter().map(|task| task.max_attempts).collect();
    let unique_keys: Vec<Option<&str>> = new_tasks
        .iter()
        .map(|task| task.unique_key.as_deref())
        .collect();
    let correlation_ids: Vec<Option<String>> = new_tasks
        .iter()
        .map(NewTask::stored_correlation_id)
        .collect();
    prepared_sql(
        "INSERT INTO tasks (kind, payload, max_attempts, unique_key, correlation_id) \
         SELECT * FROM unnest($1::text[], $2::jsonb[], $3::int4[], $4::text[], $5::text[]) \
         ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING",
    )
    .bind::<Array<Text>, _>(kinds)
    .bind::<Array<Jsonb>, _>(payloads)
    .bind::<Array<Int4>, _>(max_attempts)
    .bind::<Array<Nullable<Text>>, _>(unique_keys)
    .bind::<Array<Nullable<Text>>, _>(correlation_ids)
    .execute(conn)
    .await
}

/// Claims up to `limit` waiting tasks of one kind that are due, oldest first. Each gets a
/// fresh claim token and a lease of `lease`. The statement commits on its own: no
/// transaction is held while the tasks run. Tasks whose lease expired (their worker died)
/// are not claimed here: [`rescue_expired`] makes them waiting again, on the workers' poll
/// ticks, so that the claim on every wake-up reads one index, not two.
///
/// The claim commits asynchronously (`synchronous_commit = off` for its transaction
/// only): it returns without waiting for the WAL flush, which is most of a small
/// transaction's cost. Losing a claim in a server crash is harmless: the task is back
/// to what it was before, claimable again, and the attempt that held the lost claim
/// cannot record, because its completion is fenced by the claim token.
pub async fn claim_batch(
    conn: &mut AsyncPgConnection,
    kind: &str,
    limit: i64,
    lease: Duration,
) -> diesel::QueryResult<Vec<ClaimedTask>> {
    let sent = std::time::Instant::now();
    let rows: Vec<ClaimedRow> = prepared_sql(include_str!("sql/claim_batch.sql"))
        .bind::<Text, _>(kind)
        .bind::<Int8, _>(limit)
        .bind::<Double, _>(lease.as_secs_f64())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| row.into_task(sent, lease))
        .collect())
}

/// Makes up to `limit` running tasks of one kind whose lease expired (their worker died
/// or hung) with attempts left waiting again, and returns how many. They keep their due
/// time, so the next claim takes them first: they have waited longest. Their old claim
/// is void (the token is cleared), so the attempt that held it cannot record. The lost
/// attempt stays counted and its expiry is kept with the task's errors. Those without
/// attempts left are `bury_expired`'s.
///
/// Workers run it on their poll ticks: an expired lease is rare, and a scan for one in
/// every claim would read the lease index's dead entries each time.
pub async fn rescue_expired(
    conn: &mut AsyncPgConnection,
    kind: &str,
    limit: i64,
) -> diesel::QueryResult<usize> {
    prepared_sql(include_str!("sql/rescue_expired.sql"))
        .bind::<Text, _>(kind)
        .bind::<Int8, _>(limit)
        .execute(conn)
        .await
}

/// Whether the transaction a completion runs in waits, at its commit, for the WAL flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitWait {
    /// The caller's setting, durable by default: a caller's transaction is left as it is.
    Flush,
    /// `synchronous_commit = off` for this transaction: the worker's own recordings (see
    /// `record.rs` for why losing one in a server crash is harmless).
    NoFlush,
}

/// Completes the claimed tasks whose claims are still ours, in the caller's transaction,
/// and returns those claims, (task id, claim token); the others (lease expired,
/// re-claimed) are left alone. A claim is its pair: a stale attempt and a fresh one of the
/// same task may be in one group, and only the fresh one's token completes the task. The rows
/// stay locked until the transaction ends, so a concurrent re-claim waits for it. The lease
/// is read at `clock_timestamp()`, not the transaction's start: a lease that ran out while
/// the transaction was open must not be honoured. `commit` says whether the transaction's
/// commit will wait for the WAL flush ([`CommitWait`]).
pub(crate) async fn complete_claims(
    conn: &mut AsyncPgConnection,
    claims: &[(i64, uuid::Uuid)],
    commit: CommitWait,
) -> diesel::QueryResult<Vec<(i64, uuid::Uuid)>> {
    #[derive(QueryableByName)]
    struct Completed {
        #[diesel(sql_type = Int8)]
        id: i64,
        #[diesel(sql_type = SqlUuid)]
        token: uuid::Uuid,
    }
    let (ids, tokens): (Vec<i64>, Vec<uuid::Uuid>) = claims.iter().copied().unzip();
    // Only a running task has a claim token (the table's CHECK), so the statement does not
    // say `state = 'running'`: said, it let the generic plan read the running tasks'
    // partial index, which keeps an entry for every claim until vacuum, instead of the
    // primary key. Hand-written, so that it stays prepared (diesel never keeps a
    // query-builder `UPDATE` prepared).
    let completed: Vec<Completed> = prepared_sql(include_str!("sql/complete_claims.sql"))
        .bind::<Bool, _>(commit == CommitWait::Flush)
        .bind::<Array<Int8>, _>(ids)
        .bind::<Array<SqlUuid>, _>(tokens)
        .load(conn)
        .await?;
    Ok(completed
        .into_iter()
        .map(|row| (row.id, row.token))
        .collect())
}

/// What happened to a task whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// It waits for another attempt after the backoff.
    Retrying,
    /// Permanent error or attempts exhausted.
    Dead,
    /// Our claim was gone (re-claimed by another worker): nothing recorded.
    ClaimLost,
}

/// Records a failed attempt: back to `waiting` after `backoff`, or `dead` when the error is
/// permanent or this was the last attempt. Every attempt's error is kept on the task.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    task: &ClaimedTask,
    error: &TaskError,
    backoff: Duration,
) -> diesel::QueryResult<FailureOutcome> {
    #[derive(QueryableByName)]
    struct Outcome {
        #[diesel(sql_type = Text)]
        state: String,
    }
    let permanent = matches!(error, TaskError::Permanent(_));
    let outcome: Option<Outcome> = prepared_sql(include_str!("sql/fail.sql"))
        .bind::<Bool, _>(permanent)
        .bind::<Double, _>(backoff.as_secs_f64())
        .bind::<Text, _>(error.to_string())
        .bind::<Int8, _>(task.id)
        .bind::<SqlUuid, _>(task.claim_token)
        .get_result(conn)
        .await
        .optional()?;
    Ok(match outcome.map(|o| o.state) {
        None => FailureOutcome::ClaimLost,
        Some(state) if state == "dead" => FailureOutcome::Dead,
        Some(_) => FailureOutcome::Retrying,
    })
}

/// Moves tasks whose worker died during their last attempt (lease expired, no attempts
/// left) to `dead`, returning them so the owner's dead hook can run.
pub(crate) async fn bury_expired(
    conn: &mut AsyncPgConnection,
    kind: &str,
) -> diesel::QueryResult<Vec<DeadTask>> {
    prepared_sql(include_str!("sql/bury_expired.sql"))
        .bind::<Text, _>(kind)
        .load(conn)
        .await
}

/// Extends a running task's lease to `lease` from now, while the claim is still ours.
/// Returns false when the claim was lost (the lease had already expired, or the task was
/// re-claimed, completed or failed): the attempt should stop, it can no longer commit.
pub async fn extend_lease(
    conn: &mut AsyncPgConnection,
    task: &ClaimedTask,
    lease: Duration,
) -> diesel::QueryResult<bool> {
    let sent = std::time::Instant::now();
    let updated = prepared_sql(
        "UPDATE tasks SET lease_expires_at = clock_timestamp() + make_interval(secs => $1) \
         WHERE id = $2 AND claim_token = $3 AND state = 'running' \
           AND lease_expires_at > clock_timestamp()",
    )
    .bind::<Double, _>(lease.as_secs_f64())
    .bind::<Int8, _>(task.id)
    .bind::<SqlUuid, _>(task.claim_token)
    .execute(conn)
    .await?;
    if updated == 1 {
        task.lease.renew(sent + lease);
    }
    Ok(updated == 1)
}

/// Extends the leases of running tasks to `lease` from now, for each claim still held by
/// its token, in one statement; returns the claims renewed. A claim missing from the
/// answer was lost (its lease had expired, or the task was re-claimed, completed or
/// failed).
pub(crate) async fn extend_leases(
    conn: &mut AsyncPgConnection,
    claims: &[(i64, uuid::Uuid)],
    lease: Duration,
) -> diesel::QueryResult<Vec<LeaseRenewal>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Int8)]
        id: i64,
        #[diesel(sql_type = SqlUuid)]
        token: uuid::Uuid,
        #[diesel(sql_type = Bool)]
        renewed: bool,
    }
    let (ids, tokens): (Vec<i64>, Vec<uuid::Uuid>) = claims.iter().copied().unzip();
    // The rows are locked with SKIP LOCKED: a row that another transaction holds (its
    // attempt being recorded, mostly) is neither waited for nor renewed. Waiting would
    // hold up every other claim's renewal, and two statements that lock rows of the same
    // group in different orders deadlock (each a stall until PostgreSQL's deadlock
    // check). The final SELECT reads the rows as they were
    // before this statement, without a lock: a skipped claim that is still held is kept.
    let rows: Vec<Row> = prepared_sql(include_str!("sql/extend_leases.sql"))
        .bind::<Array<Int8>, _>(ids)
        .bind::<Array<SqlUuid>, _>(tokens)
        .bind::<Double, _>(lease.as_secs_f64())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| LeaseRenewal {
            claim: (row.id, row.token),
            renewed: row.renewed,
        })
        .collect())
}

/// A held claim after a renewal: renewed, or still held but skipped this time (its row
/// was locked). A claim missing from the answer is lost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseRenewal {
    pub claim: (i64, uuid::Uuid),
    pub renewed: bool,
}

/// Gives claimed tasks back at shutdown: due again at once, and the interrupted attempt is
/// not counted (it did not fail; this worker stopped). Only claims still held by their
/// token are released; other workers of the kind are woken. Returns how many were.
pub async fn release(
    conn: &mut AsyncPgConnection,
    kind: &str,
    claims: &[(i64, uuid::Uuid)],
) -> diesel::QueryResult<usize> {
    let (ids, tokens): (Vec<i64>, Vec<uuid::Uuid>) = claims.iter().copied().unzip();
    let released = prepared_sql(include_str!("sql/release.sql"))
        .bind::<Array<Int8>, _>(ids)
        .bind::<Array<SqlUuid>, _>(tokens)
        .execute(conn)
        .await?;
    if released > 0 {
        prepared_sql("SELECT pg_notify($1, '')")
            .bind::<Text, _>(notify_channel(kind))
            .execute(conn)
            .await?;
    }
    Ok(released)
}
