//! The served OpenAPI document and the handlers agree: every documented operation is
//! routed to a handler, the contract's routes are all documented, and a real contract
//! test (schemathesis, from PyPI) finds no 5xx and no response that breaks the schema.

use std::time::Duration;

use orderflow_tests::app::ADMIN_TOKEN;
use orderflow_tests::stack::Stack;
use orderflow_tests::{SmtpServer, TestApp, TestDb};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_served_and_the_contract_routes_are_documented() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let spec = app.get_json("/openapi.json").await;
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{spec}"
    );
    let paths = spec["paths"].as_object().cloned().unwrap_or_default();

    let mut operations = Vec::new();
    for (path, item) in &paths {
        for method in item
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            operations.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path.replace("{id}", "00000000-0000-7000-8000-000000000000");
            let request = app
                .client
                .request(
                    method.to_uppercase().parse().unwrap_or_default(),
                    app.url(&concrete),
                )
                .bearer_auth(ADMIN_TOKEN);
            let request = if method == "post" || method == "patch" {
                request.json(&json!({}))
            } else {
                request
            };
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let unrouted = status == 405
                || body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no route for"));
            assert!(
                !unrouted,
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
    for contract in [
        "GET /products",
        "GET /products/{id}",
        "POST /products",
        "PATCH /products/{id}",
        "POST /orders",
        "GET /orders",
        "GET /orders/{id}",
        "POST /orders/{id}/cancel",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /admin/queue",
        "GET /admin/tasks/dead",
        "POST /admin/tasks/{id}/retry",
        "POST /admin/tasks/dead/retry",
        "GET /admin/stats",
        "GET /orders/{id}/events",
    ] {
        assert!(
            operations.iter().any(|op| op == contract),
            "{contract} is not documented: {operations:?}"
        );
    }
    assert_eq!(operations.len(), 17, "{operations:?}");

    // Every operation documents its errors with the one error shape.
    let place = &paths["/orders"]["post"];
    for status in ["202", "400", "413", "415", "422", "503"] {
        assert!(
            place["responses"][status].is_object(),
            "POST /orders lacks {status}"
        );
    }
    assert_eq!(
        place["responses"]["422"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorResponse"
    );
    let example = &spec["components"]["schemas"]["PlaceOrderRequest"]["example"];
    assert_eq!(
        example["payment"]["token"], "tok_visa",
        "the spec's example: {example}"
    );

    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs
        .text()
        .await
        .unwrap_or_default()
        .contains("/openapi.json"));

    let wrong_method = app
        .client
        .delete(app.url("/orders"))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(
        wrong_method
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("GET, POST")
    );
}

/// schemathesis next to the test Python (scripts/test.sh installs it into .venv).
fn schemathesis() -> std::path::PathBuf {
    let python = std::env::var("ORDERFLOW_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let path = std::path::Path::new(&python).with_file_name("schemathesis");
    assert!(
        path.exists(),
        "{} is missing: run the tests through scripts/test.sh",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_schema() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    // No workers run: the orders it places stay pending, and admission control would soon
    // answer 503 `overloaded`, which schemathesis counts as a server error.
    let mut stack = Stack::new(
        &db.url,
        &smtp.url(),
        &[("ADMISSION_MAX_QUEUE_WAIT_MS", "0")],
    );
    let client = orderflow_tests::http::client();
    let _api = stack.start_api(&client).await;
    stack.create_catalog(&client, "ST", &[50, 50]).await;
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(schemathesis())
            .args(["run", &format!("{}/openapi.json", stack.base)])
            .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            // Every check but "valid-looking input is accepted" (a well-formed order for a
            // product that does not exist is rightly a 422) and "a request without
            // credentials gets 401/403": an order asked for without its token is a 404 by
            // design, so that its existence is not revealed.
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance,ignored_auth",
            ])
            .args([
                "--max-examples",
                "20",
                "--seed",
                "20261124",
                "--workers",
                "2",
            ])
            .env("NO_COLOR", "1")
            // Its cache of findings stays out of the source tree.
            .current_dir(std::env::temp_dir())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("schemathesis ran for more than 5 minutes"))
    .expect("cannot run schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
