//! The claims a worker holds, kept alive together. One statement per beat renews the lease
//! of every task the worker is running, however many: an I/O-bound kind can hold hundreds
//! of attempts in flight without a heartbeat statement (and a pool checkout) for each.
//! An attempt whose claim was not renewed (it expired, or another worker took the task)
//! is told to stop: it could not commit anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::claim::extend_leases;
use crate::task::LeaseClock;
use crate::{ClaimedTask, Pool, TaskError};

struct Held {
    token: Uuid,
    lease: LeaseClock,
    /// Cancelled when the claim is found lost.
    lost: CancellationToken,
}

#[derive(Clone, Default)]
pub(crate) struct HeldClaims(Arc<Mutex<HashMap<i64, Held>>>);

impl HeldClaims {
    /// Holds `task`'s claim; the token returned is cancelled if the claim is lost.
    pub(crate) fn insert(&self, task: &ClaimedTask) -> CancellationToken {
        let lost = CancellationToken::new();
        self.lock().insert(
            task.id,
            Held {
                token: task.claim_token,
                lease: task.lease.clone(),
                lost: lost.clone(),
            },
        );
        lost
    }

    pub(crate) fn remove(&self, task_id: i64) {
        self.lock().remove(&task_id);
    }

    /// Every claim still held, let go of (for giving them back at shutdown).
    pub(crate) fn take(&self) -> Vec<(i64, Uuid)> {
        self.lock()
            .drain()
            .map(|(id, held)| (id, held.token))
            .collect()
    }

    fn claims(&self) -> Vec<(i64, Uuid)> {
        self.lock()
            .iter()
            .map(|(id, held)| (*id, held.token))
            .collect()
    }

    /// One beat: renews every held lease in one statement. A claim whose row was locked
    /// keeps its lease clock as it was; a claim no longer held is lost.
    async fn renew(&self, pool: &Pool, lease: Duration) -> Result<(), TaskError> {
        let claims = self.claims();
        if claims.is_empty() {
            return Ok(());
        }
        let sent = Instant::now();
        let answers: std::collections::HashMap<(i64, Uuid), bool> = {
            let mut conn = pool.get().await?;
            extend_leases(&mut conn, &claims, lease)
                .await?
                .into_iter()
                .map(|answer| (answer.claim, answer.renewed))
                .collect()
        };
        let held = self.lock();
        for claim in claims {
            // A claim let go of meanwhile (its attempt finished) is no longer ours to judge.
            let Some(entry) = held.get(&claim.0).filter(|h| h.token == claim.1) else {
                continue;
            };
            match answers.get(&claim) {
                Some(true) => entry.lease.renew(sent + lease),
                Some(false) => {}
                None => entry.lost.cancel(),
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Held>> {
        // Each operation is one call on the map: it stays consistent if a holder panicked.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Renews the held claims every third of a lease until `stop`. A beat that fails (the
/// database unreachable) is tried again on the next one; the lease covers the gap.
pub(crate) async fn keep_leases(
    held: HeldClaims,
    pool: Pool,
    kind: &'static str,
    lease: Duration,
    stop: CancellationToken,
) {
    let mut beat = tokio::time::interval(lease / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = beat.tick() => {}
        }
        if let Err(error) = held.renew(&pool, lease).await {
            tracing::warn!(kind, %error, "could not renew the leases of running tasks");
        }
    }
}
