//! How the provider's answers to a group of charges are written, and what the charge
//! step reads about its orders.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{prepared_sql, TaskArgs};
use uuid::Uuid;

use crate::lifecycle::{column, Recorded};
use crate::payment::ChargeOutcome;
use crate::schema::orders;
use crate::status::{CancelReason, EventType, NotificationKind, OrderStatus, PaymentStatus};
use crate::steps::notify::NotifyArgs;
use crate::steps::refund::RefundArgs;
use crate::steps::reserve::ReserveArgs;

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
                follow_ups.push(
                    ReserveArgs {
                        order_id: charge.order_id,
                    }
                    .to_task()
                    .caused_by(cause),
                );
            }
            // Captured, but the order had left `pending` (its customer cancelled while
            // the card was charged): the money goes back.
            Some(ChargeWritten::CapturedTooLate) => {
                follow_ups.push(
                    RefundArgs {
                        order_id: charge.order_id,
                    }
                    .to_task()
                    .caused_by(cause),
                );
            }
            _ => {}
        }
    }
    for (charge, _) in &declined {
        if outcomes.get(&charge.order_id) == Some(&ChargeWritten::Declined) {
            let cause = charge.correlation_id.map(str::to_string);
            let e_mail = NotifyArgs {
                order_id: charge.order_id,
                notification: NotificationKind::OrderCancelled,
            }
            .to_task();
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
    let written: Vec<ChargeWrittenRow> = prepared_sql(include_str!("../sql/record_charges.sql"))
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
