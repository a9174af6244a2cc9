//! Orderflow's domain: what an order is, how it moves through its lifecycle step by step,
//! the payment gateway it needs and the e-mails it sends. What the services run on
//! (configuration, pool, logging, metrics, the worker runtime) is `orderflow-runtime`'s.
//!
//! Start with [`lifecycle`]: every transition an order can take, in one file.

pub mod access;
pub mod catalog;
pub mod email;
pub mod input;
pub mod invariants;
pub mod lifecycle;
pub mod lookup;
mod order_list;
pub mod payment;
mod place;
pub mod schema;
pub mod status;
pub mod steps;
pub mod tasks;
pub mod views;
