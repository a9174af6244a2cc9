//! `POST /orders/{id}/cancel`: a pending or paid order is cancelled (a paid one refunded);
//! a reserved or terminal one is not (409). The race with a charge in flight is forced
//! both ways: a cancel that wins means no charge, one that loses means a refund.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use gateway_sim::SimulatedGateway;
use orderflow::payment::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest,
};
use orderflow::schema::{order_events, products};
use orderflow_runtime::config::PaymentConfig;
use orderflow_tests::app::Workers;
use orderflow_tests::smtp::header;
use orderflow_tests::{wait_until, SmtpServer, TestApp, TestDb};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

fn simulated() -> Arc<SimulatedGateway> {
    Arc::new(SimulatedGateway::new(PaymentConfig {
        latency: Duration::ZERO,
        transient_failure_rate: 0.0,
        ..Default::default()
    }))
}

/// The workers this file runs: a payment worker on `gateway` (none: orders stay pending),
/// `inventory` inventory workers, and the notification worker or not.
fn start_workers(
    db: &TestDb,
    smtp_url: &str,
    gateway: Option<Arc<dyn PaymentGateway>>,
    inventory: usize,
    notification: bool,
) -> Workers {
    let mut builder = Workers::builder(db, smtp_url).inventory_replicas(inventory);
    builder = match gateway {
        Some(gateway) => builder.gateway(gateway),
        None => builder.without_payment(),
    };
    if !notification {
        builder = builder.without_notification();
    }
    builder.spawn()
}

async fn cancel(app: &TestApp, order_id: &str) -> reqwest::Response {
    app.cancel(order_id).await
}

/// The cancellation e-mails the SMTP server got for this order.
fn cancellation_emails(smtp: &SmtpServer, order_id: &str) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| header(m, "X-Order-Id").as_deref() == Some(order_id))
        .filter(|m| header(m, "X-Notification-Kind").as_deref() == Some("order_cancelled"))
        .count()
}

#[derive(QueryableByName)]
struct TaskState {
    #[diesel(sql_type = diesel::sql_types::Text)]
    state: String,
}

/// Waits until the (single) task of `kind` is completed.
async fn wait_task_completed(db: &TestDb, kind: &str) {
    wait_until(
        &format!("the {kind} task to complete"),
        Duration::from_secs(30),
        || async {
            let mut conn = db.connect().await;
            let task: TaskState = diesel::sql_query("SELECT state FROM tasks WHERE kind = $1")
                .bind::<diesel::sql_types::Text, _>(kind)
                .get_result(&mut conn)
                .await
                .ok()?;
            (task.state == "completed").then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_before_the_charge_means_the_card_is_never_charged() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let product = app.create_product("CANCEL-1", 1200, 10).await;
    let order_id = app.place_order_id("tok_visa", &[(&product, 1)]).await;

    let response = cancel(&app, &order_id).await;
    assert_eq!(response.status(), 200);
    let order: Value = response.json().await.unwrap_or_default();
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancel_reason"], "customer_request");

    // Now the payment worker gets to the charge task, which finds nothing to charge.
    let gateway = simulated();
    let workers = start_workers(&db, &smtp.url(), Some(gateway.clone()), 1, true);
    let order = app.wait_until_event(&order_id, "notified").await;
    assert_eq!(order["payment"], Value::Null);
    wait_task_completed(&db, "payment.charge").await;
    assert_eq!(
        gateway.distinct_charges(),
        0,
        "the gateway was never called"
    );
    assert_eq!(cancellation_emails(&smtp, &order_id), 1);
    workers.stop().await;
}

async fn stock_of(db: &TestDb, product_id: &str) -> i32 {
    let mut conn = db.connect().await;
    products::table
        .find(Uuid::parse_str(product_id).unwrap_or_default())
        .select(products::stock)
        .first(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("stock of {product_id}: {e}"))
}

/// A gateway whose charges wait until the test lets them through.
struct HeldGateway {
    inner: Arc<SimulatedGateway>,
    entered: Notify,
    release: Notify,
    charges: AtomicUsize,
}

#[async_trait]
impl PaymentGateway for HeldGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        self.charges.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_one();
        self.release.notified().await;
        self.inner.charge(request).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        self.inner.refund(request).await
    }

    async fn find_charge(&self, key: &str) -> Result<Option<ChargeOutcome>, GatewayError> {
        self.inner.find_charge(key).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_while_the_charge_is_in_flight_is_refunded() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let product = app.create_product("CANCEL-2", 1500, 10).await;
    let gateway = Arc::new(HeldGateway {
        inner: simulated(),
        entered: Notify::new(),
        release: Notify::new(),
        charges: AtomicUsize::new(0),
    });
    let workers = start_workers(&db, &smtp.url(), Some(gateway.clone()), 1, true);
    let order_id = app.place_order_id("tok_visa", &[(&product, 2)]).await;
    tokio::time::timeout(Duration::from_secs(30), gateway.entered.notified())
        .await
        .unwrap_or_else(|_| panic!("the charge never reached the gateway"));

    // The customer cancels while the gateway is charging the card.
    let response = cancel(&app, &order_id).await;
    assert_eq!(response.status(), 200);
    gateway.release.notify_one();

    let order = app.wait_until_event(&order_id, "refunded").await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["cancel_reason"], "customer_request");
    assert_eq!(order["payment"]["status"], "refunded");
    assert_eq!(order["payment"]["amount_cents"], 3000);
    assert_eq!(AtomicUsize::load(&gateway.charges, Ordering::SeqCst), 1);
    app.wait_until_event(&order_id, "notified").await;
    // Both paths asked for the cancellation e-mail; it went out once.
    assert_eq!(cancellation_emails(&smtp, &order_id), 1);
    let stock = stock_of(&db, &product).await;
    assert_eq!(stock, 10, "a cancelled order takes no stock");
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_paid_order_refunds_it_and_takes_no_stock() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let product = app.create_product("CANCEL-3", 800, 5).await;
    // No inventory worker: the order stops at `paid`.
    let workers = start_workers(&db, &smtp.url(), Some(simulated()), 0, true);
    let order_id = app.place_order_id("tok_visa", &[(&product, 1)]).await;
    app.wait_until_event(&order_id, "paid").await;

    let response = cancel(&app, &order_id).await;
    assert_eq!(response.status(), 200);
    let order = app.wait_until_event(&order_id, "notified").await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["payment"]["status"], "refunded");
    assert_eq!(cancellation_emails(&smtp, &order_id), 1);
    let message = smtp
        .messages()
        .into_iter()
        .find(|m| header(m, "X-Order-Id").as_deref() == Some(order_id.as_str()))
        .unwrap_or_default();
    assert!(message.contains("refunded"), "{message}");
    workers.stop().await;

    // A late inventory task would find the order cancelled: nothing is reserved.
    let late = start_workers(&db, &smtp.url(), None, 1, false);
    wait_task_completed(&db, "inventory.reserve").await;
    let stock = stock_of(&db, &product).await;
    assert_eq!(stock, 5);
    late.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reserved_or_finished_order_cannot_be_cancelled_and_nothing_is_written() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let product = app.create_product("CANCEL-4", 500, 10).await;
    // No notification worker: the order stops at `reserved`.
    let workers = start_workers(&db, &smtp.url(), Some(simulated()), 1, false);
    let reserved = app.place_order_id("tok_visa", &[(&product, 1)]).await;
    app.wait_until_event(&reserved, "reserved").await;
    let declined = app
        .place_order_id("tok_chargeDeclined", &[(&product, 1)])
        .await;
    app.wait_terminal(&declined).await;

    let mut conn = db.connect().await;
    let events_before: i64 = order_events::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("the query runs");
    for (order_id, status) in [(&reserved, "reserved"), (&declined, "cancelled")] {
        let response = cancel(&app, order_id).await;
        assert_eq!(response.status(), 409, "{status}");
        let body: Value = response.json().await.unwrap_or_default();
        assert_eq!(body["error"]["code"], "conflict");
        assert_eq!(body["error"]["details"]["status"], status);
    }
    let events_after: i64 = order_events::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("the query runs");
    assert_eq!(
        events_before, events_after,
        "a refused cancel writes nothing"
    );
    assert_eq!(app.order(&reserved).await["status"], "reserved");

    // Unknown to the admin too.
    for unknown in [Uuid::now_v7().to_string(), "not-a-uuid".to_string()] {
        let response = app
            .admin(reqwest::Method::POST, &format!("/orders/{unknown}/cancel"))
            .send()
            .await
            .expect("the API answers");
        assert_eq!(response.status(), 404, "{unknown}");
    }
    workers.stop().await;
}
