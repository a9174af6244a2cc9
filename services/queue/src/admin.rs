//! What operators need to see and do: the queue by kind and state, dead tasks, retries.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Int4, Int8, Jsonb, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::notify_channel;

#[derive(Debug, Clone, Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KindStateCount {
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Text)]
    pub state: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    /// Running tasks whose lease has expired: their worker died or hung and they wait to
    /// be claimed again (or buried, on their last attempt).
    #[diesel(sql_type = BigInt)]
    pub past_lease: i64,
    /// For `waiting`: how long the oldest due task has waited. For `running`: how far past
    /// its lease the most overdue task is (stuck), or 0.
    #[diesel(sql_type = Nullable<Double>)]
    pub oldest_age_seconds: Option<f64>,
}

/// Counts by kind and state. Completed tasks are counted too; the waiting age is measured
/// from when the task became due.
///
/// It reads the whole table, so it allows sequential scans for its own transaction: the
/// services' sessions turn them off, which is right for their lookups by key. Off, this
/// count still scans (no index covers every state) but without parallel workers: 75–96 ms
/// against 28–31 ms over 108,000 tasks.
pub async fn overview(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<KindStateCount>> {
    conn.transaction(async |conn| {
        diesel::sql_query("SET LOCAL enable_seqscan = on")
            .execute(conn)
            .await?;
        counts(conn, "").await
    })
    .await
}

/// Like [`overview`] without the completed tasks, which keeps it on the partial indexes:
/// cheap enough to run on every metrics scrape however many tasks were ever completed.
pub async fn backlog(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<KindStateCount>> {
    counts(conn, "WHERE state IN ('waiting', 'running', 'dead')").await
}

/// The longest that the oldest due task of any of `kinds` has waited (zero when none
/// waits): one row from the front of the waiting tasks' index per kind. How far behind
/// the slowest stage of a pipeline is.
pub async fn longest_due_wait(
    conn: &mut AsyncPgConnection,
    kinds: &[&str],
) -> diesel::QueryResult<std::time::Duration> {
    #[derive(QueryableByName)]
    struct Oldest {
        #[diesel(sql_type = diesel::sql_types::Double)]
        seconds: f64,
    }
    let oldest: Oldest = crate::prepared_sql(include_str!("sql/longest_due_wait.sql"))
        .bind::<diesel::sql_types::Array<Text>, _>(kinds)
        .get_result(conn)
        .await?;
    Ok(std::time::Duration::from_secs_f64(oldest.seconds.max(0.0)))
}

/// `filter` is one of the two fixed clauses above, never input.
async fn counts(
    conn: &mut AsyncPgConnection,
    filter: &'static str,
) -> diesel::QueryResult<Vec<KindStateCount>> {
    diesel::sql_query(format!(
        "SELECT kind, state, count(*) AS count, \
                count(*) FILTER (WHERE state = 'running' AND lease_expires_at < now()) AS past_lease, \
                CASE state \
                  WHEN 'waiting' THEN extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8 \
                  WHEN 'running' THEN greatest(0, extract(epoch FROM now() - min(lease_expires_at)))::float8 \
                END AS oldest_age_seconds \
         FROM tasks {filter} GROUP BY kind, state ORDER BY kind, state"
    ))
    .load(conn)
    .await
}

#[derive(Debug, Clone, Serialize, QueryableByName)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadTaskView {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = Jsonb)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    /// Every attempt's error: `[{attempt, at, error}]`.
    #[diesel(sql_type = Jsonb)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub errors: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub died_at: DateTime<Utc>,
}

/// Which dead tasks an operator means: of one kind, and/or whose last error contains a
/// text (case-insensitive). The default means every dead task.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    pub kind: Option<String>,
    pub error_contains: Option<String>,
}

impl DeadFilter {
    /// `$1` the kind or NULL, `$2` a LIKE pattern or NULL (the text with `%`, `_` and `\`
    /// escaped, so that they match themselves).
    const WHERE: &'static str = "state = 'dead' AND ($1::text IS NULL OR kind = $1) \
         AND ($2::text IS NULL OR coalesce(last_error, '') ILIKE $2)";

    fn pattern(&self) -> Option<String> {
        self.error_contains.as_deref().map(|text| {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        })
    }
}

/// Dead tasks that match `filter`, most recent first.
pub async fn dead_tasks(
    conn: &mut AsyncPgConnection,
    filter: &DeadFilter,
    limit: i64,
) -> diesel::QueryResult<Vec<DeadTaskView>> {
    diesel::sql_query(format!(
        "SELECT id, kind, payload, attempts, last_error, errors, created_at, updated_at AS died_at \
         FROM tasks WHERE {} ORDER BY updated_at DESC, id DESC LIMIT $3",
        DeadFilter::WHERE
    ))
    .bind::<Nullable<Text>, _>(filter.kind.as_deref())
    .bind::<Nullable<Text>, _>(filter.pattern())
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// How many dead tasks match `filter` (what "retry all" would retry).
pub async fn count_dead(
    conn: &mut AsyncPgConnection,
    filter: &DeadFilter,
) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let row: Count = diesel::sql_query(format!(
        "SELECT count(*) AS count FROM tasks WHERE {}",
        DeadFilter::WHERE
    ))
    .bind::<Nullable<Text>, _>(filter.kind.as_deref())
    .bind::<Nullable<Text>, _>(filter.pattern())
    .get_result(conn)
    .await?;
    Ok(row.count)
}

/// Gives a dead task a fresh set of attempts, due now. Returns false when the task does
/// not exist or is not dead.
pub async fn retry_dead(conn: &mut AsyncPgConnection, task_id: i64) -> diesel::QueryResult<bool> {
    conn.transaction(async |conn| {
        let retried: Vec<Retried> = diesel::sql_query(format!(
            "{RETRY} WHERE id = $1 AND state = 'dead' RETURNING kind"
        ))
        .bind::<Int8, _>(task_id)
        .load(conn)
        .await?;
        wake_workers(conn, &retried).await?;
        Ok(!retried.is_empty())
    })
    .await
}

/// Retries every dead task that matches `filter`, as [`retry_dead`] does one; returns how
/// many.
pub async fn retry_dead_matching(
    conn: &mut AsyncPgConnection,
    filter: &DeadFilter,
) -> diesel::QueryResult<usize> {
    conn.transaction(async |conn| {
        let retried: Vec<Retried> = diesel::sql_query(format!(
            "{RETRY} WHERE {} RETURNING kind",
            DeadFilter::WHERE
        ))
        .bind::<Nullable<Text>, _>(filter.kind.as_deref())
        .bind::<Nullable<Text>, _>(filter.pattern())
        .load(conn)
        .await?;
        wake_workers(conn, &retried).await?;
        Ok(retried.len())
    })
    .await
}

const RETRY: &str =
    "UPDATE tasks SET state = 'waiting', attempts = 0, run_at = now(), updated_at = now()";

#[derive(QueryableByName)]
struct Retried {
    #[diesel(sql_type = Text)]
    kind: String,
}

/// One wake-up per kind that has tasks due again, sent when the retry commits.
async fn wake_workers(
    conn: &mut AsyncPgConnection,
    retried: &[Retried],
) -> diesel::QueryResult<()> {
    let mut kinds: Vec<&str> = retried.iter().map(|task| task.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        diesel::sql_query("SELECT pg_notify($1, '')")
            .bind::<Text, _>(notify_channel(kind))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Deletes up to `limit` completed tasks of `kind` that completed more than `retention`
/// ago, oldest first, and returns how many. Waiting, running and dead tasks are never
/// deleted. A task's unique key is free again once its task is gone. Workers call it on
/// their poll ticks ([`crate::WorkerOptions::completed_retention`]); two workers of a kind
/// skip each other's rows rather than wait.
pub async fn prune_completed(
    conn: &mut AsyncPgConnection,
    kind: &str,
    retention: std::time::Duration,
    limit: i64,
) -> diesel::QueryResult<usize> {
    crate::prepared_sql(include_str!("sql/prune_completed.sql"))
        .bind::<Text, _>(kind)
        .bind::<Double, _>(retention.as_secs_f64())
        .bind::<BigInt, _>(limit)
        .execute(conn)
        .await
}
