//! Orderflow's domain: what an order is, how it moves through its lifecycle, and the
//! pieces the services share (configuration, database, payment gateway, e-mail).
//!
//! Start with [`lifecycle`]: every transition an order can take, in one file.

pub mod access;
pub mod catalog;
pub mod config;
pub mod db;
pub mod email;
pub mod invariants;
pub mod lifecycle;
pub mod lookup;
pub mod metrics;
pub mod ops;
pub mod payment;
mod place;
pub mod runtime;
pub mod schema;
pub mod status;
pub mod steps;
pub mod tasks;
pub mod telemetry;
pub mod views;
