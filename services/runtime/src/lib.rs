//! What every Orderflow service runs on, kept out of the domain crate: configuration (one
//! place, from the environment), the database pool and migrations, logging, metrics, the
//! workers' ops endpoint, the mailer, and the worker runtime that runs the queue's workers
//! for a service's task kinds.

pub mod config;
pub mod db;
pub mod mailer;
pub mod metrics;
pub mod ops;
pub mod runtime;
pub mod telemetry;
