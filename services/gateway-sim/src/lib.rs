//! `gateway-sim`: a payment provider's test mode, over HTTP. Orderflow's payment worker
//! talks to it as it would to a real provider (`PAYMENT_GATEWAY_URL`), so the worker's
//! HTTP client, its timeouts, its error classes and its idempotency keys are exercised for
//! real; and it can be slow (a latency distribution), fail, lose answers and be killed.
//!
//! - [`api`]: the HTTP API, request and answer shapes (shared with the worker's client);
//! - [`provider`]: the provider without HTTP (also run in-process by the payment worker
//!   when no provider URL is set);
//! - [`SimulatedGateway`]: the provider as the pipeline's `PaymentGateway`, in-process;
//! - [`journal`]: charges and refunds on disk, so a restarted provider remembers them;
//! - [`server`]: the HTTP routes.

pub mod api;
mod in_process;
pub mod journal;
pub mod provider;
pub mod server;

pub use in_process::{gateway_error, outcome, SimulatedGateway, IN_PROCESS_MAX_KEYS};
pub use provider::{Behaviour, Latency, Provider, ProviderError, Retention};
