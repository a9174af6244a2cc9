//! The payment gateway as the pipeline sees it: a trait, so that any provider plugs in.
//! Two implementations ship: the payment worker's HTTP client (`payment_worker::http`) and
//! the provider simulator run in-process (`gateway_sim::SimulatedGateway`), both over the
//! simulator's Stripe-style test tokens.

use async_trait::async_trait;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The provider charges at most once per key; a retried call returns the first result.
    pub idempotency_key: String,
    pub token: String,
    pub amount_cents: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved { charge_id: String },
    Declined { reason: String },
}

#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub charge_id: String,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Timeouts, 5xx, rate limits: retry later with the same idempotency key.
    #[error("payment gateway unavailable: {0}")]
    Transient(String),
    /// The request itself is wrong (unknown token or charge): retrying cannot help.
    #[error("payment gateway rejected the request: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError>;
    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError>;
    /// What the provider did with the charge it was asked for under this idempotency key
    /// (`None`: no charge was ever made under it). A caller whose answer to a charge was
    /// lost learns here whether money was taken.
    async fn find_charge(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<ChargeOutcome>, GatewayError>;
}

/// Idempotency keys derived from the order: a retried charge never charges twice.
pub fn charge_key(order_id: Uuid) -> String {
    format!("order-{order_id}-charge")
}

pub fn refund_key(order_id: Uuid) -> String {
    format!("order-{order_id}-refund")
}

/// The test tokens the simulated provider knows.
pub const TOKEN_APPROVED: &str = "tok_visa";
pub const TOKEN_DECLINED: &str = "tok_chargeDeclined";

/// Whether a payment token is one the gateway accepts for a charge attempt.
pub fn is_known_token(token: &str) -> bool {
    matches!(token, TOKEN_APPROVED | TOKEN_DECLINED)
}
