//! The pipeline's steps, one module each: the step's task arguments, what its worker reads,
//! and how its outcome is written, set-wise for a group where the step allows it. The
//! transitions they share, and the table of all of them, are in [`crate::lifecycle`].

pub mod cancel;
pub mod charge;
pub mod notify;
pub mod refund;
pub mod reserve;
pub mod ship;
