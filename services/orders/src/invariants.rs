//! The invariants of the spec, checked against a database after a run (by the tests, and
//! by `order-api check-invariants` after a load test). Every violation is listed, so one
//! run shows all of them.

use std::collections::{HashMap, HashSet};

use crate::email::header_value;
use crate::schema::{order_events, order_items, orders, payments, products, sent_emails};
use crate::status::{EventType, NotificationKind};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub orders: usize,
    pub fulfilled: usize,
    pub cancelled: usize,
    pub emails_received: usize,
    pub duplicate_emails: usize,
    /// Terminal orders whose e-mail was refused for good (on their timeline instead).
    pub undeliverable_emails: usize,
    pub violations: Vec<String>,
}

/// Checks invariants 1–5. `initial_stock` is each product's stock before the run;
/// `received` the raw messages the SMTP server got (None when e-mail went to files).
pub async fn check(
    conn: &mut AsyncPgConnection,
    initial_stock: &HashMap<Uuid, i32>,
    received: Option<&[String]>,
) -> QueryResult<Report> {
    let mut report = Report::default();
    let all: Vec<(Uuid, String, i64)> = orders::table
        .select((orders::id, orders::status, orders::total_cents))
        .load(conn)
        .await?;
    report.orders = all.len();

    // 1. Every accepted order is terminal.
    for (id, status, _) in &all {
        match status.as_str() {
            "fulfilled" => report.fulfilled += 1,
            "cancelled" => report.cancelled += 1,
            other => report
                .violations
                .push(format!("order {id} is still {other}")),
        }
    }

    // 2. Stock: what left the shelf is what fulfilled/reserved orders hold; never negative.
    let stock: HashMap<Uuid, i32> = products::table
        .select((products::id, products::stock))
        .load::<(Uuid, i32)>(conn)
        .await?
        .into_iter()
        .collect();
    let sold: Vec<(Uuid, i32)> = order_items::table
        .inner_join(orders::table)
        .filter(orders::status.eq_any(["fulfilled", "reserved"]))
        .select((order_items::product_id, order_items::quantity))
        .load(conn)
        .await?;
    let mut sold_by_product: HashMap<Uuid, i64> = HashMap::new();
    for (product, quantity) in sold {
        *sold_by_product.entry(product).or_default() += i64::from(quantity);
    }
    for (product, current) in &stock {
        if *current < 0 {
            report
                .violations
                .push(format!("product {product} has negative stock {current}"));
        }
        if let Some(initial) = initial_stock.get(product) {
            let taken = i64::from(*initial) - i64::from(*current);
            let expected = sold_by_product.get(product).copied().unwrap_or(0);
            if taken != expected {
                report.violations.push(format!(
                    "product {product}: {taken} units left the shelf, orders hold {expected}"
                ));
            }
        }
    }

    // 3. Money: a fulfilled order has one captured payment of its total; a cancelled one keeps none.
    let payments: HashMap<Uuid, (String, i64)> = payments::table
        .select((
            payments::order_id,
            (payments::status, payments::amount_cents),
        ))
        .load::<(Uuid, (String, i64))>(conn)
        .await?
        .into_iter()
        .collect();
    for (id, status, total) in &all {
        let payment = payments.get(id);
        match status.as_str() {
            "fulfilled" => match payment {
                Some((state, amount)) if state == "captured" && amount == total => {}
                other => report.violations.push(format!(
                    "fulfilled order {id} has payment {other:?}, total {total}"
                )),
            },
            "cancelled" => {
                if let Some((state, _)) = payment.filter(|(state, _)| state == "captured") {
                    report
                        .violations
                        .push(format!("cancelled order {id} keeps a {state} payment"));
                }
            }
            _ => {}
        }
    }

    // 4. Every terminal order has its e-mail, recorded and (with SMTP) received, or a
    //    permanent delivery failure on its timeline.
    let sent: HashSet<(Uuid, String)> = sent_emails::table
        .select((sent_emails::order_id, sent_emails::kind))
        .load::<(Uuid, String)>(conn)
        .await?
        .into_iter()
        .collect();
    let undeliverable: HashSet<(Uuid, String)> = order_events::table
        .filter(order_events::event_type.eq(EventType::NotificationFailed.as_str()))
        .select((order_events::order_id, order_events::details))
        .load::<(Uuid, serde_json::Value)>(conn)
        .await?
        .into_iter()
        .filter_map(|(id, details)| Some((id, details["notification"].as_str()?.to_string())))
        .collect();
    let mut received_ids: HashMap<String, usize> = HashMap::new();
    if let Some(messages) = received {
        report.emails_received = messages.len();
        for message in messages {
            if let Some(id) = header_value(message, "Message-ID") {
                *received_ids.entry(id).or_default() += 1;
            }
        }
        report.duplicate_emails = received_ids.values().map(|n| n - 1).sum();
    }
    let mut expected_ids = HashSet::new();
    for (id, status, _) in &all {
        let kind = match status.as_str() {
            "fulfilled" => NotificationKind::OrderConfirmed,
            "cancelled" => NotificationKind::OrderCancelled,
            _ => continue,
        };
        if undeliverable.contains(&(*id, kind.to_string())) {
            report.undeliverable_emails += 1;
            continue;
        }
        expected_ids.insert(crate::email::message_id(*id, kind));
        if !sent.contains(&(*id, kind.to_string())) {
            report
                .violations
                .push(format!("{status} order {id} has no recorded {kind} e-mail"));
        }
        if received.is_some() && !received_ids.contains_key(&crate::email::message_id(*id, kind)) {
            report.violations.push(format!(
                "{status} order {id}: no {kind} e-mail reached the SMTP server"
            ));
        }
    }

    // A resend (crash between sending and recording) must reuse the order's Message-ID.
    for unexpected in received_ids.keys().filter(|id| !expected_ids.contains(*id)) {
        report.violations.push(format!(
            "an e-mail with Message-ID {unexpected} belongs to no terminal order's notification"
        ));
    }

    // 5. No task lost: all completed (a dead one would be visible, but is a failure here).
    let unfinished = orderflow_queue::admin::overview(conn).await?;
    for row in unfinished.iter().filter(|row| row.state != "completed") {
        report.violations.push(format!(
            "{} {} task(s) of kind {}",
            row.count, row.state, row.kind
        ));
    }
    Ok(report)
}
