//! The pages as people use them: Playwright drives Debian's Chromium (`CHROMIUM`, default
//! /usr/bin/chromium) against the whole stack (API, the three workers, gateway-sim
//! answering in a few hundred milliseconds, a real SMTP server). The scripts are in
//! `services/tests/python/`; screenshots go to `target/browser-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use orderflow_tests::app::ADMIN_TOKEN;
use orderflow_tests::processes::Service;
use orderflow_tests::stack::Stack;
use orderflow_tests::wait::wait_until;
use orderflow_tests::{SmtpServer, TestDb};
use serde_json::{json, Value};

/// A catalog that looks like a shop in the screenshots.
const CATALOG: [(&str, &str, i64); 6] = [
    ("MUG-01", "Stoneware Mug", 1800),
    ("TEE-02", "Organic Cotton Tee", 2900),
    ("CAP-03", "Canvas Cap", 2200),
    ("BAG-04", "Waxed Tote Bag", 4500),
    ("SOC-05", "Merino Socks", 1500),
    ("NOT-06", "Dot Grid Notebook", 1200),
];

/// A stack with a provider that answers in a few hundred milliseconds (jittered), so
/// that an order's steps can be watched; `payment_env` goes to the payment worker only.
async fn shop(
    db: &TestDb,
    smtp: &SmtpServer,
    gateway: &[(&'static str, &str)],
) -> (Stack, Vec<Service>, Vec<String>) {
    let mut stack = Stack::new(&db.url, &smtp.url(), &[]);
    let mut behaviour = vec![
        ("GATEWAY_LATENCY_P50_MS", "300"),
        ("GATEWAY_LATENCY_P99_MS", "600"),
    ];
    behaviour.extend_from_slice(gateway);
    let mut services = vec![stack.start_gateway(&behaviour).await];
    let client = orderflow_tests::http::client();
    services.push(stack.start_api(&client).await);
    let mut ids = Vec::new();
    for (sku, name, price_cents) in CATALOG {
        let response = client
            .post(format!("{}/products", stack.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "sku": sku, "name": name, "price_cents": price_cents, "stock": 40 }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create {sku}: {e}"));
        assert_eq!(response.status(), 201, "create {sku}");
        let product: Value = response.json().await.unwrap_or_default();
        ids.push(product["id"].as_str().unwrap_or_default().to_string());
    }
    (stack, services, ids)
}

/// Runs a browser script with `args` after the base URL and the screenshot folder, and
/// returns what it printed; fails the test with its output when it fails.
async fn run_script(stack: &Stack, script: &str, args: &[&str]) -> String {
    let python = std::env::var("ORDERFLOW_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let path = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let screenshots =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-screenshots");
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(python)
            .arg(&path)
            .arg(&stack.base)
            .arg(&screenshots)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} ran over 300 s"))
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}\nservice logs: {}",
        output.status,
        stack.logs().display()
    );
    println!("{stdout}");
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shopper_buys_and_watches_each_order_finish_without_reloading() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let (mut stack, _services, _products) = shop(&db, &smtp, &[]).await;
    let _workers = stack.start_workers(1);
    let printed = run_script(&stack, "storefront_browser.py", &[]).await;
    assert!(printed.contains("storefront: ok"), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_orders_flow_and_retries_dead_tasks_from_the_ops_page() {
    const DEAD: usize = 3;
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    // The provider wants a key the payment worker does not have: every charge is refused
    // (401, permanent) and its task dies at once.
    let (mut stack, _services, products) =
        shop(&db, &smtp, &[("GATEWAY_API_KEY", "the-right-key")]).await;
    let mut payment = stack.start_with(
        "payment-worker",
        "payment-worker",
        &[("PAYMENT_GATEWAY_API_KEY", "a-wrong-key".to_string())],
    );
    let _others = [
        stack.start("inventory-worker", "inventory-worker"),
        stack.start("notification-worker", "notification-worker"),
    ];
    let client = orderflow_tests::http::client();
    for (n, product) in products.iter().enumerate().take(DEAD) {
        let response = client
            .post(format!("{}/orders", stack.base))
            .header("Idempotency-Key", format!("doomed-{n}"))
            .json(&json!({
                "customer": { "email": "ops@example.com", "name": "Doomed Charge" },
                "items": [{ "product_id": product, "quantity": 1 }],
                "payment": { "token": "tok_visa" },
            }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("order {n}: {e}"));
        assert_eq!(response.status(), 202, "order {n}");
    }
    let dead_url = format!("{}/admin/tasks/dead", stack.base);
    wait_until("the charges to die", Duration::from_secs(60), || async {
        let dead: Value = client
            .get(&dead_url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (dead["matching"] == json!(DEAD)).then_some(())
    })
    .await;
    // The worker gets the right key; the dead tasks stay dead until someone retries them.
    payment.kill();
    let _payment = stack.start_with(
        "payment-worker",
        "payment-worker",
        &[("PAYMENT_GATEWAY_API_KEY", "the-right-key".to_string())],
    );
    let printed = run_script(
        &stack,
        "ops_browser.py",
        &[ADMIN_TOKEN, &products[0], &DEAD.to_string()],
    )
    .await;
    assert!(printed.contains("ops: ok"), "{printed}");
    let unfinished = stack.unfinished_orders().await;
    assert_eq!(unfinished, Some(0), "every order finished");
}
