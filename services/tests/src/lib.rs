//! Test support. Every test gets its own database, cloned from a template that holds the
//! migrated schema, so tests run in parallel and never see each other's rows.

pub mod app;
pub mod cluster;
pub mod db;
pub mod http;
pub mod invariants;
pub mod processes;
pub mod random;
pub mod smtp;
pub mod stack;
pub mod wait;

pub use app::{TestApp, Workers};
pub use db::TestDb;
pub use smtp::SmtpServer;
pub use wait::wait_until;
