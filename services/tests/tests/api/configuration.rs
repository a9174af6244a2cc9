//! Configuration as an operator meets it: a bad value stops a service at start with a
//! message naming the variable; JSON logs are one object per line and carry no secrets.

use std::process::{Command, Stdio};
use std::time::Duration;

use orderflow_tests::processes::{binary, Service};
use orderflow_tests::smtp::free_port;
use orderflow_tests::{wait_until, TestDb};

fn start_with(name: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(binary(name))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_value_stops_the_service_naming_the_variable() {
    let cases: [(&str, &str, &str); 15] = [
        ("payment-worker", "WORKER_CONCURRENCY", "many"),
        ("payment-worker", "PAYMENT_TRANSIENT_FAILURE_RATE", "1.5"),
        (
            "inventory-worker",
            "DATABASE_URL",
            "mysql://localhost/orderflow",
        ),
        ("notification-worker", "SMTP_URL", "http://mail.example"),
        ("order-api", "API_ADDR", "not-an-address"),
        ("order-api", "ADMIN_TOKEN", "short"),
        ("order-api", "LOG_FORMAT", "xml"),
        ("order-api", "CORS_ORIGINS", "https://shop.example.com/path"),
        ("order-api", "DB_ACQUIRE_TIMEOUT_MS", "0"),
        ("inventory-worker", "TASK_LEASE_SECONDS", "-1"),
        ("notification-worker", "TASK_LEASE_SECONDS", "soon"),
        ("payment-worker", "WORKER_CLAIM_COOLDOWN_MS", "5000"),
        ("inventory-worker", "WORKER_CLAIM_COOLDOWN_MS", "-1"),
        ("payment-worker", "COMPLETED_TASK_RETENTION_HOURS", "-1"),
        (
            "notification-worker",
            "COMPLETED_TASK_RETENTION_HOURS",
            "a week",
        ),
    ];
    for (service, variable, value) in cases {
        let (code, stderr) =
            start_with(service, &[(variable, value), ("MIGRATE_ON_START", "false")]);
        assert_eq!(code, Some(1), "{service} with {variable}={value}: {stderr}");
        assert!(
            stderr.contains(variable),
            "{service}: {stderr:?} does not name {variable}"
        );
    }
    let (code, stderr) = start_with("order-api", &[("MIGRATE_ON_START", "maybe")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("MIGRATE_ON_START"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line_without_secrets() {
    let db = TestDb::new().await;
    let logs =
        std::env::temp_dir().join(format!("orderflow-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("a folder for the logs");
    let token = "secret-admin-token-do-not-log-4711";
    let addr = format!("127.0.0.1:{}", free_port());
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("API_ADDR", addr.clone()),
        ("ADMIN_TOKEN", token.to_string()),
        ("LOG_FORMAT", "json".to_string()),
        ("RUST_LOG", "debug".to_string()),
    ];
    let api = Service::start("order-api", "order-api", &env, &logs);
    let client = orderflow_tests::http::client();
    wait_until("the API to be ready", Duration::from_secs(30), || async {
        let response = client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let created = client
        .post(format!("http://{addr}/products"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "sku": "LOG", "name": "Log", "price_cents": 1, "stock": 1 }))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(created.status(), 201);
    let status = api.terminate(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "order-api after SIGTERM: {status:?}"
    );

    let log = std::fs::read_to_string(logs.join("order-api.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "some logs were written: {log}");
    for line in &lines {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "not a JSON object: {line}"
        );
    }
    assert!(!log.contains(token), "the admin token reached the log");
    let _ = std::fs::remove_dir_all(&logs);
}
