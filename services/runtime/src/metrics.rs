//! Prometheus metrics. Libraries (the queue, the API's middleware) record through the
//! `metrics` facade; each service installs this recorder once and renders it at `/metrics`.
//! Gauges that describe the database (queue backlog, pool usage) are refreshed when scraped,
//! the backlog at most once a second ([`BacklogGauges`]).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `orderflow_http_requests_total` | counter | `method`, `route`, `status` |
//! | `orderflow_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `orderflow_placement_transactions_total`, `orderflow_placement_orders_total` | counter | |
//! | `orderflow_queue_tasks_claimed_total` (also `_completed`, `_retried`, `_dead`) | counter | `kind` |
//! | `orderflow_queue_task_duration_seconds` | histogram | `kind`, `outcome` |
//! | `orderflow_queue_attempt_phase_seconds` | histogram | `kind`, `phase` (waiting, performing, gathering, recording) |
//! | `orderflow_queue_tasks` | gauge | `kind`, `state` (waiting, running, dead) |
//! | `orderflow_queue_oldest_waiting_seconds` | gauge | `kind` |
//! | `orderflow_order_time_to_terminal_seconds` | histogram | `outcome` (fulfilled, cancelled) |
//! | `orderflow_db_pool_connections` | gauge | `state` (idle, in_use) |
//! | `orderflow_notifications_undeliverable_total` | counter | |

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::db::Pool;

/// Latency buckets (seconds), from a fast claim to a slow gateway.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same handle, so the tests
/// can start several services in one process), with its upkeep.
pub fn install() -> Result<PrometheusHandle, String> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map_err(|error| error.to_string())?
                .install_recorder()
                .map_err(|error| error.to_string())?;
            keep_up(handle.clone());
            Ok(handle)
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The recorder keeps every histogram sample until it is folded into its buckets, which a
/// scrape does, or this upkeep: without it, a process nobody scrapes grows by every sample
/// it records, without bound.
/// A thread of its own, so that it runs whatever the process's runtime is doing.
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "metrics upkeep not started: histograms grow until scraped");
    }
}

/// The queue backlog gauges' last reading: they are read from the database at most once
/// per interval, however often `/metrics` is scraped, so scrapers cannot turn the endpoint
/// into load on the database.
pub struct BacklogGauges {
    every: Duration,
    /// When the gauges were last read; held across the read, so that concurrent scrapes
    /// wait for one reading instead of each making their own.
    last_read: tokio::sync::Mutex<Option<Instant>>,
}

impl BacklogGauges {
    pub fn every(every: Duration) -> Self {
        Self {
            every,
            last_read: tokio::sync::Mutex::new(None),
        }
    }

    /// Reads the backlog for `kinds` (all kinds when `None`) unless it was read within the
    /// interval. A failed read keeps the last values and is logged.
    async fn refresh(&self, pool: &Pool, kinds: Option<&[&str]>) {
        let mut last_read = self.last_read.lock().await;
        if last_read.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        *last_read = Some(Instant::now());
        if let Err(error) = refresh_backlog(pool, kinds).await {
            tracing::warn!(%error, "queue backlog for /metrics unavailable");
        }
    }
}

/// How often the backlog gauges are read at most, by default.
pub const BACKLOG_READ_EVERY: Duration = Duration::from_secs(1);

/// The text exposition, after refreshing the pool gauges and, for `kinds`, the queue
/// backlog (at most once per the gauges' interval).
pub async fn render(
    handle: &PrometheusHandle,
    pool: &Pool,
    kinds: Option<&[&str]>,
    backlog: &BacklogGauges,
) -> String {
    let state = pool.state();
    let in_use = state.connections.saturating_sub(state.idle_connections);
    metrics::gauge!("orderflow_db_pool_connections", "state" => "idle")
        .set(f64::from(state.idle_connections));
    metrics::gauge!("orderflow_db_pool_connections", "state" => "in_use").set(f64::from(in_use));
    backlog.refresh(pool, kinds).await;
    handle.render()
}

async fn refresh_backlog(pool: &Pool, kinds: Option<&[&str]>) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let backlog = orderflow_queue::admin::backlog(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let all_kinds: Vec<&str> = match kinds {
        Some(kinds) => kinds.to_vec(),
        None => orderflow::tasks::TaskKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect(),
    };
    // Every series is set, zeros included, so a drained queue reads 0 rather than stale.
    for kind in all_kinds {
        for state in ["waiting", "running", "dead"] {
            let count = backlog
                .iter()
                .find(|row| row.kind == kind && row.state == state)
                .map_or(0, |row| row.count);
            metrics::gauge!("orderflow_queue_tasks", "kind" => kind.to_string(), "state" => state)
                .set(count as f64);
        }
        let oldest = backlog
            .iter()
            .find(|row| row.kind == kind && row.state == "waiting")
            .and_then(|row| row.oldest_age_seconds)
            .unwrap_or(0.0);
        metrics::gauge!("orderflow_queue_oldest_waiting_seconds", "kind" => kind.to_string())
            .set(oldest);
    }
    Ok(())
}
