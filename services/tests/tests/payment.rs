//! A charge retried after its completion was lost charges once: the gateway is called with
//! the order's idempotency key, and the payment is recorded once.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::config::PaymentConfig;
use orderflow::payment::SimulatedGateway;
use orderflow::schema::payments;
use orderflow::tasks::TaskKind;
use orderflow_queue::{claim_batch, run_once, TaskError};
use orderflow_tests::{spawn_app, TestDb};
use payment_worker::ChargePayment;

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_retried_after_a_lost_completion_charges_once() {
    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let order_id = app.place_order_id("tok_visa", &[(&mug, 2)]).await;

    let gateway = Arc::new(SimulatedGateway::new(PaymentConfig {
        latency: Duration::ZERO,
        transient_failure_rate: 0.0,
    }));
    let pool = db.pool(2);
    let handler = ChargePayment::new(pool.clone(), gateway.clone());
    let mut conn = db.connect().await;
    let kind = TaskKind::PaymentCharge.as_str();

    let lost = claim_batch(&mut conn, kind, 1, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(lost.len(), 1);
    assert!(matches!(
        run_once(&handler, &pool, &lost[0]).await,
        Err(TaskError::ClaimLost)
    ));
    assert_eq!(
        app.get_json(&format!("/orders/{order_id}")).await["status"],
        "pending"
    );

    let retry = claim_batch(&mut conn, kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(retry.len(), 1);
    assert!(run_once(&handler, &pool, &retry[0]).await.is_ok());

    assert_eq!(gateway.distinct_charges(), 1, "two calls, one charge");
    let order = app.get_json(&format!("/orders/{order_id}")).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(order["payment"]["amount_cents"], 2000);
    let rows: i64 = payments::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    assert_eq!(rows, 1);
    // The follow-up exists exactly once.
    let waiting = claim_batch(
        &mut conn,
        TaskKind::InventoryReserve.as_str(),
        10,
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_default();
    assert_eq!(waiting.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_gateway_failures_are_retried_until_the_orders_go_through() {
    let db = TestDb::new().await;
    let smtp = orderflow_tests::SmtpServer::start().await;
    let app = spawn_app(&db).await;
    let mug = app.create_product("MUG", 1000, 100).await;
    // 30 % of calls fail; ten attempts make a dead task a one-in-a-hundred-thousand event.
    let flaky = PaymentConfig {
        latency: Duration::from_millis(2),
        transient_failure_rate: 0.3,
    };
    let workers = orderflow_tests::app::spawn_workers_with_gateway(&db, &smtp.url(), 1, flaky);
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(app.place_order_id("tok_visa", &[(&mug, 1)]).await);
    }
    for id in &ids {
        assert_eq!(app.wait_terminal(id).await["status"], "fulfilled");
    }
    // The failures happened and were recorded on the tasks that retried.
    #[derive(diesel::QueryableByName)]
    struct Retried {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.connect().await;
    let retried: Retried = diesel::sql_query(
        "SELECT count(*) AS n FROM tasks WHERE kind LIKE 'payment.%' AND jsonb_array_length(errors) > 0 AND state = 'completed'",
    )
    .get_result(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        retried.n > 0,
        "with 30 % failures over 30 charges, some attempt failed"
    );
    assert_eq!(app.get_json(&format!("/products/{mug}")).await["stock"], 70);
    workers.stop().await;
}
