//! The HTTP API from outside: validation and bad input, access and limits, idempotency,
//! CORS, configuration, logs and metrics, the OpenAPI contract. One test binary, one module
//! per concern; each test has a database of its own.

mod bad_input;
mod configuration;
mod cors;
mod idempotency;
mod lookup;
mod observability;
mod openapi;
mod orders_api;
mod placement_groups;
mod public_api;
