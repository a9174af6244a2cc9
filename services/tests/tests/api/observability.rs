//! What operators see, checked against what happened: Prometheus metrics of the API and
//! of each worker add up to the orders of a run, and one request id follows an order
//! through the logs of all four services.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orderflow::schema::orders;
use orderflow_tests::app::order_body;
use orderflow_tests::smtp::free_port;
use orderflow_tests::stack::{place_with_retry, Stack};
use orderflow_tests::{wait_until, SmtpServer, TestDb};
use serde_json::Value;

/// One sample of a Prometheus text exposition: the metric with exactly these labels.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            let found: Vec<(&str, &str)> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            metric == name
                && found.len() == labels.len()
                && labels.iter().all(|label| found.contains(label))
        })
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("scrape {base}: {e}"));
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap_or_default()
}

/// A worker's metrics once it counts every completed task it should: `expected` per kind.
/// A worker counts a task when its commit has answered, which can be after the database
/// shows the task done.
async fn scrape_counted(client: &reqwest::Client, base: &str, expected: &[(&str, f64)]) -> String {
    let what = format!("{base} to count {expected:?} completed tasks");
    wait_until(&what, Duration::from_secs(10), || async {
        let metrics = scrape(client, base).await;
        let counted = expected.iter().all(|(kind, count)| {
            sample(
                &metrics,
                "orderflow_queue_tasks_completed_total",
                &[("kind", kind)],
            ) == *count
        });
        counted.then_some(metrics)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_add_up_to_what_happened_and_a_request_id_follows_the_order_everywhere() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let mut stack = Stack::new(&db.url, &smtp.url(), &[]);
    let client = orderflow_tests::http::client();
    let api = stack.start_api(&client).await;
    let mut ops = HashMap::new();
    let mut workers = Vec::new();
    for name in orderflow_tests::stack::WORKERS {
        let addr = format!("127.0.0.1:{}", free_port());
        workers.push(stack.start_with(name, name, &[("METRICS_ADDR", addr.clone())]));
        ops.insert(name, format!("http://{addr}"));
    }
    for base in ops.values() {
        orderflow_tests::wait_until("a worker's /readyz", Duration::from_secs(30), || async {
            let response = client.get(format!("{base}/readyz")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        let health = client.get(format!("{base}/healthz")).send().await;
        assert!(health.is_ok_and(|r| r.status() == 200));
    }

    // 12 card orders of which the scarce product covers 8, and 4 declined cards.
    let (products, _) = stack.create_catalog(&client, "OBS", &[8]).await;
    let mut bodies = Vec::new();
    for _ in 0..12 {
        bodies.push(order_body("tok_visa", &[(&products[0], 1)]));
    }
    for _ in 0..4 {
        bodies.push(order_body("tok_chargeDeclined", &[(&products[0], 1)]));
    }
    let traced_id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let traced = client
        .post(format!("{}/orders", stack.base))
        .header("X-Request-Id", &traced_id)
        .json(&bodies[0])
        .send()
        .await
        .expect("the API answers");
    assert_eq!(traced.status(), 202);
    let echoed = traced
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(echoed.as_deref(), Some(traced_id.as_str()));
    let traced_order: Value = traced.json().await.unwrap_or_default();
    let traced_order_id = traced_order["id"].as_str().unwrap_or_default().to_string();
    for (n, body) in bodies.iter().enumerate().skip(1) {
        place_with_retry(
            &client,
            &stack.base,
            &format!("obs-{n}"),
            body,
            Duration::from_secs(30),
        )
        .await
        .expect("the order is accepted");
    }
    let generated = client.get(format!("{}/products", stack.base)).send().await;
    let generated_id = generated.ok().and_then(|r| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    assert!(
        generated_id.is_some_and(|id| !id.is_empty()),
        "an id is made when none is sent"
    );
    stack.wait_drained(Duration::from_secs(60)).await;

    let mut conn = AsyncPgConnection::establish(&db.url)
        .await
        .expect("a database connection");
    let statuses: Vec<(String, Option<String>)> = orders::table
        .select((orders::status, orders::cancel_reason))
        .load(&mut conn)
        .await
        .expect("the query runs");
    let count = |status: &str, reason: Option<&str>| {
        statuses
            .iter()
            .filter(|(s, r)| s == status && r.as_deref() == reason)
            .count() as f64
    };
    let (fulfilled, out_of_stock, declined) = (
        count("fulfilled", None),
        count("cancelled", Some("out_of_stock")),
        count("cancelled", Some("payment_declined")),
    );
    assert_eq!((fulfilled, out_of_stock, declined), (8.0, 4.0, 4.0));

    let api_metrics = scrape(&client, &stack.base).await;
    let post_orders = [("method", "POST"), ("route", "/orders"), ("status", "202")];
    assert_eq!(
        sample(&api_metrics, "orderflow_http_requests_total", &post_orders),
        16.0
    );
    assert!(api_metrics.contains("orderflow_http_request_duration_seconds_bucket"));
    assert!(api_metrics.contains("orderflow_db_pool_connections"));

    let payment = scrape_counted(
        &client,
        &ops["payment-worker"],
        &[("payment.charge", 16.0), ("payment.refund", out_of_stock)],
    )
    .await;
    let charge = [("kind", "payment.charge")];
    assert_eq!(
        sample(&payment, "orderflow_queue_tasks_claimed_total", &charge),
        16.0
    );
    assert_eq!(
        sample(&payment, "orderflow_queue_tasks_retried_total", &charge),
        0.0
    );
    assert_eq!(
        sample(
            &payment,
            "orderflow_queue_tasks",
            &[("kind", "payment.charge"), ("state", "waiting")]
        ),
        0.0
    );
    assert!(payment.contains("orderflow_queue_oldest_waiting_seconds{kind=\"payment.charge\"}"));

    let inventory = scrape_counted(
        &client,
        &ops["inventory-worker"],
        &[("inventory.reserve", 12.0)],
    )
    .await;
    let reserve_ok = [("kind", "inventory.reserve"), ("outcome", "completed")];
    assert_eq!(
        sample(
            &inventory,
            "orderflow_queue_task_duration_seconds_count",
            &reserve_ok
        ),
        12.0
    );
    // Every completed attempt is split into its four phases; a commit takes time.
    for phase in ["waiting", "performing", "gathering", "recording"] {
        let labels = [("kind", "inventory.reserve"), ("phase", phase)];
        assert_eq!(
            sample(
                &inventory,
                "orderflow_queue_attempt_phase_seconds_count",
                &labels
            ),
            12.0,
            "{phase}"
        );
    }
    assert!(
        sample(
            &inventory,
            "orderflow_queue_attempt_phase_seconds_sum",
            &[("kind", "inventory.reserve"), ("phase", "recording")]
        ) > 0.0
    );

    let notification = scrape_counted(
        &client,
        &ops["notification-worker"],
        &[("notification.send", 16.0)],
    )
    .await;
    assert_eq!(
        sample(
            &notification,
            "orderflow_order_time_to_terminal_seconds_count",
            &[("outcome", "fulfilled")]
        ),
        fulfilled
    );
    assert_eq!(
        sample(
            &notification,
            "orderflow_order_time_to_terminal_seconds_count",
            &[("outcome", "cancelled")]
        ),
        out_of_stock + declined
    );

    // One grep: the traced request id is in every service's log, and the workers' lines
    // that carry it also carry the order id and a task id.
    for service in ["order-api"]
        .into_iter()
        .chain(orderflow_tests::stack::WORKERS)
    {
        let log = std::fs::read_to_string(stack.logs().join(format!("{service}.1.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(&traced_id))
            .collect();
        assert!(
            !lines.is_empty(),
            "{service} never logged request {traced_id}"
        );
        for line in &lines {
            let parsed: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{service}: {e}: {line}"));
            assert!(
                line.contains(&traced_order_id),
                "{service}: no order id in {parsed}"
            );
            if service != "order-api" {
                assert!(
                    line.contains("\"task_id\""),
                    "{service}: no task id in {parsed}"
                );
            }
        }
    }
    drop(workers);
    drop(api);
}
