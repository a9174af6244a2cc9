//! The order lifecycle: every transition an order can take, each as the database writes
//! of one transaction (state change, timeline event, follow-up task). The caller opens
//! the transaction; a worker begins it with its task's fenced completion.
//!
//! ```text
//! place_order        -> pending,  task payment.charge
//! record_charges     -> paid,     task inventory.reserve
//!                    -> cancelled (payment_declined), task notification.send(order_cancelled)
//! reserve_orders     -> reserved, task shipping.book
//!                    -> cancelled (out_of_stock), task payment.refund
//! record_shipments   -> (reserved) shipped event, task notification.send(order_confirmed)
//! record_refund      -> payment refunded, task notification.send(order_cancelled)
//! record_emails_sent -> fulfilled (order_confirmed) | notified (order_cancelled)
//! record_emails_undeliverable -> the same, with a notification_failed event
//! cancel_by_customer pending -> cancelled (customer_request), task notification.send(order_cancelled)
//!                    paid    -> cancelled (customer_request), task payment.refund
//! ```
//! A transition is taken only from the state it expects, so a late or duplicate task
//! finds the order already moved and changes nothing.
//!
//! Each step's own writes, reads and task arguments live in [`crate::steps`] (one module
//! per step, long statements in `steps/sql/`); this module keeps the table above, the
//! writes the steps share, and re-exports the steps' entry points.

use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{enqueue, prepared_sql, NewTask};
use serde_json::json;
use uuid::Uuid;

use crate::schema::{order_events, orders};
use crate::status::{CancelReason, EventType, OrderStatus};

pub use crate::place::{place_order, place_orders, NewOrder, NewOrderLine, PlaceError, Placed};
pub use crate::steps::cancel::{cancel_by_customer, Cancellation};
pub use crate::steps::charge::{charge_facts, record_charges, ChargeFacts, ChargeToRecord};
pub use crate::steps::notify::{
    notification_facts, record_emails_sent, record_emails_undeliverable, SentEmail,
    UndeliverableEmail,
};
pub use crate::steps::refund::{captured_payment, record_refund};
pub use crate::steps::reserve::{reserve_orders, Reservation, ToReserve};
pub use crate::steps::ship::{record_shipments, Shipment};

/// Moves the order from `from` to `to`; false (and nothing written) when it was not in
/// `from`. The row lock taken here orders concurrent transitions of one order.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    from: OrderStatus,
    to: OrderStatus,
    cancel_reason: Option<CancelReason>,
) -> QueryResult<bool> {
    // Hand-written: diesel never keeps a query-builder `UPDATE` prepared (see
    // `orderflow_queue::prepared_sql`).
    let updated = prepared_sql(
        "UPDATE orders SET status = $1, cancel_reason = $2, updated_at = now() \
         WHERE id = $3 AND status = $4",
    )
    .bind::<Text, _>(to.as_str())
    .bind::<Nullable<Text>, _>(cancel_reason.map(CancelReason::as_str))
    .bind::<SqlUuid, _>(order_id)
    .bind::<Text, _>(from.as_str())
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

pub async fn append_event(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    event: EventType,
    details: serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(order_events::table)
        .values((
            order_events::order_id.eq(order_id),
            order_events::event_type.eq(event.as_str()),
            order_events::details.eq(details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn follow_up(conn: &mut AsyncPgConnection, task: NewTask) -> QueryResult<()> {
    enqueue(conn, &task).await.map(drop)
}

/// The state of the order when a step's outcome is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The transition was taken.
    Applied,
    /// The order had already moved on (duplicate or late task): nothing written.
    AlreadyDone,
}

/// One column of a set-wise write, to bind as an array.
pub(crate) fn column<'a, R, T>(rows: &'a [R], field: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
}

/// Makes a dead task visible on its order's timeline.
pub async fn record_task_dead(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    task: &orderflow_queue::DeadTask,
) -> QueryResult<()> {
    let exists: bool = diesel::select(diesel::dsl::exists(orders::table.find(order_id)))
        .get_result(conn)
        .await?;
    if !exists {
        return Ok(());
    }
    append_event(
        conn,
        order_id,
        EventType::TaskDead,
        json!({
            "task_id": task.id,
            "task_kind": task.kind,
            "attempts": task.attempts,
            "error": task.last_error,
        }),
    )
    .await
}
