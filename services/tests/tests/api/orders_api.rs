//! The read side of the API and the operator endpoints.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::orders;
use orderflow_tests::app::order_body;
use orderflow_tests::{SmtpServer, TestApp, TestDb, Workers};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn orders_are_listed_newest_first_in_pages_and_by_status() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let mut placed = Vec::new();
    for _ in 0..5 {
        placed.push(app.place_order_id("tok_visa", &[(&mug, 1)]).await);
    }
    let mut conn = db.connect().await;
    let first_id = uuid::Uuid::parse_str(&placed[0]).unwrap_or_default();
    diesel::update(orders::table.find(first_id))
        .set((
            orders::status.eq("cancelled"),
            orders::cancel_reason.eq("payment_declined"),
        ))
        .execute(&mut conn)
        .await
        .expect("the statement runs");

    let mut seen = Vec::new();
    let mut path = "/orders?limit=2".to_string();
    loop {
        let page = app.admin_json(&path).await;
        let orders = page["orders"].as_array().cloned().unwrap_or_default();
        assert!(orders.len() <= 2);
        seen.extend(
            orders
                .iter()
                .map(|o| o["id"].as_str().unwrap_or_default().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/orders?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let pending = app.admin_json("/orders?status=pending").await;
    assert_eq!(pending["orders"].as_array().map(Vec::len), Some(4));
    let cancelled = app.admin_json("/orders?status=cancelled").await;
    assert_eq!(cancelled["orders"][0]["id"], placed[0].as_str());
    assert_eq!(cancelled["orders"][0]["cancel_reason"], "payment_declined");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shipping_address_is_kept_and_health_endpoints_answer() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let mut body = order_body("tok_visa", &[(&mug, 1)]);
    let address = json!({ "line1": "1 Infinite Loop", "line2": null, "city": "Cupertino", "postal_code": "95014", "country": "US" });
    body["shipping_address"] = address.clone();
    let response = app.post_json("/orders", &body).await;
    assert_eq!(response.status(), 202);
    let order: Value = response.json().await.unwrap_or_default();
    app.remember_token(&order);
    let fetched = app.order(order["id"].as_str().unwrap_or_default()).await;
    assert_eq!(fetched["shipping_address"], address);
    assert_eq!(fetched["customer"]["email"], "ada@example.com");
    assert_eq!(app.get_json("/healthz").await["status"], "ok");
    assert_eq!(app.get_json("/readyz").await["status"], "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_task_shows_on_the_order_and_in_the_admin_api_and_can_be_retried() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let order_id = app.place_order_id("tok_visa", &[(&mug, 1)]).await;

    // A token the gateway rejects (as if the card was removed after the order was accepted).
    let mut conn = db.connect().await;
    diesel::update(orders::table.find(uuid::Uuid::parse_str(&order_id).unwrap_or_default()))
        .set(orders::payment_token.eq("tok_revoked"))
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    let workers = Workers::builder(&db, &smtp.url()).spawn();

    let stranded = app.wait_until_event(&order_id, "task_dead").await;
    assert_eq!(stranded["status"], "pending");
    let event = stranded["events"]
        .as_array()
        .and_then(|events| events.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(event["task_kind"], "payment.charge");
    assert!(
        event["error"]
            .as_str()
            .is_some_and(|e| e.contains("tok_revoked")),
        "{event}"
    );

    let admin_get = |path: &str| app.admin(reqwest::Method::GET, path).send();
    let dead: Value = admin_get("/admin/tasks/dead")
        .await
        .expect("the API answers")
        .json()
        .await
        .unwrap_or_default();
    let tasks = dead["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["kind"], "payment.charge");
    assert_eq!(tasks[0]["payload"]["order_id"], order_id.as_str());
    let queue: Value = admin_get("/admin/queue")
        .await
        .expect("the API answers")
        .json()
        .await
        .unwrap_or_default();
    let dead_row = queue["kinds"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["kind"] == "payment.charge" && r["state"] == "dead")
        })
        .cloned()
        .unwrap_or_default();
    assert_eq!(dead_row["count"], 1);

    // The operator fixes the cause and retries: the order goes through.
    diesel::update(orders::table.find(uuid::Uuid::parse_str(&order_id).unwrap_or_default()))
        .set(orders::payment_token.eq("tok_visa"))
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    let task_id = tasks[0]["id"].as_i64().unwrap_or_default();
    let retry_path = format!("/admin/tasks/{task_id}/retry");
    let retry = || app.admin(reqwest::Method::POST, &retry_path).send();
    let retried = retry().await.expect("the API answers");
    assert_eq!(retried.status(), 202);
    assert_eq!(app.wait_terminal(&order_id).await["status"], "fulfilled");
    let again = retry().await.expect("the API answers");
    assert_eq!(again.status(), 404, "only a dead task can be retried");
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_database_the_api_answers_503_with_a_json_error() {
    // A port nobody listens on: every connection attempt is refused.
    let nowhere = orderflow_runtime::config::DatabaseConfig {
        url: orderflow_runtime::config::Secret::new(format!(
            "postgres://postgres@127.0.0.1:{}/orderflow",
            orderflow_tests::smtp::free_port()
        )),
        pool_size: Some(2),
        acquire_timeout: Duration::from_millis(500),
    };
    let app = TestApp::builder()
        .pool(orderflow_runtime::db::pool(&nowhere, 2))
        .spawn()
        .await;
    assert_eq!(
        app.get_json("/healthz").await["status"],
        "ok",
        "the process itself is up"
    );
    for path in ["/readyz", "/products"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 503, "{path}");
        let body: Value = response.json().await.unwrap_or_default();
        assert_eq!(body["error"]["code"], "unavailable", "{path}: {body}");
    }
}

/// `order-api healthcheck`, the container health check: exit 0 only when `/readyz` is 200.
#[tokio::test(flavor = "multi_thread")]
async fn the_healthcheck_command_passes_only_when_the_api_is_ready() {
    let healthcheck = |base_url: &str| {
        let addr = base_url.trim_start_matches("http://").to_string();
        async move {
            tokio::process::Command::new(orderflow_tests::processes::binary("order-api"))
                .arg("healthcheck")
                .env_clear()
                .env("API_ADDR", addr)
                .output()
                .await
                .expect("order-api healthcheck")
        }
    };
    let db = TestDb::new().await;
    let ready = TestApp::spawn(&db).await;
    let output = healthcheck(&ready.base_url).await;
    assert!(output.status.success(), "{output:?}");

    let nowhere = orderflow_runtime::config::DatabaseConfig {
        url: orderflow_runtime::config::Secret::new(format!(
            "postgres://postgres@127.0.0.1:{}/orderflow",
            orderflow_tests::smtp::free_port()
        )),
        pool_size: Some(1),
        acquire_timeout: Duration::from_millis(200),
    };
    let not_ready = TestApp::builder()
        .pool(orderflow_runtime::db::pool(&nowhere, 1))
        .spawn()
        .await;
    let output = healthcheck(&not_ready.base_url).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("503"),
        "{output:?}"
    );

    let closed = format!("http://127.0.0.1:{}", orderflow_tests::smtp::free_port());
    let output = healthcheck(&closed).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot reach"),
        "{output:?}"
    );
}
