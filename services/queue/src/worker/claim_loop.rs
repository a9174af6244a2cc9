//! The claim loop: claims as many tasks as the kind's limit leaves room for, when work may
//! wait (a wake-up, a poll tick, a full claim), paced under load, and stops gracefully.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::report_panic;
use super::{TaskHandler, Worker};
use crate::claim::release;
use crate::lease::{keep_leases, HeldClaims};
use crate::limit::{ConcurrencyLimit, ADJUST_EVERY};
use crate::listener::Wakeup;
use crate::pacing::ClaimPacing;
use crate::phase::{self, Phase};
use crate::record::GroupRecorder;
use crate::{claim_batch, ClaimedTask, TaskError};

/// The most tasks one claim takes: a claim is one statement, and its tasks are recorded
/// in groups of at most 64 anyway.
const MAX_CLAIM: usize = 128;

fn lock_limit(
    limit: &std::sync::Mutex<ConcurrencyLimit>,
) -> std::sync::MutexGuard<'_, ConcurrencyLimit> {
    limit
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<H: TaskHandler> Worker<H> {
    /// Runs until `shutdown` is cancelled, then stops claiming and waits up to the grace
    /// period for in-flight tasks. A task still running after that is stopped and given
    /// back, claimable again at once; one that had finished its outside work and waited to
    /// be recorded is still recorded.
    pub async fn run(self, shutdown: CancellationToken) {
        let limit = Arc::new(std::sync::Mutex::new(ConcurrencyLimit::new(
            self.options.min_concurrency,
            self.options.concurrency,
        )));
        let mut running = JoinSet::new();
        let held = HeldClaims::default();
        let stop_leases = CancellationToken::new();
        let leases = tokio::spawn(keep_leases(
            held.clone(),
            self.pool.clone(),
            self.kind.kind,
            self.kind.lease,
            stop_leases.clone(),
        ));
        let recording = H::GROUP_COMMIT
            .then(|| GroupRecorder::start(self.pool.clone(), Arc::clone(&self.handler)));
        let recorder = recording.as_ref().map(|(recorder, _)| recorder.clone());
        let mut poll = tokio::time::interval(self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            kind = self.kind.kind,
            min_concurrency = self.options.min_concurrency,
            max_concurrency = self.options.concurrency,
            "worker started"
        );
        // Whether a claim could find anything: set by a wake-up, a poll tick or a full
        // batch; cleared by a claim that found fewer tasks than it asked for. A finished
        // task frees a slot but is no sign of new work, so it does not trigger a claim
        // (most such claims would come back empty).
        let mut work_may_wait = true;
        let mut next_claim_at = tokio::time::Instant::now();
        let mut pacing = ClaimPacing::new(self.options.claim_cooldown);
        let mut saturation = Saturation::default();

        while !shutdown.is_cancelled() {
            while let Some(finished) = running.try_join_next() {
                report_panic(finished);
            }
            let free = lock_limit(&limit)
                .current()
                .saturating_sub(running.len())
                .min(MAX_CLAIM);
            if free > 0 && work_may_wait && tokio::time::Instant::now() < next_claim_at {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    () = tokio::time::sleep_until(next_claim_at) => {}
                }
                continue;
            }
            if free > 0 && work_may_wait {
                let claim_started = tokio::time::Instant::now();
                match self.claim(free).await {
                    Ok(tasks) => {
                        let full = tasks.len() == free;
                        {
                            let mut limit = lock_limit(&limit);
                            limit.adjust(full, running.len() + tasks.len(), Instant::now());
                            metrics::gauge!("orderflow_queue_concurrency_limit", "kind" => self.kind.kind)
                                .set(limit.current() as f64);
                        }
                        next_claim_at = pacing.claimed(claim_started, tasks.len(), full);
                        work_may_wait = full;
                        saturation.claimed(full, self.options.unlisten_after, &self.wakeup);
                        let found = match tasks.len() {
                            0 => "none",
                            _ if full => "full",
                            _ => "some",
                        };
                        metrics::counter!("orderflow_queue_claims_total", "kind" => self.kind.kind, "found" => found)
                            .increment(1);
                        if !tasks.is_empty() {
                            metrics::counter!("orderflow_queue_tasks_claimed_total", "kind" => self.kind.kind)
                                .increment(tasks.len() as u64);
                        }
                        for task in tasks {
                            phase::observe(&task, Phase::Waiting, task.waited());
                            let lost = held.insert(&task);
                            let attempt = self.execute(task, held.clone(), lost, recorder.clone());
                            let limit = Arc::clone(&limit);
                            running.spawn(async move {
                                let started = Instant::now();
                                attempt.await;
                                lock_limit(&limit).finished(started.elapsed());
                            });
                        }
                        // A full batch means more may be waiting: claim again as soon
                        // as a slot frees up, without waiting for a wake-up. While the
                        // limit may still grow, look again once it may have moved: with
                        // outside calls of half a second, waiting for a slot would let it
                        // grow only once per round of calls. The poll tick's upkeep goes
                        // on meanwhile: a kind that stays saturated must still rescue the
                        // tasks of a worker that died.
                        if full {
                            let growable = lock_limit(&limit).can_grow();
                            tokio::select! {
                                Some(finished) = running.join_next() => report_panic(finished),
                                () = tokio::time::sleep(ADJUST_EVERY), if growable => {
                                    lock_limit(&limit).adjust(true, running.len(), Instant::now());
                                }
                                _ = poll.tick() => self.upkeep().await,
                                _ = shutdown.cancelled() => {}
                            }
                            continue;
                        }
                    }
                    Err(error) => {
                        // Tried again on the next wake-up or poll tick.
                        work_may_wait = false;
                        saturation.claimed(false, self.options.unlisten_after, &self.wakeup);
                        tracing::warn!(kind = self.kind.kind, %error, "claiming tasks failed");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = self.wakeup.notified() => work_may_wait = true,
                _ = poll.tick() => {
                    self.upkeep().await;
                    work_may_wait = true;
                }
                Some(finished) = running.join_next(), if !running.is_empty() => report_panic(finished),
            }
        }

        tracing::info!(
            kind = self.kind.kind,
            in_flight = running.len(),
            "worker stopping"
        );
        let drained = tokio::time::timeout(self.options.shutdown_grace, async {
            while let Some(finished) = running.join_next().await {
                report_panic(finished);
            }
        })
        .await;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        // Attempts stopped while waiting to be recorded are still recorded: their outside
        // work is done. The recorder ends once every attempt's handle on it is gone.
        drop(recorder);
        if let Some((recorder, mut recording)) = recording {
            drop(recorder);
            if tokio::time::timeout(self.options.shutdown_grace, &mut recording)
                .await
                .is_err()
            {
                recording.abort();
            }
        }
        stop_leases.cancel();
        let _ = leases.await;
        if drained.is_err() {
            self.give_back(held.take()).await;
        }
    }

    /// Releases the claims of tasks stopped at shutdown, so that another worker takes them
    /// now rather than when their lease expires.
    async fn give_back(&self, claims: Vec<(i64, uuid::Uuid)>) {
        let result: Result<usize, TaskError> = async {
            let mut conn = self.pool.get().await?;
            Ok(release(&mut conn, self.kind.kind, &claims).await?)
        }
        .await;
        match result {
            Ok(released) => tracing::warn!(
                kind = self.kind.kind,
                released,
                "grace period over; unfinished tasks given back"
            ),
            Err(error) => tracing::warn!(
                kind = self.kind.kind,
                %error,
                "grace period over; unfinished tasks will be re-claimed when their lease expires"
            ),
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedTask>, TaskError> {
        let mut conn = self.pool.get().await?;
        Ok(claim_batch(&mut conn, self.kind.kind, limit as i64, self.kind.lease).await?)
    }
}

/// Since when a worker's claims have all come back full.
#[derive(Default)]
struct Saturation {
    full_since: Option<tokio::time::Instant>,
}

impl Saturation {
    /// Follows a claim's outcome: full claims for `unlisten_after` stop the wake-ups, a
    /// short (or failed) one brings them back, and with them one more claim (the listener
    /// wakes the worker once it listens again), so that nothing enqueued in between waits
    /// for the poll. Asking for the state the channel is already in does nothing.
    fn claimed(&mut self, full: bool, unlisten_after: Option<Duration>, wakeup: &Wakeup) {
        if !full {
            self.full_since = None;
            wakeup.set_listening(true);
            return;
        }
        let since = *self
            .full_since
            .get_or_insert_with(tokio::time::Instant::now);
        if unlisten_after.is_some_and(|after| since.elapsed() >= after) {
            wakeup.set_listening(false);
        }
    }
}
