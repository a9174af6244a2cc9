//! The order API: HTTP in, orders and their first task out, in one transaction.

mod admission;
mod body_deadline;
pub mod error;
pub mod healthcheck;
mod metrics;
pub mod openapi;
pub mod operator;
mod ops_stats;
mod order_feed;
mod placements;
mod rate_limit;
mod request_context;
mod routes;
pub mod startup;
mod state;
mod validation;
