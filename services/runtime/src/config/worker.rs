//! A worker service: concurrency, polling, shutdown, its ops endpoint.

use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, optional_var, var, ConfigError};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `WORKER_CONCURRENCY`: the most tasks of each kind a worker process runs at once.
    /// Within it the worker sizes its limit from what it observes (a slow provider gets
    /// hundreds in flight, a kind that only writes to PostgreSQL few).
    pub concurrency: usize,
    /// `WORKER_MIN_CONCURRENCY`: where the adaptive limit starts and the least it goes
    /// down to (8, or `WORKER_CONCURRENCY` if that is lower; equal, the limit is fixed).
    pub min_concurrency: usize,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    /// `WORKER_CLAIM_COOLDOWN_MS`: the least time between two claims of a busy kind (`0`:
    /// every wake-up claims at once).
    pub claim_cooldown: Duration,
    /// `TASK_LEASE_SECONDS`: overrides the lease of every kind this worker runs.
    pub lease: Option<Duration>,
    /// `COMPLETED_TASK_RETENTION_HOURS`: how long completed tasks are kept (default the
    /// queue's [`orderflow_queue::DEFAULT_COMPLETED_RETENTION`], a day; `0` keeps them forever).
    pub completed_retention: Option<Duration>,
    /// `METRICS_ADDR`: where the worker serves `/metrics`, `/healthz` and `/readyz`; unset,
    /// it serves none (replicas on one host would need a port each).
    pub metrics_addr: Option<SocketAddr>,
}

/// The queue's default ([`orderflow_queue::DEFAULT_CLAIM_COOLDOWN`]).
const DEFAULT_CLAIM_COOLDOWN_MS: u64 = orderflow_queue::DEFAULT_CLAIM_COOLDOWN.as_millis() as u64;

/// The most attempts of a kind in flight per worker process: enough for a provider that
/// answers in half a second at several hundred orders a second (Little's law: 400/s × 0.5 s
/// is 200 in flight), with room for its slow tail.
pub const DEFAULT_MAX_CONCURRENCY: usize = 512;
/// Where the adaptive limit starts, and its floor.
pub const DEFAULT_MIN_CONCURRENCY: usize = 8;

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let concurrency = var("WORKER_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)?;
        if !(1..=4096).contains(&concurrency) {
            return Err(invalid("WORKER_CONCURRENCY", "must be between 1 and 4096"));
        }
        let min_concurrency = var(
            "WORKER_MIN_CONCURRENCY",
            DEFAULT_MIN_CONCURRENCY.min(concurrency),
        )?;
        if !(1..=concurrency).contains(&min_concurrency) {
            return Err(invalid(
                "WORKER_MIN_CONCURRENCY",
                "must be between 1 and WORKER_CONCURRENCY",
            ));
        }
        let poll_interval_ms = var("WORKER_POLL_INTERVAL_MS", 1000u64)?;
        if poll_interval_ms == 0 {
            return Err(invalid("WORKER_POLL_INTERVAL_MS", "must be at least 1"));
        }
        let claim_cooldown_ms = var("WORKER_CLAIM_COOLDOWN_MS", DEFAULT_CLAIM_COOLDOWN_MS)?;
        if claim_cooldown_ms > 1000 {
            return Err(invalid(
                "WORKER_CLAIM_COOLDOWN_MS",
                "must be between 0 and 1000",
            ));
        }
        let lease: Option<f64> = optional_var("TASK_LEASE_SECONDS")?;
        if lease.is_some_and(|secs| !(0.1..=3600.0).contains(&secs)) {
            return Err(invalid(
                "TASK_LEASE_SECONDS",
                "must be between 0.1 and 3600",
            ));
        }
        let default_hours = orderflow_queue::DEFAULT_COMPLETED_RETENTION.as_secs_f64() / 3600.0;
        let retention_hours: f64 = var("COMPLETED_TASK_RETENTION_HOURS", default_hours)?;
        if !(0.0..=87_600.0).contains(&retention_hours) {
            return Err(invalid(
                "COMPLETED_TASK_RETENTION_HOURS",
                "must be between 0 (keep forever) and 87600",
            ));
        }
        Ok(Self {
            concurrency,
            min_concurrency,
            lease: lease.map(Duration::from_secs_f64),
            completed_retention: (retention_hours > 0.0)
                .then(|| Duration::from_secs_f64(retention_hours * 3600.0)),
            metrics_addr: optional_var("METRICS_ADDR")?,
            poll_interval: Duration::from_millis(poll_interval_ms),
            claim_cooldown: Duration::from_millis(claim_cooldown_ms),
            shutdown_grace: Duration::from_secs(var("SHUTDOWN_GRACE_SECONDS", 10u64)?),
        })
    }
}
