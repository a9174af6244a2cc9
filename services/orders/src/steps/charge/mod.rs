//! The charge step (`payment.charge`): its arguments and its handler: the order's
//! card is charged with no transaction open, and the answer recorded (`record.rs`) in
//! the transaction that completes the task.

mod record;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use orderflow_queue::{
    record_through_group, ClaimedTask, DeadTask, KindConfig, Pool, Recording, TaskArgs, TaskError,
    TaskHandler,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lifecycle;
use crate::lookup::{BatchedLookup, LookupMany};
use crate::payment::{self, ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway};
use crate::status::{CancelReason, OrderStatus};
use crate::tasks::{self, order_task};

pub use record::{charge_facts, record_charges, ChargeFacts, ChargeToRecord};

/// `payment.charge`: charge a pending order's card.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChargeArgs {
    pub order_id: Uuid,
}

impl TaskArgs for ChargeArgs {
    const KIND: &'static str = "payment.charge";
    fn config() -> KindConfig {
        order_task(Self::KIND, 10, Duration::from_secs(60))
    }
}

pub(crate) fn gateway_error(error: GatewayError) -> TaskError {
    match error {
        GatewayError::Transient(_) => TaskError::retryable(error),
        GatewayError::Rejected(_) => TaskError::permanent(error),
    }
}

pub struct ChargePayment {
    orders: BatchedLookup<OrdersToCharge>,
    gateway: Arc<dyn PaymentGateway>,
}

impl ChargePayment {
    /// Starts the handler's order reads (a task of their own): call it on a runtime.
    pub fn new(pool: Pool, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self {
            orders: BatchedLookup::start(pool, OrdersToCharge),
            gateway,
        }
    }
}

/// The charges of one claim read their orders together.
struct OrdersToCharge;

impl LookupMany for OrdersToCharge {
    type Key = Uuid;
    type Value = ChargeFacts;

    async fn read(
        &self,
        conn: &mut AsyncPgConnection,
        order_ids: &[Uuid],
    ) -> diesel::QueryResult<Vec<(Uuid, ChargeFacts)>> {
        lifecycle::charge_facts(conn, order_ids).await
    }
}

/// What a charge attempt found out.
pub enum Charge {
    /// The order is no longer pending (cancelled, or a duplicate task): nothing to charge.
    NotPending,
    /// The gateway's answer for the order's total.
    Answered {
        order_id: Uuid,
        amount_cents: i64,
        outcome: ChargeOutcome,
    },
}

/// The least lease a charge attempt must have left to call the provider.
const LEASE_LEFT_TO_CHARGE: Duration = Duration::from_millis(100);

impl ChargePayment {
    /// A charge task that finds its order no longer pending. An order its customer
    /// cancelled may still have been charged: an earlier attempt may have reached the
    /// provider and lost the answer (a timeout after the money was taken), and the order
    /// was cancelled before the retry. The provider is asked what it did under the order's
    /// key; a charge it made is recorded as captured too late, which refunds it.
    async fn reconcile(&self, order_id: Uuid, facts: &ChargeFacts) -> Result<Charge, TaskError> {
        let cancelled_by_customer = facts.status == OrderStatus::Cancelled
            && facts.cancel_reason == Some(CancelReason::CustomerRequest);
        if !cancelled_by_customer {
            return Ok(Charge::NotPending);
        }
        let found = self
            .gateway
            .find_charge(&payment::charge_key(order_id))
            .await
            .map_err(gateway_error)?;
        match found {
            Some(outcome @ ChargeOutcome::Approved { .. }) => {
                tracing::warn!("the order was cancelled after the provider charged it; refunding");
                Ok(Charge::Answered {
                    order_id,
                    amount_cents: facts.total_cents,
                    outcome,
                })
            }
            Some(ChargeOutcome::Declined { .. }) | None => Ok(Charge::NotPending),
        }
    }
}

impl TaskHandler for ChargePayment {
    type Args = ChargeArgs;
    type Outcome = Charge;
    type Recorded = lifecycle::Recorded;

    #[tracing::instrument(name = "charge_payment", skip_all)]
    async fn perform(
        &self,
        task: &ClaimedTask,
        ChargeArgs { order_id }: ChargeArgs,
    ) -> Result<Charge, TaskError> {
        let Some(facts) = self.orders.get(order_id).await? else {
            return Err(TaskError::permanent(format!(
                "order {order_id} does not exist"
            )));
        };
        if facts.status != OrderStatus::Pending {
            return self.reconcile(order_id, &facts).await;
        }

        // Past its lease another worker may hold the task and be charging the same order:
        // the idempotency key keeps that to one charge, but a worker that lost its claim
        // has no business calling the provider at all.
        task.ensure_lease(LEASE_LEFT_TO_CHARGE)?;
        let outcome = self
            .gateway
            .charge(&ChargeRequest {
                idempotency_key: payment::charge_key(order_id),
                token: facts.payment_token,
                amount_cents: facts.total_cents,
                currency: facts.currency,
            })
            .await
            .map_err(gateway_error)?;
        tracing::info!(?outcome, "charge answered");
        Ok(Charge::Answered {
            order_id,
            amount_cents: facts.total_cents,
            outcome,
        })
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        charge: &Charge,
    ) -> Result<lifecycle::Recorded, TaskError> {
        record_through_group(self, conn, task, charge).await
    }

    /// The group's answers are recorded set-wise: one statement per table for all of them.
    #[tracing::instrument(name = "record_charges", skip_all, fields(charges = group.len()))]
    async fn record_group(
        &self,
        conn: &mut AsyncPgConnection,
        group: &[Recording<'_, Charge>],
    ) -> Result<Vec<lifecycle::Recorded>, TaskError> {
        let answered: Vec<ChargeToRecord<'_>> = group
            .iter()
            .filter_map(|attempt| match attempt.outcome {
                Charge::Answered {
                    order_id,
                    amount_cents,
                    outcome,
                } => Some(ChargeToRecord {
                    order_id: *order_id,
                    amount_cents: *amount_cents,
                    outcome,
                    correlation_id: attempt.task.correlation_id.as_deref(),
                    started_at: attempt.task.claimed_at,
                }),
                Charge::NotPending => None,
            })
            .collect();
        let mut recorded = lifecycle::record_charges(conn, &answered)
            .await?
            .into_iter();
        // Back in the group's order; an order that was no longer pending recorded nothing.
        group
            .iter()
            .map(|attempt| match attempt.outcome {
                Charge::Answered { .. } => recorded
                    .next()
                    .ok_or_else(|| TaskError::permanent("a charge result is missing")),
                Charge::NotPending => Ok(lifecycle::Recorded::AlreadyDone),
            })
            .collect()
    }

    async fn on_dead(
        &self,
        conn: &mut AsyncPgConnection,
        task: &DeadTask,
    ) -> diesel::QueryResult<()> {
        tasks::record_dead_on_timeline(conn, task).await
    }

    fn span(&self, task: &ClaimedTask) -> tracing::Span {
        tasks::order_span(task)
    }
}
