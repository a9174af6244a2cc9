//! When a worker's next claim may go out: at once for a quiet kind, after a cooldown for a
//! busy one.
//!
//! Each claim costs a statement, and each claim's tasks are recorded in a group that costs
//! a transaction, whatever their number. A kind woken by every enqueue claims one or two
//! tasks at a time, and at a few hundred tasks per second those per-claim costs take most
//! of the CPU (`load-tests/RESULTS.md`, "A busy kind claims at most once per cooldown").
//! Waiting costs latency, though, so a kind
//! waits only while its tasks arrive fast enough that a cooldown would gather a batch
//! worth having ([`MIN_PACED_BATCH`]).

use std::time::Duration;

use tokio::time::Instant;

/// The smallest batch worth waiting for: below it, a kind claims at once on each wake-up.
pub const MIN_PACED_BATCH: f64 = 4.0;

/// How far back the claim rate looks (the time constant of its exponential decay): long
/// enough to ride over a burst's gaps, short enough that a kind going quiet claims at
/// once again within a second.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// Follows one kind's claims and says when the next one may go out.
#[derive(Debug)]
pub(crate) struct ClaimPacing {
    cooldown: Duration,
    /// Tasks claimed per second, each claim's share decaying over [`RATE_WINDOW`].
    rate: f64,
    last_claim: Option<Instant>,
}

impl ClaimPacing {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            rate: 0.0,
            last_claim: None,
        }
    }

    /// Counts a claim that started at `started` and took `claimed` tasks; returns when the
    /// next claim may start. A full claim (`full`: as many tasks as it asked for) means
    /// more are waiting, and the next claim goes as soon as a slot is free: a backlog
    /// already makes batches, and a cooldown would only cap the kind's throughput.
    pub fn claimed(&mut self, started: Instant, claimed: usize, full: bool) -> Instant {
        let window = RATE_WINDOW.as_secs_f64();
        let decay = self.last_claim.map_or(0.0, |last| {
            (-started.saturating_duration_since(last).as_secs_f64() / window).exp()
        });
        self.rate = self.rate * decay + claimed as f64 / window;
        self.last_claim = Some(started);
        if !full && self.is_busy() {
            started + self.cooldown
        } else {
            started
        }
    }

    /// Whether the kind's tasks arrive fast enough that one cooldown gathers a batch of
    /// [`MIN_PACED_BATCH`].
    fn is_busy(&self) -> bool {
        self.rate * self.cooldown.as_secs_f64() >= MIN_PACED_BATCH
    }

    /// Tasks claimed per second lately.
    #[cfg(test)]
    fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_millis(10);

    /// A pacing with `cooldown` that has seen a claim of `batch` tasks every 5 ms for five
    /// seconds; returns it with the last claim's time and the next claim time it was given.
    fn steady(cooldown: Duration, batch: usize) -> (ClaimPacing, Instant, Instant) {
        let mut pacing = ClaimPacing::new(cooldown);
        let start = Instant::now();
        let mut last = start;
        let mut next = start;
        for i in 0..1000 {
            last = start + Duration::from_millis(5) * i;
            next = pacing.claimed(last, batch, false);
        }
        (pacing, last, next)
    }

    #[test]
    fn a_quiet_kind_claims_at_once() {
        // 200 tasks/s: a 10 ms cooldown would gather 2, fewer than worth waiting for.
        let (pacing, last, next) = steady(COOLDOWN, 1);
        assert!(
            (pacing.rate() - 200.0).abs() < 10.0,
            "rate {}",
            pacing.rate()
        );
        assert_eq!(next, last);
    }

    #[test]
    fn a_busy_kind_waits_out_the_cooldown_between_claims() {
        // 600 tasks/s: a cooldown gathers 6.
        let (pacing, last, next) = steady(COOLDOWN, 3);
        assert!(
            (pacing.rate() - 600.0).abs() < 20.0,
            "rate {}",
            pacing.rate()
        );
        assert_eq!(next, last + COOLDOWN);
    }

    #[test]
    fn a_full_claim_is_followed_at_once_even_when_busy() {
        let (mut pacing, last, _) = steady(COOLDOWN, 3);
        let at = last + Duration::from_millis(5);
        assert_eq!(pacing.claimed(at, 16, true), at);
    }

    #[test]
    fn a_kind_that_went_quiet_claims_at_once_again() {
        let (mut pacing, last, _) = steady(COOLDOWN, 3);
        let after_a_pause = last + Duration::from_secs(2);
        assert_eq!(pacing.claimed(after_a_pause, 1, false), after_a_pause);
    }

    #[test]
    fn no_cooldown_never_waits() {
        let (_, last, next) = steady(Duration::ZERO, 10);
        assert_eq!(next, last);
    }
}
