//! The refund step (`payment.refund`): its arguments, what it reads (the captured
//! payment) and how a refund is written.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{
    prepared_sql, ClaimedTask, DeadTask, KindConfig, Pool, TaskArgs, TaskError, TaskHandler,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::lifecycle::{self, append_event, follow_up, Recorded};
use crate::payment::{self, PaymentGateway, RefundRequest};
use crate::schema::payments;
use crate::status::{EventType, NotificationKind, PaymentStatus};
use crate::steps::charge::gateway_error;
use crate::steps::notify::NotifyArgs;
use crate::tasks::{self, order_task};

/// `payment.refund`: give back an order's captured payment.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RefundArgs {
    pub order_id: Uuid,
}

impl TaskArgs for RefundArgs {
    const KIND: &'static str = "payment.refund";
    fn config() -> KindConfig {
        order_task(Self::KIND, 20, Duration::from_secs(60))
    }
}

/// Records a refund of a captured payment and schedules the cancellation e-mail.
/// `started_at` is when the attempt that refunded took its task.
pub async fn record_refund(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    refund_id: &str,
    started_at: DateTime<Utc>,
) -> QueryResult<Recorded> {
    let refunded = prepared_sql(
        "UPDATE payments SET status = $1, updated_at = now() WHERE order_id = $2 AND status = $3",
    )
    .bind::<Text, _>(PaymentStatus::Refunded.as_str())
    .bind::<SqlUuid, _>(order_id)
    .bind::<Text, _>(PaymentStatus::Captured.as_str())
    .execute(conn)
    .await?;
    if refunded == 0 {
        return Ok(Recorded::AlreadyDone);
    }
    append_event(
        conn,
        order_id,
        EventType::Refunded,
        json!({ "refund_id": refund_id, "started_at": started_at }),
    )
    .await?;
    follow_up(
        conn,
        NotifyArgs {
            order_id,
            notification: NotificationKind::OrderCancelled,
        }
        .to_task(),
    )
    .await?;
    Ok(Recorded::Applied)
}

/// The captured payment of an order, if any: (gateway charge id, amount).
pub async fn captured_payment(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Option<(Option<String>, i64)>> {
    payments::table
        .find(order_id)
        .filter(payments::status.eq(PaymentStatus::Captured.as_str()))
        .select((payments::gateway_charge_id, payments::amount_cents))
        .first(conn)
        .await
        .optional()
}

pub struct RefundPayment {
    pool: Pool,
    gateway: Arc<dyn PaymentGateway>,
}

impl RefundPayment {
    pub fn new(pool: Pool, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { pool, gateway }
    }
}

/// What a refund attempt found out: the gateway's refund id, or nothing to refund.
pub struct Refund {
    order_id: Uuid,
    refund_id: Option<String>,
}

impl TaskHandler for RefundPayment {
    type Args = RefundArgs;
    type Outcome = Refund;
    type Recorded = lifecycle::Recorded;

    #[tracing::instrument(name = "refund_payment", skip_all)]
    async fn perform(
        &self,
        _task: &ClaimedTask,
        RefundArgs { order_id }: RefundArgs,
    ) -> Result<Refund, TaskError> {
        let captured = {
            let mut conn = self.pool.get().await?;
            lifecycle::captured_payment(&mut conn, order_id).await?
        };
        let Some((charge_id, amount_cents)) = captured else {
            // Nothing captured (or already refunded): nothing to give back.
            return Ok(Refund {
                order_id,
                refund_id: None,
            });
        };
        let charge_id = charge_id
            .ok_or_else(|| TaskError::permanent("captured payment without a charge id"))?;
        let refund_id = self
            .gateway
            .refund(&RefundRequest {
                idempotency_key: payment::refund_key(order_id),
                charge_id,
                amount_cents,
            })
            .await
            .map_err(gateway_error)?;
        tracing::info!(%refund_id, "refunded");
        Ok(Refund {
            order_id,
            refund_id: Some(refund_id),
        })
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        refund: &Refund,
    ) -> Result<lifecycle::Recorded, TaskError> {
        let Some(refund_id) = &refund.refund_id else {
            return Ok(lifecycle::Recorded::AlreadyDone);
        };
        let recorded =
            lifecycle::record_refund(conn, refund.order_id, refund_id, task.claimed_at).await?;
        tracing::debug!(?recorded, "refund recorded");
        Ok(recorded)
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
