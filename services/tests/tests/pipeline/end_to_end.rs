//! The four real binaries, a real SMTP server and PostgreSQL: 120 mixed orders driven to
//! a terminal state, then every invariant of the spec checked.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::products;
use orderflow_tests::app::order_body;
use orderflow_tests::random::Lcg;
use orderflow_tests::stack::Stack;
use orderflow_tests::{invariants, SmtpServer, TestDb};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn the_real_services_drive_mixed_orders_to_terminal_states_keeping_every_invariant() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let mut stack = Stack::new(&db.url, &smtp.url(), &[("WORKER_CONCURRENCY", "8")]);
    let client = orderflow_tests::http::client();
    let api = stack.start_api(&client).await;
    let workers = stack.start_workers(1);
    let base = stack.base.clone();

    // A catalog where some products run out, so both cancellation paths happen.
    let (product_ids, initial_stock) = stack
        .create_catalog(&client, "E2E", &[500, 500, 500, 12, 6])
        .await;

    let mut random = Lcg(42);
    for n in 0..120 {
        let token = if random.below(5) == 0 {
            "tok_chargeDeclined"
        } else {
            "tok_visa"
        };
        let mut basket: Vec<(&str, i64)> = Vec::new();
        for _ in 0..=random.below(3) {
            let product = product_ids[random.below(product_ids.len() as u64) as usize].as_str();
            if basket.iter().all(|(id, _)| *id != product) {
                basket.push((product, 1 + random.below(3) as i64));
            }
        }
        let body = order_body(token, &basket);
        let key = format!("e2e-{n}");
        let place = || {
            client
                .post(format!("{base}/orders"))
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
        };
        let response = place().await.expect("the API answers");
        assert_eq!(response.status(), 202);
        let order: Value = response.json().await.unwrap_or_default();
        // Every tenth order is retried by its client: the same order comes back.
        if n % 10 == 0 {
            let replay: Value = place()
                .await
                .expect("the API answers")
                .json()
                .await
                .unwrap_or_default();
            assert_eq!(replay["id"], order["id"]);
        }
    }

    stack.wait_drained(Duration::from_secs(60)).await;
    let mut conn = db.connect().await;
    // The confirmation is recorded after the SMTP server took it: all messages are in.
    let received = smtp.messages();
    let report = invariants::check(&mut conn, &initial_stock, Some(&received)).await;
    eprintln!(
        "end-to-end: {} orders, {} fulfilled, {} cancelled, {} e-mails, {} duplicates",
        report.orders,
        report.fulfilled,
        report.cancelled,
        report.emails_received,
        report.duplicate_emails
    );
    assert!(
        report.violations.is_empty(),
        "invariant violations:\n{}",
        report.violations.join("\n")
    );
    assert_eq!(report.orders, 120);
    assert!(
        report.fulfilled > 0 && report.cancelled > 0,
        "both outcomes were exercised"
    );
    assert_eq!(report.duplicate_emails, 0);
    let scarce: Vec<i32> = products::table
        .filter(products::sku.eq_any(["E2E-3", "E2E-4"]))
        .select(products::stock)
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert!(scarce.iter().all(|stock| *stock >= 0));

    // SIGTERM: every service drains and exits 0.
    for service in workers.into_iter().chain([api]) {
        let name = service.name.clone();
        let status = service.terminate(Duration::from_secs(20)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{name} exited with {status:?} after SIGTERM"
        );
    }
}
