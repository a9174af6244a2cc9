//! The pipeline at a glance, for `/ops`: orders per status, each task kind's backlog, and
//! orders accepted and finished per second over the last minutes. Built at most once a
//! second per API process, whoever asks and however often, and never by counting the
//! whole `orders` table again:
//!
//! - Orders still in progress (`pending`, `paid`, `reserved`) are few: counted each time
//!   from the status index.
//! - Finished orders are counted once, when the process first builds the view; from then
//!   on the new timeline entries are added (`fulfilled` and `cancelled` events, read by id
//!   from the last one counted).
//! - The per-second series comes from the same timeline entries (`placed`, `fulfilled`,
//!   `cancelled`); at the first build, the orders accepted in the last five minutes are
//!   read from the orders' creation-time index.
//!
//! An entry becomes visible when its transaction commits, which can be after entries with
//! higher ids: so entries are counted for good only up to the id sequence's value of
//! [`SETTLE`] ago, and those above it are read again on every build. An entry whose
//! transaction stayed open longer than that would be missed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Bool, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow::status::{EventType, OrderStatus};
use serde::Serialize;

/// The view is built at most this often.
const REFRESH: Duration = Duration::from_secs(1);
/// Entries are counted for good up to the id the sequence had this long ago.
const SETTLE: Duration = Duration::from_secs(5);
/// How far back the per-second series goes.
const SERIES_SECONDS: i64 = 300;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineStats {
    /// Unix time of the build, in milliseconds.
    pub built_at_ms: i64,
    /// What building it took in the database, in milliseconds.
    pub build_ms: f64,
    pub orders: OrderCounts,
    pub kinds: Vec<KindBacklog>,
    /// One entry per second, oldest first, up to five minutes.
    pub per_second: Vec<SecondCounts>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct OrderCounts {
    pub pending: i64,
    pub paid: i64,
    pub reserved: i64,
    pub fulfilled: i64,
    pub cancelled: i64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct KindBacklog {
    pub kind: String,
    pub waiting: i64,
    pub running: i64,
    pub dead: i64,
    /// How long the oldest due task has waited, in seconds.
    pub oldest_waiting_seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct SecondCounts {
    /// Unix time of the second's start.
    pub at: i64,
    pub accepted: i64,
    pub fulfilled: i64,
    pub cancelled: i64,
}

/// Finished orders and the per-second series, as far as they are settled.
struct Tally {
    /// Timeline entries up to this id are in `finished` and `seconds`.
    settled_id: i64,
    fulfilled: i64,
    cancelled: i64,
    seconds: BTreeMap<i64, SecondCounts>,
    /// The id sequence's value at each build, oldest first, back to [`SETTLE`] ago.
    marks: std::collections::VecDeque<(Instant, i64)>,
}

#[derive(Default)]
struct State {
    built: Option<(Instant, PipelineStats)>,
    tally: Option<Tally>,
}

/// Shared by every request of a process; one build at a time.
#[derive(Default)]
pub struct OpsStats {
    state: tokio::sync::Mutex<State>,
}

#[derive(QueryableByName)]
struct Start {
    #[diesel(sql_type = BigInt)]
    last_id: i64,
    #[diesel(sql_type = BigInt)]
    fulfilled: i64,
    #[diesel(sql_type = BigInt)]
    cancelled: i64,
}

#[derive(QueryableByName)]
struct EntryCount {
    #[diesel(sql_type = BigInt)]
    second: i64,
    #[diesel(sql_type = Text)]
    event_type: EventType,
    #[diesel(sql_type = BigInt)]
    entries: i64,
    #[diesel(sql_type = Bool)]
    settled: bool,
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: OrderStatus,
    #[diesel(sql_type = BigInt)]
    orders: i64,
}

impl OpsStats {
    /// The current view: the last build if it is younger than a second, else a new one.
    pub async fn current(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> diesel::QueryResult<PipelineStats> {
        let mut state = self.state.lock().await;
        if let Some((at, stats)) = &state.built {
            if at.elapsed() < REFRESH {
                return Ok(stats.clone());
            }
        }
        let started = Instant::now();
        let tally = match state.tally.take() {
            Some(tally) => tally,
            None => start_tally(conn).await?,
        };
        let tally = state.tally.insert(tally);
        let fresh = read_entries(conn, tally).await?;
        let in_progress: Vec<StatusCount> = diesel::sql_query(
            "SELECT status, count(*) AS orders FROM orders \
             WHERE status IN ('pending', 'paid', 'reserved') GROUP BY status",
        )
        .load(conn)
        .await?;
        let backlog = orderflow_queue::admin::backlog(conn).await?;
        let stats = PipelineStats {
            built_at_ms: chrono::Utc::now().timestamp_millis(),
            build_ms: started.elapsed().as_secs_f64() * 1000.0,
            orders: order_counts(tally, &fresh, &in_progress),
            kinds: kind_backlogs(backlog),
            per_second: series(tally, &fresh),
        };
        state.built = Some((Instant::now(), stats.clone()));
        Ok(stats)
    }
}

#[derive(QueryableByName)]
struct AcceptedSecond {
    #[diesel(sql_type = BigInt)]
    second: i64,
    #[diesel(sql_type = BigInt)]
    orders: i64,
}

/// Finished orders counted once, the newest timeline id, and the orders accepted per
/// second over the last five minutes (from the creation-time index), all in one snapshot
/// so that nothing is counted twice later. It counts the whole table, so sequential scans
/// are allowed for its transaction (the pooled sessions turn them off). The series of
/// finished orders starts empty: the timeline has no index by time.
async fn start_tally(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Tally> {
    let (start, accepted) = conn
        .build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |conn| {
            diesel::sql_query("SET LOCAL enable_seqscan = on")
                .execute(conn)
                .await?;
            let start: Start = diesel::sql_query(
                "SELECT coalesce((SELECT max(id) FROM order_events), 0) AS last_id, \
                        count(*) FILTER (WHERE status = 'fulfilled') AS fulfilled, \
                        count(*) FILTER (WHERE status = 'cancelled') AS cancelled \
                 FROM orders",
            )
            .get_result(conn)
            .await?;
            let accepted: Vec<AcceptedSecond> = diesel::sql_query(
                "SELECT floor(extract(epoch FROM created_at))::int8 AS second, count(*) AS orders \
                 FROM orders WHERE created_at > now() - make_interval(secs => $1) GROUP BY 1",
            )
            .bind::<diesel::sql_types::Double, _>(SERIES_SECONDS as f64)
            .load(conn)
            .await?;
            Ok::<_, diesel::result::Error>((start, accepted))
        })
        .await?;
    let seconds = accepted
        .into_iter()
        .map(|row| {
            let counts = SecondCounts {
                at: row.second,
                accepted: row.orders,
                ..SecondCounts::default()
            };
            (row.second, counts)
        })
        .collect();
    Ok(Tally {
        settled_id: start.last_id,
        fulfilled: start.fulfilled,
        cancelled: start.cancelled,
        seconds,
        marks: std::collections::VecDeque::new(),
    })
}

#[derive(QueryableByName)]
struct SequenceMark {
    #[diesel(sql_type = BigInt)]
    last_value: i64,
}

/// Reads the timeline entries after the settled id, by second and type: those up to the
/// id the sequence had [`SETTLE`] ago go into the tally for good; the rest are returned.
async fn read_entries(
    conn: &mut AsyncPgConnection,
    tally: &mut Tally,
) -> diesel::QueryResult<Vec<EntryCount>> {
    let mark: SequenceMark = diesel::sql_query("SELECT last_value FROM order_events_id_seq")
        .get_result(conn)
        .await?;
    let now = Instant::now();
    tally.marks.push_back((now, mark.last_value));
    let mut line = tally.settled_id;
    while let Some(&(at, value)) = tally.marks.front() {
        if now.duration_since(at) < SETTLE {
            break;
        }
        line = line.max(value);
        tally.marks.pop_front();
    }
    let entries: Vec<EntryCount> = diesel::sql_query(
        "SELECT floor(extract(epoch FROM at))::int8 AS second, type AS event_type, \
                count(*) AS entries, id <= $2 AS settled \
         FROM order_events \
         WHERE id > $1 AND type IN ('placed', 'fulfilled', 'cancelled') \
         GROUP BY 1, 2, 4",
    )
    .bind::<BigInt, _>(tally.settled_id)
    .bind::<BigInt, _>(line)
    .load(conn)
    .await?;
    tally.settled_id = line;
    let (settled, fresh): (Vec<_>, Vec<_>) = entries.into_iter().partition(|entry| entry.settled);
    for entry in &settled {
        match entry.event_type {
            EventType::Fulfilled => tally.fulfilled += entry.entries,
            EventType::Cancelled => tally.cancelled += entry.entries,
            _ => {}
        }
        add(tally.seconds.entry(entry.second).or_default(), entry);
    }
    let oldest_kept = chrono::Utc::now().timestamp() - SERIES_SECONDS;
    tally.seconds = tally.seconds.split_off(&oldest_kept);
    Ok(fresh)
}

fn add(second: &mut SecondCounts, entry: &EntryCount) {
    second.at = entry.second;
    match entry.event_type {
        EventType::Placed => second.accepted += entry.entries,
        EventType::Fulfilled => second.fulfilled += entry.entries,
        EventType::Cancelled => second.cancelled += entry.entries,
        _ => {}
    }
}

fn order_counts(tally: &Tally, fresh: &[EntryCount], in_progress: &[StatusCount]) -> OrderCounts {
    let fresh_of = |kind: EventType| -> i64 {
        fresh
            .iter()
            .filter(|entry| entry.event_type == kind)
            .map(|entry| entry.entries)
            .sum()
    };
    let mut counts = OrderCounts {
        fulfilled: tally.fulfilled + fresh_of(EventType::Fulfilled),
        cancelled: tally.cancelled + fresh_of(EventType::Cancelled),
        ..OrderCounts::default()
    };
    for row in in_progress {
        match row.status {
            OrderStatus::Pending => counts.pending = row.orders,
            OrderStatus::Paid => counts.paid = row.orders,
            OrderStatus::Reserved => counts.reserved = row.orders,
            OrderStatus::Fulfilled | OrderStatus::Cancelled => {}
        }
    }
    counts
}

/// Every kind the pipeline has, with zeros where nothing waits, runs or died.
fn kind_backlogs(rows: Vec<orderflow_queue::admin::KindStateCount>) -> Vec<KindBacklog> {
    let mut kinds: BTreeMap<String, KindBacklog> = orderflow::tasks::TaskKind::ALL
        .iter()
        .map(|kind| {
            let kind = kind.as_str().to_string();
            (
                kind.clone(),
                KindBacklog {
                    kind,
                    ..KindBacklog::default()
                },
            )
        })
        .collect();
    for row in rows {
        let kind = kinds
            .entry(row.kind.clone())
            .or_insert_with(|| KindBacklog {
                kind: row.kind.clone(),
                ..KindBacklog::default()
            });
        match row.state.as_str() {
            "waiting" => {
                kind.waiting = row.count;
                kind.oldest_waiting_seconds = row.oldest_age_seconds.unwrap_or(0.0);
            }
            "running" => kind.running = row.count,
            "dead" => kind.dead = row.count,
            _ => {}
        }
    }
    kinds.into_values().collect()
}

/// The settled seconds with the fresh entries added (the current second, still filling, last),
/// every second of the window present
/// (zeros where nothing happened) from the first one seen.
fn series(tally: &Tally, fresh: &[EntryCount]) -> Vec<SecondCounts> {
    let mut seconds = tally.seconds.clone();
    for entry in fresh {
        add(seconds.entry(entry.second).or_default(), entry);
    }
    let now = chrono::Utc::now().timestamp();
    let Some(first) = seconds.keys().next().copied() else {
        return Vec::new();
    };
    (first.max(now - SERIES_SECONDS)..=now)
        .map(|at| {
            seconds.get(&at).copied().map_or(
                SecondCounts {
                    at,
                    ..SecondCounts::default()
                },
                |counts| SecondCounts { at, ..counts },
            )
        })
        .collect()
}
