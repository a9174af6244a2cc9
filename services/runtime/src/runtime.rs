//! What every worker service does around its handlers: configuration, the pool, the
//! LISTEN connection, one claim loop per task kind, and a graceful stop on SIGTERM/SIGINT.
//!
//! The worker binaries run it on a current-thread runtime: a worker mostly waits on the
//! database, and on a machine it shares with PostgreSQL a second runtime thread only adds
//! wake-ups between threads, which cost CPU per order (`load-tests/RESULTS.md`, "The
//! workers run on one thread").
//! A kind that needs more than one core runs more replicas.

use std::sync::Arc;

use orderflow_queue::{Listener, TaskHandler, Worker, WorkerOptions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseConfig, WorkerConfig};
use crate::db::{self, Pool};
use orderflow::tasks::TaskKind;

/// Connections a kind's worker uses at once: claims, batched reads, the group recorder, and
/// one for lease renewals, failures and upkeep.
const CONNECTIONS_PER_KIND: usize = 4;

pub struct WorkerRuntime {
    pub pool: Pool,
    database_url: String,
    options: WorkerOptions,
    lease: Option<std::time::Duration>,
    kinds: Vec<&'static str>,
    metrics_addr: Option<std::net::SocketAddr>,
    listener: Listener,
    shutdown: CancellationToken,
    workers: JoinSet<()>,
}

impl WorkerRuntime {
    pub fn new(database: &DatabaseConfig, worker: &WorkerConfig, kinds: &[TaskKind]) -> Self {
        let names: Vec<&'static str> = kinds.iter().map(|kind| kind.as_str()).collect();
        // A kind's attempts share a few connections, whatever their number: its claims, its
        // batched reads, its group recorder and its lease renewals use one each, one at a
        // time. Outside calls (a provider, SMTP) hold none. So the pool does not grow with
        // the concurrency, and the whole default stack stays far below max_connections.
        let wanted = (kinds.len() * CONNECTIONS_PER_KIND + 2) as u32;
        let pool_size = database.pool_size_or(wanted);
        if pool_size < wanted {
            tracing::warn!(
                pool_size,
                wanted,
                "DB_POOL_SIZE is below what this worker's kinds use at once"
            );
        }
        Self {
            pool: db::pool(database, pool_size),
            database_url: database.url.expose().to_string(),
            options: WorkerOptions {
                concurrency: worker.concurrency,
                min_concurrency: worker.min_concurrency,
                poll_interval: worker.poll_interval,
                shutdown_grace: worker.shutdown_grace,
                claim_cooldown: worker.claim_cooldown,
                completed_retention: worker.completed_retention,
                ..WorkerOptions::default()
            },
            lease: worker.lease,
            kinds: names.clone(),
            metrics_addr: worker.metrics_addr,
            listener: Listener::new(&names),
            shutdown: CancellationToken::new(),
            workers: JoinSet::new(),
        }
    }

    /// Cancelling this token stops the workers as a signal would.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn spawn<H: TaskHandler>(&mut self, kind: TaskKind, handler: H) {
        let worker = Worker::new(
            self.pool.clone(),
            kind.config_with_lease(self.lease),
            Arc::new(handler),
            self.options.clone(),
            self.listener.wakeup(kind.as_str()),
        );
        self.workers.spawn(worker.run(self.shutdown.clone()));
    }

    /// Runs until SIGTERM/SIGINT (or the shutdown token), then drains the workers.
    pub async fn run(self) {
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("shutdown requested"),
                _ = shutdown.cancelled() => {}
            }
            shutdown.cancel();
        });
        self.run_until_stopped().await;
    }

    /// Runs until the shutdown token is cancelled, then drains the workers.
    pub async fn run_until_stopped(mut self) {
        let listener = tokio::spawn(
            self.listener
                .clone()
                .run(self.database_url.clone(), self.shutdown.clone()),
        );
        let ops = self.start_ops_server();
        self.shutdown.cancelled().await;
        while self.workers.join_next().await.is_some() {}
        let _ = listener.await;
        if let Some(ops) = ops {
            ops.stop(true).await;
        }
        tracing::info!("workers stopped");
    }

    /// `/metrics`, `/healthz` and `/readyz` on `METRICS_ADDR`, when set. A port that cannot
    /// be bound is logged; the worker runs on without it.
    fn start_ops_server(&self) -> Option<actix_web::dev::ServerHandle> {
        let addr = self.metrics_addr?;
        let started = crate::metrics::install()
            .map_err(|error| error.to_string())
            .and_then(|metrics| {
                crate::ops::serve(addr, self.pool.clone(), self.kinds.clone(), metrics)
                    .map_err(|error| error.to_string())
            });
        match started {
            Ok((server, bound)) => {
                tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
                let handle = server.handle();
                tokio::spawn(server);
                Some(handle)
            }
            Err(error) => {
                tracing::error!(%addr, %error, "cannot serve /metrics");
                None
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// The exit of a service's `main`: success, or the error on stderr and a failure code.
pub fn exit_code(
    service: &str,
    result: Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{service}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
