//! The order lifecycle through the API and the database: happy path, decline, out of
//! stock with refund. API and workers in-process; e-mail through a real SMTP server.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::{payments, products, sent_emails};
use orderflow_tests::smtp::header;
use orderflow_tests::{wait_until, SmtpServer, TestApp, TestDb, Workers};
use serde_json::Value;
use std::time::Duration;

fn event_types(order: &Value) -> Vec<String> {
    order["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["type"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every step after `placed` carries `started_at`, when its worker took the task: after
/// the event before it (when the task became due) and no later than its own event. The
/// order page shows the two spans as "waited" and "ran".
fn assert_each_step_started_between_its_neighbours(order: &Value) {
    let at = |value: &Value| {
        value
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .unwrap_or_else(|| panic!("not a timestamp: {value}"))
    };
    let events = order["events"].as_array().cloned().unwrap_or_default();
    assert!(events.len() >= 2, "a timeline with steps: {order}");
    for pair in events.windows(2) {
        let (before, step) = (&pair[0], &pair[1]);
        let started = at(&step["started_at"]);
        assert!(
            at(&before["at"]) <= started && started <= at(&step["at"]),
            "{} started at {started}, not between {} and {}",
            step["type"],
            before["at"],
            step["at"]
        );
    }
}

async fn wait_for_email(smtp: &SmtpServer, order_id: &str, kind: &str) -> String {
    wait_until(
        &format!("{kind} e-mail for {order_id}"),
        Duration::from_secs(20),
        || async {
            smtp.messages().into_iter().find(|message| {
                header(message, "X-Order-Id").as_deref() == Some(order_id)
                    && header(message, "X-Notification-Kind").as_deref() == Some(kind)
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_order_in_stock_is_fulfilled_and_confirmed_by_email() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let workers = Workers::builder(&db, &smtp.url()).spawn();
    let mug = app.create_product("MUG", 1250, 5).await;
    let lamp = app.create_product("LAMP", 4000, 5).await;

    let response = app
        .place_order("tok_visa", &[(&mug, 2), (&lamp, 1)], None)
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    let placed: Value = response.json().await.unwrap_or_default();
    app.remember_token(&placed);
    let order_id = placed["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(location, format!("/orders/{order_id}"));
    assert_eq!(placed["status"], "pending");
    assert_eq!(placed["total_cents"], 2 * 1250 + 4000);

    let order = app.wait_terminal(&order_id).await;
    assert_eq!(order["status"], "fulfilled");
    assert_eq!(order["cancel_reason"], Value::Null);
    assert_eq!(order["payment"]["status"], "captured");
    assert_eq!(order["payment"]["amount_cents"], 6500);
    assert_eq!(
        event_types(&order),
        ["placed", "paid", "reserved", "shipped", "fulfilled"]
    );
    assert_each_step_started_between_its_neighbours(&order);
    assert_eq!(order["items"][0]["sku"], "MUG");
    assert_eq!(order["items"][0]["unit_price_cents"], 1250);

    let message = wait_for_email(&smtp, &order_id, "order_confirmed").await;
    assert_eq!(
        header(&message, "Message-ID"),
        Some(format!("<{order_id}.order_confirmed@orderflow.example>"))
    );
    // The shipping step booked a parcel; the confirmation carries its tracking number.
    let shipped = &order["events"][3];
    let tracking = shipped["tracking_number"].as_str().unwrap_or_default();
    assert!(
        tracking.starts_with("OF") && tracking.len() == 14,
        "{shipped}"
    );
    assert_eq!(shipped["carrier"], "Orderflow Post");
    assert!(
        message.contains(&format!("tracking number {tracking}")),
        "{message}"
    );

    let mut conn = db.connect().await;
    let stock: Vec<(String, i32)> = products::table
        .select((products::sku, products::stock))
        .order(products::sku)
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(stock, [("LAMP".to_string(), 4), ("MUG".to_string(), 3)]);
    let emails: i64 = sent_emails::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    assert_eq!(emails, 1);
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_card_cancels_the_order_without_taking_stock() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let workers = Workers::builder(&db, &smtp.url()).spawn();
    let mug = app.create_product("MUG", 1250, 5).await;

    let order_id = app.place_order_id("tok_chargeDeclined", &[(&mug, 1)]).await;

    let order = app.wait_terminal(&order_id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancel_reason"], "payment_declined");
    assert_eq!(order["payment"]["status"], "declined");
    wait_for_email(&smtp, &order_id, "order_cancelled").await;
    let order = app.wait_until_event(&order_id, "notified").await;
    assert_eq!(event_types(&order), ["placed", "cancelled", "notified"]);
    assert_each_step_started_between_its_neighbours(&order);

    let product = app.get_json(&format!("/products/{mug}")).await;
    assert_eq!(product["stock"], 5);
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_short_of_stock_is_cancelled_and_refunded_taking_no_stock() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let workers = Workers::builder(&db, &smtp.url()).spawn();
    let plenty = app.create_product("PLENTY", 1000, 10).await;
    let scarce = app.create_product("SCARCE", 500, 1).await;

    let order_id = app
        .place_order_id("tok_visa", &[(&plenty, 3), (&scarce, 2)])
        .await;

    let order = app.wait_terminal(&order_id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancel_reason"], "out_of_stock");
    wait_for_email(&smtp, &order_id, "order_cancelled").await;
    let order = app.wait_until_event(&order_id, "notified").await;
    assert_eq!(
        event_types(&order),
        ["placed", "paid", "cancelled", "refunded", "notified"]
    );
    assert_each_step_started_between_its_neighbours(&order);
    assert_eq!(order["payment"]["status"], "refunded");

    // All or nothing: the line that was in stock was not taken either.
    assert_eq!(
        app.get_json(&format!("/products/{plenty}")).await["stock"],
        10
    );
    assert_eq!(
        app.get_json(&format!("/products/{scarce}")).await["stock"],
        1
    );
    let mut conn = db.connect().await;
    let captured: i64 = payments::table
        .filter(payments::status.eq("captured"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    assert_eq!(captured, 0);
    workers.stop().await;
}
