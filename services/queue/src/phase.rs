//! Where an attempt's time goes, as the histogram
//! `orderflow_queue_attempt_phase_seconds{kind, phase}`. The phases follow one another, so
//! their sum is about the time from a task becoming due to its completion committing:
//! what a chain of tasks adds per stage.

use std::time::Duration;

use crate::ClaimedTask;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    /// Due until claimed, by the database's clock. A follow-up task is due from the start
    /// of the transaction that enqueued it, so this includes the rest of that transaction
    /// (its commit too), the wake-up and the claim.
    Waiting,
    /// The handler's `perform`.
    Performing,
    /// Done performing until its group's transaction begins: the group waiting for the
    /// worker's other attempts, or for the group before it to commit.
    Gathering,
    /// The recording transaction, from taking a connection to the commit.
    Recording,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Performing => "performing",
            Phase::Gathering => "gathering",
            Phase::Recording => "recording",
        }
    }
}

pub(crate) fn observe(task: &ClaimedTask, phase: Phase, took: Duration) {
    metrics::histogram!(
        "orderflow_queue_attempt_phase_seconds",
        "kind" => task.kind.clone(),
        "phase" => phase.as_str(),
    )
    .record(took.as_secs_f64());
}
