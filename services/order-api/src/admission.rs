//! Admission control: when the pipeline falls behind, `POST /orders` turns new orders away
//! early and cheaply (503 `overloaded` with `Retry-After`, nothing written) rather than
//! accepting work it cannot finish soon. Reads and the health endpoints keep answering.
//!
//! Two signals, both cheap to read:
//! - how long the oldest due task of any stage has waited, read from the front of the
//!   waiting tasks' index (one row per kind) by a background task a few times a second:
//!   past `ADMISSION_MAX_QUEUE_WAIT_MS`, orders accepted now would wait at least that long
//!   at that stage. Every stage counts, not only the first: an order is not done until
//!   its e-mail is sent, and under overload the stage that falls behind first can be any
//!   of them (the notification stage, often, while payments keep up);
//! - orders being placed at this moment in this process: past `API_MAX_ORDERS_IN_FLIGHT`
//!   they would only queue for the database pool, and answer late or not at all.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderflow_runtime::db::Pool;

/// Why an order was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The slowest stage is behind by this much.
    Backlog(Duration),
    /// Too many orders being placed at once.
    InFlight,
}

pub struct Admission {
    max_queue_wait: Option<Duration>,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    /// The slowest stage's lag in milliseconds, and when it was read (ms since `epoch`).
    lag_ms: AtomicU64,
    read_at_ms: AtomicU64,
    epoch: Instant,
}

/// A lag reading older than this is not trusted (the database may be away): no shedding
/// on it. Requests then fail or succeed on their own.
const STALE_AFTER: Duration = Duration::from_secs(5);

impl Admission {
    pub fn new(max_queue_wait: Option<Duration>, max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            max_queue_wait,
            max_in_flight: max_in_flight.max(1),
            in_flight: AtomicUsize::new(0),
            lag_ms: AtomicU64::new(0),
            read_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Reads the stages' lag every `every` until the process ends (call on a runtime).
    pub fn watch(self: &Arc<Self>, pool: Pool, stages: Vec<&'static str>, every: Duration) {
        if self.max_queue_wait.is_none() {
            return;
        }
        let admission = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(admission) = admission.upgrade() else {
                    return;
                };
                let lag = async {
                    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                    orderflow_queue::admin::longest_due_wait(&mut conn, &stages)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                match lag {
                    Ok(lag) => admission.record_lag(lag),
                    Err(error) => tracing::debug!(%error, "admission: cannot read the backlog"),
                }
            }
        });
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn record_lag(&self, lag: Duration) {
        self.lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
        self.read_at_ms
            .store(self.now_ms().max(1), Ordering::Relaxed);
    }

    /// Admits one order (held until the returned guard drops) or says why not.
    pub fn admit(self: &Arc<Self>) -> Result<Admitted, Shed> {
        if let Some(max_wait) = self.max_queue_wait {
            let read_at = self.read_at_ms.load(Ordering::Relaxed);
            let fresh = read_at > 0
                && self.now_ms().saturating_sub(read_at) < STALE_AFTER.as_millis() as u64;
            let lag = Duration::from_millis(self.lag_ms.load(Ordering::Relaxed));
            if fresh && lag > max_wait {
                return Err(Shed::Backlog(lag));
            }
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(Shed::InFlight);
        }
        Ok(Admitted(Arc::clone(self)))
    }
}

/// An order being placed; counted until dropped.
pub struct Admitted(Arc<Admission>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagging_stage_or_too_many_at_once_sheds() {
        let admission = Admission::new(Some(Duration::from_secs(1)), 2);
        let first = admission.admit().expect("admitted");
        let second = admission.admit().expect("admitted");
        assert_eq!(admission.admit().err(), Some(Shed::InFlight));
        drop(first);
        let third = admission.admit().expect("a slot freed");
        drop((second, third));

        admission.record_lag(Duration::from_millis(1500));
        assert_eq!(
            admission.admit().err(),
            Some(Shed::Backlog(Duration::from_millis(1500)))
        );
        admission.record_lag(Duration::from_millis(200));
        assert!(admission.admit().is_ok());
    }

    #[test]
    fn without_a_reading_nothing_is_shed_for_lag() {
        let admission = Admission::new(Some(Duration::ZERO), 10);
        assert!(admission.admit().is_ok());
    }
}
