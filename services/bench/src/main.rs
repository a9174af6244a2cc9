//! `queue-bench`: the queue alone, without HTTP or the order domain, so that it can be
//! compared with other PostgreSQL job queues on the same server. Uses DATABASE_URL (a
//! scratch database: it migrates it and deletes its own `bench.*` tasks first) and prints
//! one JSON object.
//!
//!   queue-bench drain N           enqueue N no-op tasks, then time draining them (tasks/s)
//!   queue-bench chain RATE SECS   start RATE 4-stage chains of no-op tasks per second for
//!                                 SECS; chains/s and end-to-end p50/p99 (ms)
//!   queue-bench pickup N          one task at a time into idle workers: enqueue-to-start
//!                                 latency p50/p99 (ms), NOTIFY-driven
//!
//! BENCH_CONCURRENCY (default 16) is each kind's worker concurrency.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{
    enqueue, ClaimedTask, KindConfig, Listener, NewTask, Pool, TaskError, TaskHandler, Worker,
    WorkerOptions,
};
use orderflow_runtime::config::DatabaseConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

type AnyError = Box<dyn std::error::Error>;

const STAGES: [&str; 4] = [
    "bench.stage1",
    "bench.stage2",
    "bench.stage3",
    "bench.stage4",
];

fn kind(name: &'static str) -> KindConfig {
    KindConfig {
        kind: name,
        max_attempts: 3,
        lease: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

/// Completes its task; in a chain, enqueues the next stage in the same transaction; the
/// last stage (or a lone task) records how long ago the payload's `started_us` was.
struct Step {
    next: Option<KindConfig>,
    latencies_ms: Arc<Mutex<Vec<f64>>>,
    record: bool,
    /// Tasks this step completed: the bench waits on it in memory, so that measuring
    /// costs the database nothing.
    done: Arc<AtomicI64>,
}

impl TaskHandler for Step {
    type Args = serde_json::Value;
    type Outcome = ();
    type Recorded = ();

    async fn perform(&self, _task: &ClaimedTask, args: serde_json::Value) -> Result<(), TaskError> {
        let started_us = args["started_us"].as_i64().unwrap_or_default();
        if self.record && started_us > 0 {
            let ms = (now_us() - started_us) as f64 / 1000.0;
            self.latencies_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ms);
        }
        Ok(())
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        _outcome: &(),
    ) -> Result<(), TaskError> {
        if let Some(next) = &self.next {
            enqueue(conn, &NewTask::new(next, task.payload.clone())).await?;
        }
        Ok(())
    }

    fn committed(&self, _task: &ClaimedTask, _outcome: &(), _recorded: &()) {
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

struct Bench {
    pool: Pool,
    url: String,
    concurrency: usize,
    /// The services' claim cooldown (`WORKER_CLAIM_COOLDOWN_MS`), so that the queue is
    /// measured as they run it.
    claim_cooldown: Duration,
}

impl Bench {
    /// Runs one worker per kind (with a shared listener) until the token is cancelled.
    fn start(
        &self,
        handlers: Vec<(KindConfig, Step)>,
    ) -> (CancellationToken, tokio::task::JoinSet<()>) {
        let shutdown = CancellationToken::new();
        let names: Vec<&str> = handlers.iter().map(|(kind, _)| kind.kind).collect();
        let listener = Listener::new(&names);
        let mut running = tokio::task::JoinSet::new();
        for (kind, handler) in handlers {
            let wakeup = listener.wakeup(kind.kind);
            let options = WorkerOptions {
                concurrency: self.concurrency,
                min_concurrency: self.concurrency,
                poll_interval: Duration::from_secs(1),
                shutdown_grace: Duration::from_secs(5),
                claim_cooldown: self.claim_cooldown,
                // The bench deletes its own tasks between runs.
                completed_retention: None,
                ..WorkerOptions::default()
            };
            let worker = Worker::new(self.pool.clone(), kind, Arc::new(handler), options, wakeup);
            running.spawn(worker.run(shutdown.clone()));
        }
        running.spawn(listener.run(self.url.clone(), shutdown.clone()));
        (shutdown, running)
    }

    fn step(
        &self,
        next: Option<KindConfig>,
        latencies: &Arc<Mutex<Vec<f64>>>,
        record: bool,
        done: &Arc<AtomicI64>,
    ) -> Step {
        Step {
            next,
            latencies_ms: Arc::clone(latencies),
            record,
            done: Arc::clone(done),
        }
    }

    async fn wait_done(done: &AtomicI64, n: i64, deadline: Duration) -> Result<(), AnyError> {
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < n {
            if start.elapsed() > deadline {
                return Err(format!("fewer than {n} tasks completed after {deadline:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    async fn drain(&self, n: i64) -> Result<serde_json::Value, AnyError> {
        let noop = kind("bench.noop");
        let mut conn = self.pool.get().await?;
        diesel::sql_query(
            "INSERT INTO tasks (kind, payload, max_attempts) \
             SELECT 'bench.noop', '{}'::jsonb, 3 FROM generate_series(1, $1)",
        )
        .bind::<BigInt, _>(n)
        .execute(&mut conn)
        .await?;
        drop(conn);
        let latencies = Arc::default();
        let done = Arc::new(AtomicI64::new(0));
        let started = Instant::now();
        let (stop, mut running) = self.start(vec![(
            noop.clone(),
            self.step(None, &latencies, false, &done),
        )]);
        Self::wait_done(&done, n, Duration::from_secs(600)).await?;
        let elapsed = started.elapsed().as_secs_f64();
        stop.cancel();
        while running.join_next().await.is_some() {}
        Ok(
            json!({ "mode": "drain", "tasks": n, "seconds": elapsed, "tasks_per_second": n as f64 / elapsed }),
        )
    }

    async fn chain(&self, rate: f64, seconds: f64) -> Result<serde_json::Value, AnyError> {
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
        let (last_done, other_done) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
        let handlers = (0..STAGES.len())
            .map(|i| {
                let next = STAGES.get(i + 1).map(|name| kind(name));
                (
                    kind(STAGES[i]),
                    self.step(
                        next,
                        &latencies,
                        i + 1 == STAGES.len(),
                        if i + 1 == STAGES.len() {
                            &last_done
                        } else {
                            &other_done
                        },
                    ),
                )
            })
            .collect();
        let (stop, mut running) = self.start(handlers);
        let first = kind(STAGES[0]);
        let mut conn = AsyncPgConnection::establish(&self.url).await?;
        let started = Instant::now();
        let mut chains = 0i64;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while started.elapsed().as_secs_f64() < seconds {
            tick.tick().await;
            enqueue(
                &mut conn,
                &NewTask::new(&first, json!({ "started_us": now_us() })),
            )
            .await?;
            chains += 1;
        }
        let offered = started.elapsed().as_secs_f64();
        Self::wait_done(&last_done, chains, Duration::from_secs(600)).await?;
        let elapsed = started.elapsed().as_secs_f64();
        stop.cancel();
        while running.join_next().await.is_some() {}
        let latencies =
            std::mem::take(&mut *latencies.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(json!({
            "mode": "chain", "stages": STAGES.len(), "offered_rate": rate, "chains": chains,
            "offered_seconds": offered, "seconds_to_finish_all": elapsed,
            "chains_per_second": chains as f64 / elapsed,
            "end_to_end_ms": percentiles(latencies),
        }))
    }

    async fn pickup(&self, n: usize) -> Result<serde_json::Value, AnyError> {
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
        let done = Arc::new(AtomicI64::new(0));
        let lone = kind("bench.pickup");
        let (stop, mut running) = self.start(vec![(
            lone.clone(),
            self.step(None, &latencies, true, &done),
        )]);
        let mut conn = AsyncPgConnection::establish(&self.url).await?;
        // Let the listener connect before the first task.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..n {
            // Idle gap: every pickup starts from waiting workers.
            tokio::time::sleep(Duration::from_millis(100)).await;
            enqueue(
                &mut conn,
                &NewTask::new(&lone, json!({ "started_us": now_us() })),
            )
            .await?;
            Self::wait_done(&done, i as i64 + 1, Duration::from_secs(30)).await?;
        }
        stop.cancel();
        while running.join_next().await.is_some() {}
        let latencies =
            std::mem::take(&mut *latencies.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(json!({ "mode": "pickup", "tasks": n, "pickup_ms": percentiles(latencies) }))
    }
}

fn percentiles(mut values: Vec<f64>) -> serde_json::Value {
    if values.is_empty() {
        return json!(null);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    json!({ "p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": at(1.0), "n": values.len() })
}

fn arg<T: std::str::FromStr>(args: &[String], n: usize, what: &str) -> Result<T, AnyError> {
    args.get(n).and_then(|raw| raw.parse().ok()).ok_or_else(|| {
        format!("expected {what} (see the usage at the top of services/bench/src/main.rs)").into()
    })
}

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let database = DatabaseConfig::from_env()?;
    let url = database.url.expose().to_string();
    orderflow_runtime::db::run_migrations(&url).await?;
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(16);
    let pool =
        orderflow_runtime::db::pool(&database, (STAGES.len() * (concurrency + 1) + 4) as u32);
    let bench = Bench {
        pool,
        url,
        concurrency,
        claim_cooldown: orderflow_runtime::config::WorkerConfig::from_env()?.claim_cooldown,
    };
    {
        // Every run starts from the same table: earlier runs' rows gone, their dead
        // tuples vacuumed (a bloated queue table alone halves the drain rate).
        let mut conn = bench.pool.get().await?;
        diesel::sql_query("DELETE FROM tasks WHERE kind LIKE 'bench.%'")
            .execute(&mut conn)
            .await?;
        diesel::sql_query("VACUUM (ANALYZE) tasks")
            .execute(&mut conn)
            .await?;
    }
    let result = match args.as_slice().first().map(String::as_str) {
        Some("drain") => bench.drain(arg(&args, 1, "N")?).await?,
        Some("chain") => {
            bench
                .chain(arg(&args, 1, "RATE")?, arg(&args, 2, "SECS")?)
                .await?
        }
        Some("pickup") => bench.pickup(arg(&args, 1, "N")?).await?,
        _ => return Err("usage: queue-bench drain N | chain RATE SECS | pickup N".into()),
    };
    println!(
        "{}",
        serde_json::json!({ "concurrency": concurrency, "result": result })
    );
    Ok(())
}
