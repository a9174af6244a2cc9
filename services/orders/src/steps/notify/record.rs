//! How sent and undeliverable e-mails are written, set-wise for a group, and what an
//! e-mail says about its order.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::prepared_sql;
use uuid::Uuid;

use crate::email::OrderMail;
use crate::lifecycle::{column, Recorded};
use crate::status::{CancelReason, EventType, NotificationKind, OrderStatus, PaymentStatus};
use crate::steps::ship::Parcel;
use crate::views::Customer;

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
    let inserted: HashSet<(Uuid, String)> =
        prepared_sql(include_str!("../sql/record_emails_sent.sql"))
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
    prepared_sql(include_str!("../sql/record_emails_undeliverable.sql"))
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
                parcel: row
                    .carrier
                    .zip(row.tracking_number)
                    .map(|(carrier, tracking_number)| Parcel {
                        carrier,
                        tracking_number,
                    }),
            };
            Some(((order_id, kind), (mail, row.already_sent)))
        })
        .collect())
}

/// What each wanted e-mail says about its order, and whether it was sent already.
const NOTIFICATION_FACTS: &str = concat!(
    "SELECT w.n AS wanted, o.customer_email, o.customer_name, o.cancel_reason, \
            p.status AS payment_status, o.total_cents, o.currency, o.created_at, o.access_token, \
            sh.carrier, sh.tracking_number, \
            EXISTS (SELECT 1 FROM sent_emails s WHERE s.order_id = o.id AND s.kind = w.kind) \
                AS already_sent, \
            lines.product_ids, lines.skus, lines.quantities, lines.unit_prices_cents \
     FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS w (order_id, kind, n) \
     JOIN orders o ON o.id = w.order_id \
     LEFT JOIN payments p ON p.order_id = o.id \
     LEFT JOIN shipments sh ON sh.order_id = o.id ",
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
    #[diesel(sql_type = Nullable<Text>)]
    carrier: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    tracking_number: Option<String>,
    #[diesel(sql_type = Bool)]
    already_sent: bool,
    #[diesel(embed)]
    lines: crate::views::LineColumns,
}
