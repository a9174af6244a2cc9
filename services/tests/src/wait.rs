//! Waiting for a condition with a deadline: [`orderflow_queue::testing::wait_until`].

pub use orderflow_queue::testing::wait_until;
