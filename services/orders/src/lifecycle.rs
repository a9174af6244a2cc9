//! The order lifecycle: every transition an order can take, each as the database writes
//! of one transaction (state change, timeline event, follow-up task). The caller opens
//! the transaction; a worker begins it with its task's fenced completion.
//!
//! ```text
//! place_order        -> pending,  task payment.charge
//! record_charges     -> paid,     task inventory.reserve
//!                    -> cancelled (payment_declined), task notification.send(order_cancelled)
//! reserve_orders     -> reserved, task notification.send(order_confirmed)
//!                    -> cancelled (out_of_stock), task payment.refund
//! record_refund      -> payment refunded, task notification.send(order_cancelled)
//! record_emails_sent -> fulfilled (order_confirmed) | notified (order_cancelled)
//! record_emails_undeliverable -> the same, with a notification_failed event
//! cancel_by_customer pending -> cancelled (customer_request), task notification.send(order_cancelled)
//!                    paid    -> cancelled (customer_request), task payment.refund
//! ```
//! A transition is taken only from the state it expects, so a late or duplicate task
//! finds the order already moved and changes nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{enqueue, prepared_sql, NewTask};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use crate::email::OrderMail;
use crate::payment::ChargeOutcome;
use crate::schema::{order_events, order_items, orders, payments, products};
use crate::status::{CancelReason, EventType, NotificationKind, OrderStatus, PaymentStatus};
use crate::tasks;
use crate::views::Customer;

pub use crate::place::{place_order, NewOrder, NewOrderLine, PlaceError, Placed};

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

async fn follow_up(conn: &mut AsyncPgConnection, task: NewTask) -> QueryResult<()> {
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

/// A gateway's answer to the charge of a pending order, to record ([`record_charges`]).
#[derive(Debug, Clone, Copy)]
pub struct ChargeToRecord<'a> {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub outcome: &'a ChargeOutcome,
    /// Carried by the follow-up task.
    pub correlation_id: Option<&'a str>,
    /// When the attempt that charged took its task: the step's start on the timeline.
    pub started_at: DateTime<Utc>,
}

/// Records the gateway's answers to the charges of pending orders, set-wise (two
/// statements for the whole group: the writes, then the follow-up tasks); one result per
/// charge, in order.
///
/// - Approved: the captured payment is inserted once per order (a duplicate task finds it
///   and does nothing); the order moves `pending → paid` and the reservation is queued. An
///   order that left `pending` while its card was charged (its customer cancelled) gets a
///   refund instead: the money must go back.
/// - Declined: the order moves `pending → cancelled` (payment_declined), the declined
///   payment is kept and the cancellation e-mail is queued; an order no longer pending is
///   left alone.
pub async fn record_charges(
    conn: &mut AsyncPgConnection,
    charges: &[ChargeToRecord<'_>],
) -> QueryResult<Vec<Recorded>> {
    // An order twice in one group (a duplicate task) is recorded by its first charge.
    let mut seen = HashSet::new();
    let first: Vec<bool> = charges.iter().map(|c| seen.insert(c.order_id)).collect();
    let approved: Vec<(&ChargeToRecord<'_>, &str)> = charges
        .iter()
        .zip(&first)
        .filter_map(|(charge, first)| match charge.outcome {
            ChargeOutcome::Approved { charge_id } if *first => Some((charge, charge_id.as_str())),
            _ => None,
        })
        .collect();
    let declined: Vec<(&ChargeToRecord<'_>, &str)> = charges
        .iter()
        .zip(&first)
        .filter_map(|(charge, first)| match charge.outcome {
            ChargeOutcome::Declined { reason } if *first => Some((charge, reason.as_str())),
            _ => None,
        })
        .collect();

    let outcomes = write_charge_outcomes(conn, &approved, &declined).await?;
    let mut follow_ups = Vec::new();
    for (charge, _) in &approved {
        let cause = charge.correlation_id.map(str::to_string);
        match outcomes.get(&charge.order_id) {
            Some(ChargeWritten::Paid) => {
                follow_ups.push(tasks::reserve_inventory(charge.order_id).caused_by(cause));
            }
            // Captured, but the order had left `pending` (its customer cancelled while
            // the card was charged): the money goes back.
            Some(ChargeWritten::CapturedTooLate) => {
                follow_ups.push(tasks::refund_payment(charge.order_id).caused_by(cause));
            }
            _ => {}
        }
    }
    for (charge, _) in &declined {
        if outcomes.get(&charge.order_id) == Some(&ChargeWritten::Declined) {
            let cause = charge.correlation_id.map(str::to_string);
            let e_mail =
                tasks::send_notification(charge.order_id, NotificationKind::OrderCancelled);
            follow_ups.push(e_mail.caused_by(cause));
        }
    }
    orderflow_queue::enqueue_all(conn, &follow_ups).await?;
    let applied = |charge: &ChargeToRecord<'_>| {
        let outcome = outcomes.get(&charge.order_id);
        match charge.outcome {
            ChargeOutcome::Approved { .. } => matches!(
                outcome,
                Some(ChargeWritten::Paid | ChargeWritten::CapturedTooLate)
            ),
            ChargeOutcome::Declined { .. } => outcome == Some(&ChargeWritten::Declined),
        }
    };

    Ok(charges
        .iter()
        .zip(&first)
        .map(|(charge, first)| {
            if *first && applied(charge) {
                Recorded::Applied
            } else {
                Recorded::AlreadyDone
            }
        })
        .collect())
}

/// What [`write_charge_outcomes`] did to an order, as its statement names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChargeWritten {
    /// Payment captured, `pending → paid`, `paid` event.
    Paid,
    /// Payment captured, but the order was no longer pending.
    CapturedTooLate,
    /// `pending → cancelled`, the declined payment, `cancelled` event.
    Declined,
}

impl ChargeWritten {
    fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::CapturedTooLate => "captured_too_late",
            Self::Declined => "declined",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Paid, Self::CapturedTooLate, Self::Declined]
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
    }
}

#[derive(QueryableByName)]
struct ChargeWrittenRow {
    #[diesel(sql_type = SqlUuid)]
    order_id: Uuid,
    #[diesel(sql_type = Text)]
    outcome: String,
}

/// Writes the gateway's answers in one statement, and returns what each order got
/// ([`ChargeWritten`]). An order missing from the answer had its
/// payment already (a duplicate task) or, declined, was no longer pending: nothing was
/// written for it. Orders are updated by key (`= ANY`), a plan that needs no statistics.
async fn write_charge_outcomes(
    conn: &mut AsyncPgConnection,
    approved: &[(&ChargeToRecord<'_>, &str)],
    declined: &[(&ChargeToRecord<'_>, &str)],
) -> QueryResult<HashMap<Uuid, ChargeWritten>> {
    if approved.is_empty() && declined.is_empty() {
        return Ok(HashMap::new());
    }
    let written: Vec<ChargeWrittenRow> = prepared_sql(
        "WITH approved AS ( \
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[]) \
                 AS a(order_id, amount_cents, charge_id, started_at)), \
         declined AS ( \
             SELECT * FROM unnest($5::uuid[], $6::int8[], $7::text[], $8::timestamptz[]) \
                 AS d(order_id, amount_cents, reason, started_at)), \
         captured AS ( \
             INSERT INTO payments (order_id, status, amount_cents, gateway_charge_id) \
             SELECT order_id, $9, amount_cents, charge_id FROM approved \
             ON CONFLICT DO NOTHING \
             RETURNING order_id, amount_cents), \
         paid AS ( \
             UPDATE orders SET status = $10, updated_at = now() \
             WHERE id = ANY (ARRAY(SELECT order_id FROM captured)) AND status = $11 \
             RETURNING id), \
         cancelled AS ( \
             UPDATE orders SET status = $12, cancel_reason = $13, updated_at = now() \
             WHERE id = ANY (ARRAY(SELECT order_id FROM declined)) AND status = $11 \
             RETURNING id), \
         declines AS ( \
             INSERT INTO payments (order_id, status, amount_cents, decline_reason) \
             SELECT d.order_id, $14, d.amount_cents, d.reason \
             FROM declined d JOIN cancelled c ON c.id = d.order_id \
             ON CONFLICT DO NOTHING), \
         events AS ( \
             INSERT INTO order_events (order_id, type, details) \
             SELECT c.order_id, $15, \
                    jsonb_build_object('amount_cents', c.amount_cents, 'started_at', a.started_at) \
             FROM captured c JOIN paid p ON p.id = c.order_id \
                  JOIN approved a ON a.order_id = c.order_id \
             UNION ALL \
             SELECT d.order_id, $16, jsonb_build_object('reason', $13::text, \
                    'decline_reason', d.reason, 'started_at', d.started_at) \
             FROM declined d JOIN cancelled c ON c.id = d.order_id) \
         SELECT c.order_id, CASE WHEN p.id IS NULL THEN $17 ELSE $18 END AS outcome \
         FROM captured c LEFT JOIN paid p ON p.id = c.order_id \
         UNION ALL \
         SELECT id, $19 FROM cancelled",
    )
    .bind::<Array<SqlUuid>, _>(column(approved, |(c, _)| c.order_id))
    .bind::<Array<BigInt>, _>(column(approved, |(c, _)| c.amount_cents))
    .bind::<Array<Text>, _>(column(approved, |(_, charge_id)| *charge_id))
    .bind::<Array<Timestamptz>, _>(column(approved, |(c, _)| c.started_at))
    .bind::<Array<SqlUuid>, _>(column(declined, |(c, _)| c.order_id))
    .bind::<Array<BigInt>, _>(column(declined, |(c, _)| c.amount_cents))
    .bind::<Array<Text>, _>(column(declined, |(_, reason)| *reason))
    .bind::<Array<Timestamptz>, _>(column(declined, |(c, _)| c.started_at))
    .bind::<Text, _>(PaymentStatus::Captured.as_str())
    .bind::<Text, _>(OrderStatus::Paid.as_str())
    .bind::<Text, _>(OrderStatus::Pending.as_str())
    .bind::<Text, _>(OrderStatus::Cancelled.as_str())
    .bind::<Text, _>(CancelReason::PaymentDeclined.as_str())
    .bind::<Text, _>(PaymentStatus::Declined.as_str())
    .bind::<Text, _>(EventType::Paid.as_str())
    .bind::<Text, _>(EventType::Cancelled.as_str())
    .bind::<Text, _>(ChargeWritten::CapturedTooLate.as_str())
    .bind::<Text, _>(ChargeWritten::Paid.as_str())
    .bind::<Text, _>(ChargeWritten::Declined.as_str())
    .load(conn)
    .await?;
    written
        .into_iter()
        .map(|row| {
            ChargeWritten::parse(&row.outcome)
                .map(|outcome| (row.order_id, outcome))
                .ok_or_else(|| {
                    diesel::result::Error::DeserializationError(
                        format!("unexpected charge outcome {:?}", row.outcome).into(),
                    )
                })
        })
        .collect()
}

/// Locks the order's row, so that the steps of one order run one after the other, and
/// returns its status (`None`: no such order). `FOR NO KEY UPDATE`, like a plain `UPDATE`
/// of the row, does not block the foreign-key checks of other writes.
async fn lock_order_status(
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
        tasks::refund_payment(order_id)
    } else {
        tasks::send_notification(order_id, NotificationKind::OrderCancelled)
    };
    follow_up(conn, next).await?;
    Ok(Cancellation::Cancelled { refunding })
}

/// What reserving an order's stock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// No stock was taken; these products had less than the order needs.
    OutOfStock {
        short_product_ids: Vec<Uuid>,
    },
    /// The order was not `paid` (duplicate or late task).
    NotApplicable,
}

/// An order whose stock a worker reserves, with the correlation id its follow-up task
/// carries.
#[derive(Debug, Clone, Copy)]
pub struct ToReserve<'a> {
    pub order_id: Uuid,
    pub correlation_id: Option<&'a str>,
    /// When the attempt that reserves took its task: the step's start on the timeline.
    pub started_at: DateTime<Utc>,
}

/// Reserves the stock of several orders in one transaction: for each paid order, all of its
/// lines or none, decided in the given order against the stock left by the orders before
/// it. A few statements serve the whole group, whatever its size:
///
/// 1. read the orders' lines (they never change, so no lock is needed);
/// 2. lock the products of every order, in id order, so that two reserving transactions
///    never deadlock; `FOR NO KEY UPDATE` (not `FOR UPDATE`) leaves the foreign-key checks
///    of concurrent order inserts unblocked;
/// 3. lock the orders, in id order, and read their status: an order cancelled meanwhile is
///    left alone, and a cancellation waits until this transaction ends;
/// 4. decide in memory, then write the stock, the transitions, the timeline events and
///    the follow-up tasks set-wise.
///
/// Stock is checked under the lock, so reservations never oversell.
pub async fn reserve_orders(
    conn: &mut AsyncPgConnection,
    orders_to_reserve: &[ToReserve<'_>],
) -> QueryResult<Vec<Reservation>> {
    let order_ids: Vec<Uuid> = orders_to_reserve.iter().map(|o| o.order_id).collect();
    // Lines never change once placed: they are read before anything is locked.
    let mut lines: HashMap<Uuid, Vec<(Uuid, i32)>> = HashMap::new();
    for (order_id, product_id, quantity) in order_items::table
        .filter(order_items::order_id.eq_any(&order_ids))
        .select((
            order_items::order_id,
            order_items::product_id,
            order_items::quantity,
        ))
        .load::<(Uuid, Uuid, i32)>(conn)
        .await?
    {
        lines
            .entry(order_id)
            .or_default()
            .push((product_id, quantity));
    }
    let mut product_ids: Vec<Uuid> = lines.values().flatten().map(|(id, _)| *id).collect();
    product_ids.sort_unstable();
    product_ids.dedup();
    // By primary key, so the planner reads just these rows (a subquery over the lines had
    // it scan the whole catalog).
    let mut stock: HashMap<Uuid, i32> = products::table
        .filter(products::id.eq_any(&product_ids))
        .order(products::id)
        .select((products::id, products::stock))
        .for_no_key_update()
        .load::<(Uuid, i32)>(conn)
        .await?
        .into_iter()
        .collect();
    let mut statuses: HashMap<Uuid, OrderStatus> = orders::table
        .filter(orders::id.eq_any(&order_ids))
        .order(orders::id)
        .select((orders::id, orders::status))
        .for_no_key_update()
        .load::<(Uuid, OrderStatus)>(conn)
        .await?
        .into_iter()
        .collect();

    let mut writes = ReservationWrites::default();
    let mut reservations = Vec::with_capacity(orders_to_reserve.len());
    for order in orders_to_reserve {
        let status = statuses.get_mut(&order.order_id);
        let Some(status) = status.filter(|status| **status == OrderStatus::Paid) else {
            reservations.push(Reservation::NotApplicable);
            continue;
        };
        let wanted = lines
            .get(&order.order_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut short_product_ids: Vec<Uuid> = wanted
            .iter()
            .filter(|(product, quantity)| stock.get(product).copied().unwrap_or(0) < *quantity)
            .map(|(product, _)| *product)
            .collect();
        short_product_ids.sort_unstable();
        let correlation = order.correlation_id.map(str::to_string);
        if short_product_ids.is_empty() {
            for (product, quantity) in wanted {
                *stock.entry(*product).or_default() -= quantity;
                *writes.taken.entry(*product).or_default() += quantity;
            }
            *status = OrderStatus::Reserved;
            writes.reserved.push(order.order_id);
            writes.events.push((
                order.order_id,
                EventType::Reserved,
                json!({ "started_at": order.started_at }),
            ));
            writes.follow_ups.push(
                tasks::send_notification(order.order_id, NotificationKind::OrderConfirmed)
                    .caused_by(correlation),
            );
            reservations.push(Reservation::Reserved);
        } else {
            *status = OrderStatus::Cancelled;
            writes.out_of_stock.push(order.order_id);
            writes.events.push((
                order.order_id,
                EventType::Cancelled,
                json!({
                    "reason": CancelReason::OutOfStock,
                    "short_product_ids": short_product_ids,
                    "started_at": order.started_at,
                }),
            ));
            writes
                .follow_ups
                .push(tasks::refund_payment(order.order_id).caused_by(correlation));
            reservations.push(Reservation::OutOfStock { short_product_ids });
        }
    }
    writes.apply(conn).await?;
    Ok(reservations)
}

/// What a group of reservations writes, gathered so that each table is written once.
#[derive(Default)]
struct ReservationWrites {
    /// Units taken per product.
    taken: HashMap<Uuid, i32>,
    reserved: Vec<Uuid>,
    out_of_stock: Vec<Uuid>,
    events: Vec<(Uuid, EventType, serde_json::Value)>,
    follow_ups: Vec<NewTask>,
}

impl ReservationWrites {
    /// Two statements: the stock, the transitions and the timeline events in one (the
    /// orders are locked and their statuses checked already), then the follow-up tasks.
    async fn apply(self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let (product_ids, units): (Vec<Uuid>, Vec<i32>) = self.taken.into_iter().unzip();
        prepared_sql(
            "WITH taken AS ( \
                 UPDATE products AS p SET stock = p.stock - taken.units, updated_at = now() \
                 FROM unnest($1::uuid[], $2::int4[]) AS taken(id, units) \
                 WHERE p.id = taken.id), \
             reserved AS ( \
                 UPDATE orders SET status = $3, updated_at = now() \
                 WHERE id = ANY ($4::uuid[]) AND status = $5), \
             out_of_stock AS ( \
                 UPDATE orders SET status = $6, cancel_reason = $7, updated_at = now() \
                 WHERE id = ANY ($8::uuid[]) AND status = $5) \
             INSERT INTO order_events (order_id, type, details) \
             SELECT * FROM unnest($9::uuid[], $10::text[], $11::jsonb[])",
        )
        .bind::<Array<SqlUuid>, _>(product_ids)
        .bind::<Array<diesel::sql_types::Int4>, _>(units)
        .bind::<Text, _>(OrderStatus::Reserved.as_str())
        .bind::<Array<SqlUuid>, _>(self.reserved)
        .bind::<Text, _>(OrderStatus::Paid.as_str())
        .bind::<Text, _>(OrderStatus::Cancelled.as_str())
        .bind::<Text, _>(CancelReason::OutOfStock.as_str())
        .bind::<Array<SqlUuid>, _>(self.out_of_stock)
        .bind::<Array<SqlUuid>, _>(column(&self.events, |(order_id, _, _)| *order_id))
        .bind::<Array<Text>, _>(column(&self.events, |(_, event, _)| event.as_str()))
        .bind::<Array<Jsonb>, _>(column(&self.events, |(_, _, details)| details))
        .execute(conn)
        .await?;
        orderflow_queue::enqueue_all(conn, &self.follow_ups).await?;
        Ok(())
    }
}

/// One column of a set-wise write, to bind as an array.
fn column<'a, R, T>(rows: &'a [R], field: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(field).collect()
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

/// A sent e-mail to record ([`record_emails_sent`]).
#[derive(Debug, Clone, Copy)]
pub struct SentEmail<'a> {
    pub order_id: Uuid,
    pub kind: NotificationKind,
    pub message_id: &'a str,
    pub recipient: &'a str,
    /// When the attempt that sent it took its task: the step's start on the timeline.
    pub started_at: DateTime<Utc>,
}

/// Records sent e-mails, set-wise in one statement; one result per e-mail, in order. Each
/// e-mail is recorded once per order and kind (a resend after a crash finds it and does
/// nothing); the confirmation fulfils its order, and every recorded e-mail appends an
/// event (`fulfilled`, or `notified` when the order had moved on).
pub async fn record_emails_sent(
    conn: &mut AsyncPgConnection,
    emails: &[SentEmail<'_>],
) -> QueryResult<Vec<Recorded>> {
    #[derive(QueryableByName)]
    struct SentRow {
        #[diesel(sql_type = SqlUuid)]
        order_id: Uuid,
        #[diesel(sql_type = Text)]
        kind: String,
    }
    if emails.is_empty() {
        return Ok(Vec::new());
    }
    // One statement, so one round trip, whatever the group's size. `ON CONFLICT DO
    // NOTHING` also drops the second copy of an e-mail listed twice; the orders are
    // updated by key (`= ANY`), a plan that needs no statistics.
    let inserted: HashSet<(Uuid, String)> = prepared_sql(
        "WITH listed AS ( \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], \
                                  $5::timestamptz[]) \
                 AS l(order_id, kind, message_id, recipient, started_at)), \
         sent AS ( \
             INSERT INTO sent_emails (order_id, kind, message_id, recipient) \
             SELECT order_id, kind, message_id, recipient FROM listed \
             ON CONFLICT DO NOTHING \
             RETURNING order_id, kind, message_id), \
         fulfilled AS ( \
             UPDATE orders SET status = $6, updated_at = now() \
             WHERE id = ANY (ARRAY(SELECT order_id FROM sent WHERE kind = $7)) AND status = $8 \
             RETURNING id), \
         events AS ( \
             INSERT INTO order_events (order_id, type, details) \
             SELECT sent.order_id, CASE WHEN fulfilled.id IS NULL THEN $9 ELSE $10 END, \
                    jsonb_build_object('notification', sent.kind, 'message_id', sent.message_id, \
                        'started_at', (SELECT min(l.started_at) FROM listed l \
                                       WHERE l.order_id = sent.order_id AND l.kind = sent.kind)) \
             FROM sent LEFT JOIN fulfilled ON fulfilled.id = sent.order_id AND sent.kind = $7) \
         SELECT order_id, kind FROM sent",
    )
    .bind::<Array<SqlUuid>, _>(column(emails, |e| e.order_id))
    .bind::<Array<Text>, _>(column(emails, |e| e.kind.as_str()))
    .bind::<Array<Text>, _>(column(emails, |e| e.message_id))
    .bind::<Array<Text>, _>(column(emails, |e| e.recipient))
    .bind::<Array<Timestamptz>, _>(column(emails, |e| e.started_at))
    .bind::<Text, _>(OrderStatus::Fulfilled.as_str())
    .bind::<Text, _>(NotificationKind::OrderConfirmed.as_str())
    .bind::<Text, _>(OrderStatus::Reserved.as_str())
    .bind::<Text, _>(EventType::Notified.as_str())
    .bind::<Text, _>(EventType::Fulfilled.as_str())
    .load::<SentRow>(conn)
    .await?
    .into_iter()
    .map(|row| (row.order_id, row.kind))
    .collect();
    // An e-mail listed twice in one group is recorded by its first copy.
    let mut recorded_once = HashSet::new();
    Ok(emails
        .iter()
        .map(|email| {
            let key = (email.order_id, email.kind.as_str().to_string());
            if inserted.contains(&key) && recorded_once.insert(key) {
                Recorded::Applied
            } else {
                Recorded::AlreadyDone
            }
        })
        .collect())
}

/// An e-mail that can never be delivered (its address or the message refused for good),
/// to record ([`record_emails_undeliverable`]).
#[derive(Debug, Clone, Copy)]
pub struct UndeliverableEmail<'a> {
    pub order_id: Uuid,
    pub kind: NotificationKind,
    pub error: &'a str,
    /// When the attempt that tried it took its task: the step's start on the timeline.
    pub started_at: DateTime<Utc>,
}

/// Records e-mails that can never be delivered, set-wise in one statement: the failure
/// goes on the order's timeline (`notification_failed`, with the error), where operators
/// see it, and the order still reaches its terminal status: a reserved order waiting for
/// its confirmation is fulfilled (with its `fulfilled` event), a cancelled one stays
/// cancelled. An undeliverable address must not keep an order from finishing.
pub async fn record_emails_undeliverable(
    conn: &mut AsyncPgConnection,
    failures: &[UndeliverableEmail<'_>],
) -> QueryResult<Vec<Recorded>> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    prepared_sql(
        "WITH failed AS ( \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) \
                 AS f(order_id, kind, error, started_at)), \
         fulfilled AS ( \
             UPDATE orders SET status = $5, updated_at = now() \
             WHERE id = ANY (ARRAY(SELECT order_id FROM failed WHERE kind = $6)) AND status = $7 \
             RETURNING id) \
         INSERT INTO order_events (order_id, type, details) \
         SELECT order_id, $8, \
                jsonb_build_object('notification', kind, 'error', error, 'started_at', started_at) \
         FROM failed \
         UNION ALL \
         SELECT id, $9, jsonb_build_object('notification', $6::text, 'delivered', false) \
         FROM fulfilled",
    )
    .bind::<Array<SqlUuid>, _>(column(failures, |f| f.order_id))
    .bind::<Array<Text>, _>(column(failures, |f| f.kind.as_str()))
    .bind::<Array<Text>, _>(column(failures, |f| f.error))
    .bind::<Array<Timestamptz>, _>(column(failures, |f| f.started_at))
    .bind::<Text, _>(OrderStatus::Fulfilled.as_str())
    .bind::<Text, _>(NotificationKind::OrderConfirmed.as_str())
    .bind::<Text, _>(OrderStatus::Reserved.as_str())
    .bind::<Text, _>(EventType::NotificationFailed.as_str())
    .bind::<Text, _>(EventType::Fulfilled.as_str())
    .execute(conn)
    .await?;
    for failure in failures {
        tracing::warn!(order_id = %failure.order_id, kind = %failure.kind, error = failure.error, "e-mail undeliverable; recorded on the order's timeline");
    }
    metrics::counter!("orderflow_notifications_undeliverable_total")
        .increment(failures.len() as u64);
    Ok(vec![Recorded::Applied; failures.len()])
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

/// What the payment step needs to know about an order.
#[derive(Debug, Clone, Queryable)]
pub struct ChargeFacts {
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub total_cents: i64,
    pub currency: String,
    pub payment_token: String,
}

/// What the payment step needs to know about each of `order_ids` that exists: one read by
/// key for all of them (see [`crate::lookup`]).
pub async fn charge_facts(
    conn: &mut AsyncPgConnection,
    order_ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, ChargeFacts)>> {
    orders::table
        .filter(orders::id.eq_any(order_ids))
        .select((
            orders::id,
            (
                orders::status,
                orders::cancel_reason,
                orders::total_cents,
                orders::currency,
                orders::payment_token,
            ),
        ))
        .load(conn)
        .await
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

/// What the notification step needs about each wanted e-mail (order and kind) whose order
/// exists: the e-mail's facts about the order, and whether this e-mail was already sent
/// and recorded (then it must not be sent again). One statement for all of them (see
/// [`crate::lookup`]).
pub async fn notification_facts(
    conn: &mut AsyncPgConnection,
    wanted: &[(Uuid, NotificationKind)],
) -> QueryResult<Vec<((Uuid, NotificationKind), (OrderMail, bool))>> {
    let rows: Vec<NotificationFacts> = prepared_sql(NOTIFICATION_FACTS)
        .bind::<Array<SqlUuid>, _>(column(wanted, |(order_id, _)| *order_id))
        .bind::<Array<Text>, _>(column(wanted, |(_, kind)| kind.as_str()))
        .load(conn)
        .await?;
    // Each row names its e-mail by its place in `wanted` (1-based).
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let (order_id, kind) = *wanted.get(usize::try_from(row.wanted - 1).ok()?)?;
            let mail = OrderMail {
                order_id,
                customer: Customer {
                    email: row.customer_email,
                    name: row.customer_name,
                },
                cancel_reason: row.cancel_reason,
                refunded: row.payment_status == Some(PaymentStatus::Refunded),
                items: row.lines.into_items(),
                total_cents: row.total_cents,
                currency: row.currency,
                created_at: row.created_at,
                access_token: row.access_token,
            };
            Some(((order_id, kind), (mail, row.already_sent)))
        })
        .collect())
}

/// What each wanted e-mail says about its order, and whether it was sent already.
const NOTIFICATION_FACTS: &str = concat!(
    "SELECT w.n AS wanted, o.customer_email, o.customer_name, o.cancel_reason, \
            p.status AS payment_status, o.total_cents, o.currency, o.created_at, o.access_token, \
            EXISTS (SELECT 1 FROM sent_emails s WHERE s.order_id = o.id AND s.kind = w.kind) \
                AS already_sent, \
            lines.product_ids, lines.skus, lines.quantities, lines.unit_prices_cents \
     FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS w (order_id, kind, n) \
     JOIN orders o ON o.id = w.order_id \
     LEFT JOIN payments p ON p.order_id = o.id ",
    crate::views::order_lines_lateral!()
);

#[derive(QueryableByName)]
struct NotificationFacts {
    #[diesel(sql_type = BigInt)]
    wanted: i64,
    #[diesel(sql_type = Text)]
    customer_email: String,
    #[diesel(sql_type = Text)]
    customer_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    cancel_reason: Option<CancelReason>,
    #[diesel(sql_type = Nullable<Text>)]
    payment_status: Option<PaymentStatus>,
    #[diesel(sql_type = BigInt)]
    total_cents: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Text)]
    access_token: String,
    #[diesel(sql_type = Bool)]
    already_sent: bool,
    #[diesel(embed)]
    lines: crate::views::LineColumns,
}
