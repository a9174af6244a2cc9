//! A customer's cancellation, the one step a person takes rather than a worker.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::TaskArgs;
use serde_json::json;
use uuid::Uuid;

use crate::lifecycle::{append_event, follow_up, transition};
use crate::schema::orders;
use crate::status::{CancelReason, EventType, NotificationKind, OrderStatus};
use crate::steps::notify::NotifyArgs;
use crate::steps::refund::RefundArgs;

/// Locks the order's row, so that the steps of one order run one after the other, and
/// returns its status (`None`: no such order). `FOR NO KEY UPDATE`, like a plain `UPDATE`
/// of the row, does not block the foreign-key checks of other writes.
pub(crate) async fn lock_order_status(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Option<OrderStatus>> {
    orders::table
        .find(order_id)
        .select(orders::status)
        .for_no_key_update()
        .first(conn)
        .await
        .optional()
}

/// What a customer's cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// Cancelled; `refunding` when the order was paid and a refund is on its way.
    Cancelled {
        refunding: bool,
    },
    /// Reserved or terminal: too late to cancel.
    TooLate {
        status: OrderStatus,
    },
    NotFound,
}

/// Cancels an order at its customer's request while it is `pending` or `paid`.
///
/// The order row is locked first, so the cancellation and a concurrent step of the
/// pipeline are ordered: a reservation that committed first makes this `TooLate`; one
/// that comes after finds the order cancelled and takes nothing. A charge in flight
/// when a pending order is cancelled is refunded when it is recorded ([`record_charges`]).
pub async fn cancel_by_customer(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Cancellation> {
    let status = lock_order_status(conn, order_id).await?;
    let Some(status) = status else {
        return Ok(Cancellation::NotFound);
    };
    let from = match status {
        OrderStatus::Pending | OrderStatus::Paid => status,
        _ => return Ok(Cancellation::TooLate { status }),
    };
    let reason = CancelReason::CustomerRequest;
    transition(conn, order_id, from, OrderStatus::Cancelled, Some(reason)).await?;
    append_event(
        conn,
        order_id,
        EventType::Cancelled,
        json!({ "reason": reason }),
    )
    .await?;
    let refunding = from == OrderStatus::Paid;
    let next = if refunding {
        // The refund sends the cancellation e-mail once the money is back.
        RefundArgs { order_id }.to_task()
    } else {
        NotifyArgs {
            order_id,
            notification: NotificationKind::OrderCancelled,
        }
        .to_task()
    };
    follow_up(conn, next).await?;
    Ok(Cancellation::Cancelled { refunding })
}
