//! `Idempotency-Key`: replays, concurrent duplicates and a reused key with another body.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::orders;
use orderflow_queue::admin;
use orderflow_tests::{TestApp, TestDb};
use serde_json::Value;

async fn order_count(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    orders::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1)
}

async fn task_count(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    admin::overview(&mut conn)
        .await
        .unwrap_or_default()
        .iter()
        .map(|row| row.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_request_returns_the_same_order() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;

    let first = app
        .place_order("tok_visa", &[(&mug, 1)], Some("key-1"))
        .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap_or_default();
    let again = app
        .place_order("tok_visa", &[(&mug, 1)], Some("key-1"))
        .await;
    assert_eq!(again.status(), 202);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let again: Value = again.json().await.unwrap_or_default();
    assert_eq!(first["id"], again["id"]);
    assert_eq!(order_count(&db).await, 1);
    assert_eq!(task_count(&db).await, 1, "one payment task, not two");

    // Another key is another order.
    let other = app
        .place_order("tok_visa", &[(&mug, 1)], Some("key-2"))
        .await;
    assert_eq!(other.status(), 202);
    assert_eq!(order_count(&db).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_duplicates_make_one_order_and_all_get_it() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;

    let basket = [(mug.as_str(), 2)];
    let attempts = (0..20).map(|_| app.place_order("tok_visa", &basket, Some("same-key")));
    let responses = futures_util::future::join_all(attempts).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap_or_default();
        ids.push(body["id"].as_str().unwrap_or_default().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every duplicate got the one order: {ids:?}");
    assert!(!ids[0].is_empty());
    assert_eq!(order_count(&db).await, 1);
    assert_eq!(task_count(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_with_a_different_body_is_refused() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;

    assert_eq!(
        app.place_order("tok_visa", &[(&mug, 1)], Some("k"))
            .await
            .status(),
        202
    );
    let reused = app.place_order("tok_visa", &[(&mug, 3)], Some("k")).await;
    assert_eq!(reused.status(), 422);
    let body: Value = reused.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert_eq!(order_count(&db).await, 1);
    assert_eq!(task_count(&db).await, 1);
}
