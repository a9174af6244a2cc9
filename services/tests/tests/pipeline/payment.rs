//! A charge retried after its completion was lost charges once: the gateway is called with
//! the order's idempotency key, and the payment is recorded once. A charge whose answer was
//! lost, on an order cancelled before the retry, is found at the provider and refunded. An
//! attempt whose lease ran out never calls the provider.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use gateway_sim::SimulatedGateway;
use orderflow::schema::payments;
use orderflow::tasks::TaskKind;
use orderflow_queue::{claim_batch, rescue_expired, run_once, TaskError};
use orderflow_runtime::config::PaymentConfig;
use orderflow_tests::Workers;
use orderflow_tests::{TestApp, TestDb};
use payment_worker::ChargePayment;

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_retried_after_a_lost_completion_charges_once() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let order_id = app.place_order_id("tok_visa", &[(&mug, 2)]).await;

    // The gateway answers after the claim's lease ran out (`run_once` has no heartbeat),
    // so the attempt charges and then cannot record.
    let gateway = Arc::new(SimulatedGateway::new(PaymentConfig {
        latency: Duration::from_millis(800),
        ..Default::default()
    }));
    let pool = db.pool(2);
    let handler = ChargePayment::new(pool.clone(), gateway.clone());
    let mut conn = db.connect().await;
    let kind = TaskKind::PaymentCharge.as_str();

    let lost = claim_batch(&mut conn, kind, 1, Duration::from_millis(400))
        .await
        .unwrap_or_default();
    assert_eq!(lost.len(), 1);
    assert!(matches!(
        run_once(&handler, &pool, &lost[0]).await,
        Err(TaskError::ClaimLost)
    ));
    assert_eq!(gateway.distinct_charges(), 1, "the first attempt charged");
    assert_eq!(app.order(&order_id).await["status"], "pending");

    // A worker's poll tick makes the expired task waiting again.
    assert_eq!(rescue_expired(&mut conn, kind, 10).await.ok(), Some(1));
    let retry = claim_batch(&mut conn, kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(retry.len(), 1);
    assert!(run_once(&handler, &pool, &retry[0]).await.is_ok());

    assert_eq!(gateway.distinct_charges(), 1, "two calls, one charge");
    let order = app.order(&order_id).await;
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
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 100).await;
    // 30 % of calls fail; ten attempts make a dead task a one-in-a-hundred-thousand event.
    let flaky = PaymentConfig {
        latency: Duration::from_millis(2),
        transient_failure_rate: 0.3,
        ..Default::default()
    };
    let workers = Workers::builder(&db, &smtp.url())
        .simulated_gateway(flaky)
        .spawn();
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
    .expect("the query runs");
    assert!(
        retried.n > 0,
        "with 30 % failures over 30 charges, some attempt failed"
    );
    assert_eq!(app.get_json(&format!("/products/{mug}")).await["stock"], 70);
    workers.stop().await;
}

/// One group of charge answers, recorded set-wise: an approval, a decline, an approval for
/// an order its customer cancelled meanwhile, the same approval twice, and a decline for an
/// order no longer pending. Each gets what it would have got alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_charge_answers_is_recorded_as_each_would_be_alone() {
    use orderflow::lifecycle::{record_charges, ChargeToRecord, Recorded};
    use orderflow::payment::ChargeOutcome;
    use orderflow::schema::{order_events, orders};

    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let id = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
        ids.push(id.parse::<uuid::Uuid>().expect("a valid literal"));
    }
    let (approved, declined, cancelled_meanwhile, not_pending) = (ids[0], ids[1], ids[2], ids[3]);
    let mut conn = db.connect().await;
    for id in [cancelled_meanwhile, not_pending] {
        let response = app.cancel(&id.to_string()).await;
        assert_eq!(response.status(), 200, "cancel {id}");
    }

    let approval = ChargeOutcome::Approved {
        charge_id: "ch_1".into(),
    };
    let decline = ChargeOutcome::Declined {
        reason: "card_declined".into(),
    };
    let charge = |order_id, outcome| ChargeToRecord {
        order_id,
        amount_cents: 1000,
        outcome,
        correlation_id: Some("req-group"),
        started_at: chrono::Utc::now(),
    };
    let group = [
        charge(approved, &approval),
        charge(declined, &decline),
        charge(cancelled_meanwhile, &approval),
        charge(approved, &approval),
        charge(not_pending, &decline),
    ];
    let recorded = record_charges(&mut conn, &group)
        .await
        .expect("record charges");
    assert_eq!(
        recorded,
        [
            Recorded::Applied,
            Recorded::Applied,
            Recorded::Applied,
            Recorded::AlreadyDone,
            Recorded::AlreadyDone,
        ]
    );

    let mut statuses = Vec::new();
    for id in [approved, declined, cancelled_meanwhile, not_pending] {
        let status: (String, Option<String>) = orders::table
            .find(id)
            .select((orders::status, orders::cancel_reason))
            .first(&mut conn)
            .await
            .expect("the query runs");
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [
            ("paid".to_string(), None),
            (
                "cancelled".to_string(),
                Some("payment_declined".to_string())
            ),
            (
                "cancelled".to_string(),
                Some("customer_request".to_string())
            ),
            (
                "cancelled".to_string(),
                Some("customer_request".to_string())
            ),
        ]
    );
    let payments: Vec<(uuid::Uuid, String)> = payments::table
        .order(payments::order_id)
        .select((payments::order_id, payments::status))
        .load(&mut conn)
        .await
        .unwrap_or_default();
    let mut expected = vec![
        (approved, "captured".to_string()),
        (declined, "declined".to_string()),
        (cancelled_meanwhile, "captured".to_string()),
    ];
    expected.sort();
    assert_eq!(payments, expected);
    let events: Vec<(uuid::Uuid, String)> = order_events::table
        .filter(order_events::event_type.eq_any(["paid", "cancelled"]))
        .filter(order_events::order_id.eq_any([approved, declined]))
        .order(order_events::id)
        .select((order_events::order_id, order_events::event_type))
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(
        events,
        [
            (approved, "paid".to_string()),
            (declined, "cancelled".to_string())
        ]
    );
    // The follow-ups: a reservation, the decline's e-mail, and a refund for the money taken
    // from the order cancelled meanwhile, each carrying its cause's correlation id.
    #[derive(diesel::QueryableByName)]
    struct FollowUp {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        order_id: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        correlation_id: Option<String>,
    }
    let follow_ups: Vec<FollowUp> = diesel::sql_query(
        "SELECT kind, payload->>'order_id' AS order_id, correlation_id FROM tasks \
         WHERE kind IN ('inventory.reserve', 'payment.refund') \
            OR (kind = 'notification.send' AND payload->>'order_id' = $1) ORDER BY kind",
    )
    .bind::<diesel::sql_types::Text, _>(declined.to_string())
    .load(&mut conn)
    .await
    .expect("the query runs");
    let seen: Vec<(String, String, Option<String>)> = follow_ups
        .into_iter()
        .map(|f| (f.kind, f.order_id, f.correlation_id))
        .collect();
    let cause = Some("req-group".to_string());
    assert_eq!(
        seen,
        [
            (
                "inventory.reserve".into(),
                approved.to_string(),
                cause.clone()
            ),
            (
                "notification.send".into(),
                declined.to_string(),
                cause.clone()
            ),
            (
                "payment.refund".into(),
                cancelled_meanwhile.to_string(),
                cause
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_attempt_whose_lease_ran_out_never_calls_the_gateway() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let order_id = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    let gateway = Arc::new(SimulatedGateway::new(PaymentConfig::default()));
    let pool = db.pool(2);
    let handler = ChargePayment::new(pool.clone(), gateway.clone());
    let mut conn = db.connect().await;

    // Claimed with no lease at all: by the time the attempt would charge, another worker
    // may hold the task.
    let expired = claim_batch(
        &mut conn,
        TaskKind::PaymentCharge.as_str(),
        1,
        Duration::ZERO,
    )
    .await
    .unwrap_or_default();
    assert_eq!(expired.len(), 1);
    assert!(matches!(
        run_once(&handler, &pool, &expired[0]).await,
        Err(TaskError::ClaimLost)
    ));
    assert_eq!(gateway.distinct_charges(), 0, "the gateway was not called");
    assert_eq!(app.order(&order_id).await["status"], "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_whose_answer_was_lost_is_found_and_refunded_when_the_order_was_cancelled() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1500, 10).await;
    let order_id = app.place_order_id("tok_visa", &[(&mug, 2)]).await;
    // Every charge is made, and its answer lost.
    let gateway = Arc::new(SimulatedGateway::new(PaymentConfig {
        lost_response_rate: 1.0,
        ..Default::default()
    }));
    let pool = db.pool(2);
    let charge = ChargePayment::new(pool.clone(), gateway.clone());
    let mut conn = db.connect().await;
    let kind = TaskKind::PaymentCharge.as_str();

    let first = claim_batch(&mut conn, kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(first.len(), 1);
    let failed = run_once(&charge, &pool, &first[0]).await;
    assert!(matches!(failed, Err(TaskError::Retryable(_))), "{failed:?}");
    assert_eq!(gateway.distinct_charges(), 1, "the card was charged");
    // The worker records the failure; the retry is due at once (no backoff).
    orderflow_queue::fail(
        &mut conn,
        &first[0],
        &TaskError::retryable("answer lost"),
        Duration::ZERO,
    )
    .await
    .expect("the failure is recorded");

    // Before the retry, the customer cancels: the order shows no payment.
    let cancelled = app.cancel(&order_id).await;
    assert_eq!(cancelled.status(), 200);

    let retry = claim_batch(&mut conn, kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(retry.len(), 1);
    let recorded = run_once(&charge, &pool, &retry[0]).await;
    assert!(recorded.is_ok(), "{recorded:?}");
    let order = app.order(&order_id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(
        order["payment"]["status"], "captured",
        "found at the provider"
    );
    assert_eq!(order["payment"]["amount_cents"], 3000);

    // The refund it queued gives the money back.
    let refund = payment_worker::RefundPayment::new(pool.clone(), gateway.clone());
    let refunds = claim_batch(
        &mut conn,
        TaskKind::PaymentRefund.as_str(),
        10,
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_default();
    assert_eq!(refunds.len(), 1, "one refund queued");
    let refunded = run_once(&refund, &pool, &refunds[0]).await;
    assert!(refunded.is_ok(), "{refunded:?}");
    assert_eq!(gateway.refunded_charges(), 1);
    assert_eq!(app.order(&order_id).await["payment"]["status"], "refunded");
}
