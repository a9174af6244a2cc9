//! The refund step (`payment.refund`): its arguments, what it reads (the captured
//! payment) and how a refund is written.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::prepared_sql;
use orderflow_queue::{KindConfig, TaskArgs};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

use crate::lifecycle::{append_event, follow_up, Recorded};
use crate::schema::payments;
use crate::status::{EventType, NotificationKind, PaymentStatus};
use crate::tasks;
use crate::tasks::order_task;

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
        tasks::send_notification(order_id, NotificationKind::OrderCancelled),
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
