//! The order API: HTTP in, orders and their first task out, in one transaction.

pub mod error;
mod routes;
pub mod startup;
mod state;
mod validation;
