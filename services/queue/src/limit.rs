//! How many attempts of a kind one worker runs at once, sized from what it observes, in
//! the spirit of adaptive concurrency limits (Netflix's gradient limiters): by Little's
//! law a kind needs about (tasks per second) × (seconds per attempt) in flight, and only
//! the kind can see both.
//!
//! - While tasks are waiting (claims come back full) and attempts take no longer than
//!   they usually do, the limit grows: a slow outside call (a payment provider answering in
//!   half a second) needs hundreds in flight, and more of them cost it nothing.
//!   Until the first sign of saturation since the kind was last idle, it quadruples (a slow
//!   start, as TCP's): a burst meets a limit that reaches the hundreds within a second.
//! - When attempts start taking clearly longer than they do unloaded (the lowest recent
//!   mean of the last 10 to 20 seconds), the limit shrinks: the step's own resource
//!   (PostgreSQL, for a kind that only writes) is saturating, and more in flight would only
//!   queue there.
//! - Without a backlog it drifts back toward what is in use.
//!
//! It stays within the configured bounds.

use std::time::{Duration, Instant};

/// How often the limit moves at most.
pub(crate) const ADJUST_EVERY: Duration = Duration::from_millis(100);
/// Recent attempts take this much longer than unloaded: saturation, shrink.
const SATURATED: f64 = 1.5;
/// Recent attempts take at most this much longer than unloaded: room to grow.
const UNLOADED: f64 = 1.2;
/// How much the limit grows per adjustment until the first sign of saturation. Four times:
/// a burst at a provider taking 500 ms then meets 8, 32, 128, 512 in three steps, where
/// doubling took five and the first second's charges waited up to 300 ms meanwhile, long
/// enough to read as a backlog to the API's admission control.
const SLOW_START_GROWTH: f64 = 4.0;
/// How long a lowest recent mean counts as the unloaded time: it is the lowest of this
/// window and the one before, so that a lucky moment long ago does not make every later
/// one look saturated.
const BASELINE_WINDOW: Duration = Duration::from_secs(10);

/// An exponentially weighted mean.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    value: Option<f64>,
    weight: f64,
}

impl Ewma {
    fn new(weight: f64) -> Self {
        Self {
            value: None,
            weight,
        }
    }

    fn add(&mut self, sample: f64) {
        self.value = Some(match self.value {
            Some(value) => value + self.weight * (sample - value),
            None => sample,
        });
    }
}

#[derive(Debug)]
pub(crate) struct ConcurrencyLimit {
    min: f64,
    max: f64,
    limit: f64,
    /// Attempts' whole time, claim to recorded (the outside call, and the wait for the
    /// database to record it), as a recent mean.
    recent: Ewma,
    /// The lowest recent mean of this baseline window and of the one before.
    lowest: f64,
    lowest_before: f64,
    window_started: Instant,
    last_adjusted: Instant,
    /// Saturation was seen since the kind was last idle: grow gently from now on.
    saturated_once: bool,
}

impl ConcurrencyLimit {
    /// Starts at `min`; `min == max` is a fixed limit.
    pub(crate) fn new(min: usize, max: usize) -> Self {
        let max = max.max(1) as f64;
        let min = (min.max(1) as f64).min(max);
        Self {
            min,
            max,
            limit: min,
            recent: Ewma::new(0.2),
            lowest: f64::INFINITY,
            lowest_before: f64::INFINITY,
            window_started: Instant::now(),
            last_adjusted: Instant::now(),
            saturated_once: false,
        }
    }

    pub(crate) fn current(&self) -> usize {
        self.limit as usize
    }

    /// One attempt took `took`, from its claim until it was recorded.
    pub(crate) fn finished(&mut self, took: Duration) {
        self.recent.add(took.as_secs_f64());
    }

    /// The unloaded time: the lowest recent mean of the last one or two windows.
    fn unloaded(&mut self, recent: f64, now: Instant) -> f64 {
        if now.duration_since(self.window_started) >= BASELINE_WINDOW {
            self.lowest_before = self.lowest;
            self.lowest = f64::INFINITY;
            self.window_started = now;
        }
        self.lowest = self.lowest.min(recent);
        self.lowest.min(self.lowest_before)
    }

    /// Whether the limit is below its bound.
    pub(crate) fn can_grow(&self) -> bool {
        self.limit < self.max
    }

    /// After a claim: `backlog` when it came back full (more tasks wait), `in_flight` the
    /// attempts running now. Moves the limit at most once per [`ADJUST_EVERY`].
    pub(crate) fn adjust(&mut self, backlog: bool, in_flight: usize, now: Instant) {
        if now.duration_since(self.last_adjusted) < ADJUST_EVERY {
            return;
        }
        self.last_adjusted = now;
        let slower = match self.recent.value {
            // A floor keeps sub-millisecond noise from reading as saturation.
            Some(recent) => (recent + 0.0005) / (self.unloaded(recent, now) + 0.0005),
            None => 1.0,
        };
        if in_flight == 0 {
            self.saturated_once = false;
        }
        let limit = if slower >= SATURATED {
            self.saturated_once = true;
            self.limit * 0.9
        } else if backlog && slower <= UNLOADED && !self.saturated_once {
            self.limit * SLOW_START_GROWTH
        } else if backlog && slower <= UNLOADED {
            self.limit * 1.25 + 1.0
        } else if !backlog {
            (self.limit * 0.98).max(2.0 * in_flight as f64)
        } else {
            self.limit
        };
        self.limit = limit.clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `steps` adjustments, each after one attempt that took `took`; the clock is the
    /// limit's own, moved on by one interval a step.
    fn run(
        limit: &mut ConcurrencyLimit,
        steps: usize,
        took: Duration,
        backlog: bool,
        in_flight: usize,
    ) {
        for _ in 0..steps {
            limit.finished(took);
            let now = limit.last_adjusted + ADJUST_EVERY;
            limit.adjust(backlog, in_flight, now);
        }
    }

    #[test]
    fn a_backlog_of_slow_calls_raises_the_limit_to_its_bound() {
        let mut limit = ConcurrencyLimit::new(8, 512);
        run(&mut limit, 40, Duration::from_millis(500), true, 8);
        assert_eq!(limit.current(), 512);
    }

    #[test]
    fn attempts_slowing_down_lower_it_and_no_backlog_lets_it_drift_down() {
        let mut limit = ConcurrencyLimit::new(8, 512);
        run(&mut limit, 30, Duration::from_millis(2), true, 8);
        let grown = limit.current();
        assert!(grown > 100, "{grown}");
        // The resource saturates: attempts take five times as long as they did unloaded.
        run(&mut limit, 10, Duration::from_millis(10), true, grown);
        assert!(limit.current() < grown, "{} after {grown}", limit.current());
        let lowered = limit.current();
        run(&mut limit, 200, Duration::from_millis(2), false, 4);
        assert!(limit.current() < lowered);
        assert!(limit.current() >= 8);
    }

    #[test]
    fn equal_bounds_are_a_fixed_limit() {
        let mut limit = ConcurrencyLimit::new(16, 16);
        run(&mut limit, 20, Duration::from_millis(500), true, 16);
        assert_eq!(limit.current(), 16);
    }

    #[test]
    fn a_steady_slow_call_is_not_mistaken_for_saturation_once_it_is_the_norm() {
        let mut limit = ConcurrencyLimit::new(8, 512);
        // Half a second a call from the start, with a backlog: only growth.
        run(&mut limit, 300, Duration::from_millis(500), true, 8);
        assert_eq!(limit.current(), 512);
    }

    #[test]
    fn a_burst_quadruples_the_limit_until_the_first_saturation_then_grows_gently() {
        let mut limit = ConcurrencyLimit::new(8, 512);
        // Three adjustments, 0.3 s: 8 quadrupled three times.
        run(&mut limit, 3, Duration::from_millis(500), true, 8);
        assert_eq!(limit.current(), 512);

        let mut limit = ConcurrencyLimit::new(8, 512);
        run(&mut limit, 2, Duration::from_millis(2), true, 8);
        assert_eq!(limit.current(), 128);
        run(&mut limit, 1, Duration::from_millis(40), true, 128);
        let after_saturation = limit.current();
        assert!(after_saturation < 128, "{after_saturation}");
        // Unloaded again, with a backlog: +25 % (and one) a step, no longer doubling.
        let mut gentle = ConcurrencyLimit::new(8, 512);
        gentle.limit = 40.0;
        gentle.saturated_once = true;
        gentle.lowest = 0.002;
        gentle.finished(Duration::from_millis(2));
        let now = gentle.last_adjusted + ADJUST_EVERY;
        gentle.adjust(true, 40, now);
        assert_eq!(gentle.current(), 51);
    }
}
