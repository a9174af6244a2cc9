//! The provider in-process, as the pipeline's [`PaymentGateway`]: what the payment worker
//! uses when no provider URL is set (a bare start works without a `gateway-sim` process),
//! and what the tests drive directly.

use std::time::Duration;

use async_trait::async_trait;
use orderflow::payment::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest,
};
use orderflow_runtime::config::PaymentConfig;

use crate::api::{Charge, ChargeStatus, CreateCharge, CreateRefund};
use crate::{Behaviour, Latency, Provider, ProviderError, Retention};

/// Idempotency keys the in-process provider keeps at most (about 40 MB: a key costs about
/// 750 bytes of resident memory, measured in `gateway-sim`). At 300 charges a second that
/// is the last three minutes of keys; the in-process provider is for demos and tests, and
/// forgets everything when its worker restarts anyway. A provider that must remember
/// longer is `gateway-sim`, with its cap and its journal.
pub const IN_PROCESS_MAX_KEYS: usize = 50_000;

pub struct SimulatedGateway {
    provider: Provider,
}

impl SimulatedGateway {
    /// A provider shaped by the `PAYMENT_*` behaviour settings, in memory.
    pub fn new(config: PaymentConfig) -> Self {
        let behaviour = Behaviour {
            latency: Latency::constant(config.latency),
            transient_failure_rate: config.transient_failure_rate,
            lost_response_rate: config.lost_response_rate,
        };
        let retention = Retention {
            window: Duration::from_secs(24 * 3600),
            max_keys: IN_PROCESS_MAX_KEYS,
        };
        Self {
            provider: Provider::new(behaviour, retention),
        }
    }

    /// Distinct charges the provider made (one per idempotency key, however often called).
    pub fn distinct_charges(&self) -> usize {
        self.provider.audit().charges as usize
    }

    /// Refunds the provider made (one per idempotency key).
    pub fn refunded_charges(&self) -> usize {
        self.provider.audit().refunds as usize
    }
}

/// Outages and lost answers may pass; anything else the provider refuses will not.
pub fn gateway_error(error: ProviderError) -> GatewayError {
    match error {
        ProviderError::Unavailable | ProviderError::AnswerLost => {
            GatewayError::Transient(error.to_string())
        }
        _ => GatewayError::Rejected(error.to_string()),
    }
}

/// The pipeline's view of a charge: approved with its id, or declined with the reason.
pub fn outcome(charge: Charge) -> ChargeOutcome {
    match charge.status {
        ChargeStatus::Succeeded => ChargeOutcome::Approved {
            charge_id: charge.id,
        },
        ChargeStatus::Failed => ChargeOutcome::Declined {
            reason: charge.failure_code.unwrap_or_else(|| "declined".into()),
        },
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let create = CreateCharge {
            amount: request.amount_cents,
            currency: request.currency.clone(),
            source: request.token.clone(),
        };
        self.provider
            .charge(&request.idempotency_key, &create)
            .await
            .map(outcome)
            .map_err(gateway_error)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let create = CreateRefund {
            charge: request.charge_id.clone(),
            amount: request.amount_cents,
        };
        self.provider
            .refund(&request.idempotency_key, &create)
            .await
            .map(|refund| refund.id)
            .map_err(gateway_error)
    }

    async fn find_charge(&self, key: &str) -> Result<Option<ChargeOutcome>, GatewayError> {
        self.provider
            .find_charge(key)
            .await
            .map(|charge| charge.map(outcome))
            .map_err(gateway_error)
    }
}
