//! The payment gateway: a trait, so a real provider plugs in, and a simulator that
//! behaves like a provider's test mode (Stripe-style test tokens).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::PaymentConfig;

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

#[derive(Debug, Clone, thiserror::Error)]
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

/// The test tokens the simulator knows.
pub const TOKEN_APPROVED: &str = "tok_visa";
pub const TOKEN_DECLINED: &str = "tok_chargeDeclined";

/// Whether a payment token is one the gateway accepts for a charge attempt.
pub fn is_known_token(token: &str) -> bool {
    matches!(token, TOKEN_APPROVED | TOKEN_DECLINED)
}

/// A provider's test mode: `tok_visa` approves, `tok_chargeDeclined` declines, with
/// optional latency, transient failures and answers lost after the charge was made.
/// Identifiers are derived from the idempotency key, so results are the same across
/// retries and restarts.
pub struct SimulatedGateway {
    config: PaymentConfig,
    /// Charges the "provider" made, per idempotency key, for lookups, tests and logs.
    ledger: Mutex<HashMap<String, ChargeOutcome>>,
    /// Charge ids refunded, per refund idempotency key.
    refunds: Mutex<HashMap<String, String>>,
}

impl SimulatedGateway {
    pub fn new(config: PaymentConfig) -> Self {
        Self {
            config,
            ledger: Mutex::new(HashMap::new()),
            refunds: Mutex::new(HashMap::new()),
        }
    }

    /// Distinct charges the "provider" made (one per idempotency key, however often called).
    pub fn distinct_charges(&self) -> usize {
        lock(&self.ledger).len()
    }

    /// Distinct approved charges that were refunded.
    pub fn refunded_charges(&self) -> usize {
        let refunded: std::collections::HashSet<String> =
            lock(&self.refunds).values().cloned().collect();
        refunded.len()
    }

    fn lose_response(&self) -> bool {
        self.config.lost_response_rate > 0.0
            && rand::random::<f64>() < self.config.lost_response_rate
    }

    async fn network(&self) -> Result<(), GatewayError> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        if self.config.transient_failure_rate > 0.0
            && rand::random::<f64>() < self.config.transient_failure_rate
        {
            return Err(GatewayError::Transient("simulated timeout".into()));
        }
        Ok(())
    }
}

fn derived_id(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{prefix}_{}", &hex::encode(digest)[..24])
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        self.network().await?;
        let outcome = match request.token.as_str() {
            TOKEN_APPROVED => ChargeOutcome::Approved {
                charge_id: derived_id("ch", &request.idempotency_key),
            },
            TOKEN_DECLINED => ChargeOutcome::Declined {
                reason: "card_declined".into(),
            },
            other => return Err(GatewayError::Rejected(format!("unknown token {other:?}"))),
        };
        let outcome = lock(&self.ledger)
            .entry(request.idempotency_key.clone())
            .or_insert(outcome)
            .clone();
        if self.lose_response() {
            return Err(GatewayError::Transient(
                "simulated: the answer was lost after the charge was made".into(),
            ));
        }
        Ok(outcome)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        self.network().await?;
        if !request.charge_id.starts_with("ch_") {
            return Err(GatewayError::Rejected(format!(
                "unknown charge {:?}",
                request.charge_id
            )));
        }
        lock(&self.refunds)
            .entry(request.idempotency_key.clone())
            .or_insert_with(|| request.charge_id.clone());
        Ok(derived_id("re", &request.idempotency_key))
    }

    async fn find_charge(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<ChargeOutcome>, GatewayError> {
        self.network().await?;
        Ok(lock(&self.ledger).get(idempotency_key).cloned())
    }
}

/// A lock whose holder cannot have left the map half-changed: poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
