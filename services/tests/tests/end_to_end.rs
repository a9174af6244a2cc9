//! The four real binaries, a real SMTP server and PostgreSQL: 120 mixed orders driven to
//! a terminal state, then every invariant of the spec checked.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::products;
use orderflow_tests::app::{order_body, ADMIN_TOKEN};
use orderflow_tests::processes::Service;
use orderflow_tests::smtp::free_port;
use orderflow_tests::{invariants, wait_until, SmtpServer, TestDb};
use serde_json::{json, Value};
use uuid::Uuid;

/// A small deterministic generator, so a failing run can be repeated exactly.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_services_drive_mixed_orders_to_terminal_states_keeping_every_invariant() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let logs = std::env::temp_dir().join(format!("orderflow-e2e-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{e}"));
    let api_addr = format!("127.0.0.1:{}", free_port());
    let env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("API_ADDR", api_addr.clone()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("SMTP_URL", smtp.url()),
        ("DB_POOL_SIZE", "6".to_string()),
        ("WORKER_CONCURRENCY", "8".to_string()),
        ("WORKER_POLL_INTERVAL_MS", "250".to_string()),
        ("LOG_FORMAT", "json".to_string()),
        ("RUST_LOG", "info".to_string()),
    ];
    let api = Service::start("order-api", "order-api", &env, &logs);
    let workers = [
        Service::start("payment-worker", "payment-worker", &env, &logs),
        Service::start("inventory-worker", "inventory-worker", &env, &logs),
        Service::start("notification-worker", "notification-worker", &env, &logs),
    ];
    let base = format!("http://{api_addr}");
    let client = reqwest::Client::new();
    wait_until("the API to be ready", Duration::from_secs(30), || async {
        let response = client.get(format!("{base}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;

    // A catalog where some products run out, so both cancellation paths happen.
    let mut product_ids = Vec::new();
    let mut initial_stock = HashMap::new();
    for (n, stock) in [500, 500, 500, 12, 6].into_iter().enumerate() {
        let response = client
            .post(format!("{base}/products"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "sku": format!("E2E-{n}"), "name": format!("Product {n}"), "price_cents": 300 + n as i64 * 150, "stock": stock }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 201);
        let product: Value = response.json().await.unwrap_or_default();
        let id = product["id"].as_str().unwrap_or_default().to_string();
        initial_stock.insert(Uuid::parse_str(&id).unwrap_or_default(), stock);
        product_ids.push(id);
    }

    let mut random = Lcg(42);
    let mut order_ids = Vec::new();
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
        let response = place().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), 202);
        let order: Value = response.json().await.unwrap_or_default();
        // Every tenth order is retried by its client: the same order comes back.
        if n % 10 == 0 {
            let replay: Value = place()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .json()
                .await
                .unwrap_or_default();
            assert_eq!(replay["id"], order["id"]);
        }
        order_ids.push(order["id"].as_str().unwrap_or_default().to_string());
    }

    let mut conn = db.connect().await;
    for id in &order_ids {
        wait_until(
            &format!("order {id} to finish with its e-mail"),
            Duration::from_secs(60),
            || async {
                let order: Value = client
                    .get(format!("{base}/orders/{id}"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let done = matches!(order["status"].as_str(), Some("fulfilled"))
                    || order["events"]
                        .as_array()?
                        .iter()
                        .any(|e| e["type"] == "notified");
                done.then_some(())
            },
        )
        .await;
    }
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
    let _ = std::fs::remove_dir_all(&logs);
}
