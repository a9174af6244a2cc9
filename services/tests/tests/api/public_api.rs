//! What makes the API safe to put in front of customers: an order opens only with its own
//! token (or the admin's), a client cannot place orders without bound, and every request
//! ends (a stalled database, a trickled body, a flood of connections or of invented
//! methods cannot hold the server or grow its memory).

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use orderflow::schema::orders;
use orderflow_tests::app::{order_body, test_api_config, TestApp, ADMIN_TOKEN};
use orderflow_tests::{wait_until, TestDb};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn order_count(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    orders::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("the query runs")
}

async fn get_with(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_opens_only_with_its_own_token_or_the_admin_token() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let mine = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    let theirs = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    let token = app.token_of(&mine);
    assert_eq!(token.len(), 64, "256 bits, hex");
    assert_ne!(token, app.token_of(&theirs));
    let path = format!("/orders/{mine}");

    // Without the order's token, the order does not exist.
    let unknown = format!("/orders/{}", uuid::Uuid::now_v7());
    let not_found = ("not_found".to_string(), 404);
    for (what, response) in [
        ("no token", get_with(&app, &path, None).await),
        (
            "a wrong token",
            get_with(&app, &path, Some("0123abcd")).await,
        ),
        (
            "another order's token",
            get_with(&app, &path, Some(&app.token_of(&theirs))).await,
        ),
        (
            "an unknown order with a token",
            get_with(&app, &unknown, Some(&token)).await,
        ),
    ] {
        let (status, code) = error_code(response).await;
        assert_eq!((code, status), not_found, "{what}");
    }
    // Its token, as a bearer token or in the e-mail's link, and the admin token open it.
    for (what, response) in [
        ("its token", get_with(&app, &path, Some(&token)).await),
        (
            "its link",
            get_with(&app, &format!("{path}?token={token}"), None).await,
        ),
        ("the admin", get_with(&app, &path, Some(ADMIN_TOKEN)).await),
    ] {
        assert_eq!(response.status(), 200, "{what}");
        let order: Value = response.json().await.unwrap_or_default();
        assert_eq!(order["id"], mine.as_str(), "{what}");
        assert!(
            order.get("access_token").is_none(),
            "{what}: the token is shown once"
        );
    }

    // Nor can anyone else cancel it, and trying writes nothing.
    let cancel_path = format!("/orders/{mine}/cancel");
    let refused = app
        .client
        .post(app.url(&cancel_path))
        .bearer_auth(app.token_of(&theirs))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(error_code(refused).await, (404, "not_found".to_string()));
    assert_eq!(app.order(&mine).await["status"], "pending");
    assert_eq!(app.cancel(&mine).await.status(), 200);

    // Every customer's orders: the admin's only.
    let (status, code) = error_code(get_with(&app, "/orders", None).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, _) = error_code(get_with(&app, "/orders", Some(&token)).await).await;
    assert_eq!(status, 401, "an order's token is not an admin token");
    let page = app.admin_json("/orders").await;
    assert_eq!(page["orders"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_idempotency_key_answers_with_a_token_that_works() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let response = app
            .place_order("tok_visa", &[(&mug, 1)], Some("replay-1"))
            .await;
        assert_eq!(response.status(), 202);
        let order: Value = response.json().await.unwrap_or_default();
        let id = order["id"].as_str().unwrap_or_default().to_string();
        let token = order["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        tokens.push((id, token));
    }
    assert_eq!(tokens[0].0, tokens[1].0, "one order");
    let (id, token) = &tokens[1];
    let response = get_with(&app, &format!("/orders/{id}"), Some(token)).await;
    assert_eq!(response.status(), 200, "the replay's token opens the order");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_order_limit_is_told_to_wait_and_nothing_is_written() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            order_rate_limit: 3,
            ..test_api_config()
        })
        .spawn()
        .await;
    let mug = app.create_product("MUG", 1000, 100).await;
    for n in 0..3 {
        let response = app.place_order("tok_visa", &[(&mug, 1)], None).await;
        assert_eq!(response.status(), 202, "order {n}");
    }
    let limited = app.place_order("tok_visa", &[(&mug, 1)], None).await;
    let retry_after: Option<u64> = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    assert_eq!(error_code(limited).await, (429, "rate_limited".to_string()));
    // 3 a minute: the next one in about 20 s.
    assert!(
        retry_after.is_some_and(|s| (1..=20).contains(&s)),
        "{retry_after:?}"
    );
    assert_eq!(order_count(&db).await, 3);
    // Reads are not limited.
    assert_eq!(get_with(&app, "/products", None).await.status(), 200);
}

/// A request from the test's loopback address, forwarded for `client`.
async fn place_for(app: &TestApp, mug: &str, client: &str) -> u16 {
    app.client
        .post(app.url("/orders"))
        .header("X-Forwarded-For", format!("203.0.113.9, {client}"))
        .json(&order_body("tok_visa", &[(mug, 1)]))
        .send()
        .await
        .expect("the API answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_limit_is_per_forwarded_client() {
    let db = TestDb::new().await;
    let limited = |trusted: Vec<std::net::IpAddr>| orderflow_runtime::config::ApiConfig {
        order_rate_limit: 1,
        trusted_proxies: trusted,
        ..test_api_config()
    };
    let behind_proxy = TestApp::builder()
        .database(&db)
        .config(limited(vec![[127, 0, 0, 1].into()]))
        .spawn()
        .await;
    let mug = behind_proxy.create_product("MUG", 1000, 100).await;
    assert_eq!(place_for(&behind_proxy, &mug, "198.51.100.1").await, 202);
    assert_eq!(place_for(&behind_proxy, &mug, "198.51.100.2").await, 202);
    assert_eq!(place_for(&behind_proxy, &mug, "198.51.100.1").await, 429);

    // Not a trusted proxy: what the client forwards is its own say-so, and ignored.
    let direct = TestApp::builder()
        .database(&db)
        .config(limited(Vec::new()))
        .spawn()
        .await;
    assert_eq!(place_for(&direct, &mug, "198.51.100.3").await, 202);
    assert_eq!(place_for(&direct, &mug, "198.51.100.4").await, 429);
    assert_eq!(order_count(&db).await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn invented_methods_share_one_metrics_label() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    for n in 0..25 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{n}").as_bytes())
            .expect("a valid method name");
        let response = app
            .client
            .request(method, app.url("/products"))
            .send()
            .await
            .expect("the API answers");
        assert_eq!(response.status(), 405);
    }
    let metrics = get_with(&app, "/metrics", None)
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(!metrics.contains("INVENTED"), "a label per invented method");
    assert!(metrics.contains(r#"method="other""#));
}

/// The `orderflow_queue_tasks` gauge of waiting charges, as `/metrics` shows it.
async fn waiting_charges(app: &TestApp) -> Option<f64> {
    let metrics = get_with(app, "/metrics", None)
        .await
        .text()
        .await
        .unwrap_or_default();
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix("orderflow_queue_tasks{").filter(|l| {
            l.contains(r#"kind="payment.charge""#) && l.contains(r#"state="waiting""#)
        })?;
        rest.rsplit(' ').next()?.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_gauges_are_read_at_most_once_per_interval_however_often_scraped() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            queue_gauges_every: Duration::from_secs(3600),
            ..test_api_config()
        })
        .spawn()
        .await;
    let before = waiting_charges(&app).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    for _ in 0..5 {
        assert_eq!(
            waiting_charges(&app).await,
            before,
            "read again within the interval"
        );
    }

    // With no interval, every scrape reads (the gauge works; only the reading is spaced).
    let eager = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            queue_gauges_every: Duration::ZERO,
            ..test_api_config()
        })
        .spawn()
        .await;
    assert_eq!(waiting_charges(&eager).await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_trickles_in_is_cut_off_with_a_408() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            body_timeout: Duration::from_millis(500),
            ..test_api_config()
        })
        .spawn()
        .await;
    let addr = app.base_url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("a connection to the API");
    let head = "POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                Content-Length: 200\r\n\r\n{\"customer\"";
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the bytes are written");
    // The rest never comes (the client keeps the connection open, sending nothing).
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server held the trickling request");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert_eq!(order_count(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_limit_wait_until_one_closes() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            max_connections: 2,
            workers: 1,
            ..test_api_config()
        })
        .spawn()
        .await;
    let addr = app.base_url.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("a connection to the API"),
        );
    }
    let fresh = orderflow_tests::http::client();
    let refused = fresh
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a third connection was served: {refused:?}"
    );
    drop(held);
    wait_until(
        "a request once the held connections closed",
        Duration::from_secs(20),
        || async {
            let client = orderflow_tests::http::client();
            let response = client.get(app.url("/healthz")).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_database_ends_requests_with_a_503_and_writes_nothing() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            lock_timeout: Duration::from_millis(200),
            statement_timeout: Duration::from_secs(1),
            ..test_api_config()
        })
        .spawn()
        .await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let placed = app.place_order_id("tok_visa", &[(&mug, 1)]).await;

    // Someone holds the orders table (a migration, a runaway statement).
    let mut locker = db.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("the table is locked");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client");
    let place = client
        .post(app.url("/orders"))
        .json(&order_body("tok_visa", &[(&mug, 1)]))
        .send()
        .await
        .expect("POST /orders did not end");
    assert_eq!(error_code(place).await, (503, "unavailable".to_string()));
    let read = client
        .get(app.url(&format!("/orders/{placed}")))
        .bearer_auth(app.token_of(&placed))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /orders/{{id}} did not end: {e}"));
    assert_eq!(error_code(read).await, (503, "unavailable".to_string()));
    locker
        .batch_execute("ROLLBACK")
        .await
        .expect("the statements run");
    drop(locker);

    assert_eq!(
        order_count(&db).await,
        1,
        "the refused order was not written"
    );
    assert_eq!(app.order(&placed).await["status"], "pending");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_loads_nothing_from_another_host() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let page = get_with(&app, "/docs", None).await;
    assert_eq!(page.status(), 200);
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let html = page.text().await.unwrap_or_default();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    for asset in [
        "/docs/init.js",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
    ] {
        assert!(html.contains(asset), "{asset} not on the page");
        let response = get_with(&app, asset, None).await;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(
            response.bytes().await.map_or(0, |b| b.len()) > 100,
            "{asset}"
        );
    }
    // Everything else the API answers carries a policy too.
    let json = get_with(&app, "/products", None).await;
    assert!(json.headers().contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_that_falls_behind_sheds_new_orders_early_and_keeps_answering_reads() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            admission_max_queue_wait: Some(Duration::from_millis(500)),
            admission_every: Duration::from_millis(50),
            ..test_api_config()
        })
        .spawn()
        .await;
    let mug = app.create_product("MUG", 1000, 100).await;
    let first = app.place_order_id("tok_visa", &[(&mug, 1)]).await;

    // No payment worker runs, and its first task has been due for ten seconds.
    let mut conn = db.connect().await;
    diesel::sql_query(
        "UPDATE tasks SET run_at = now() - interval '10 seconds' WHERE kind = 'payment.charge'",
    )
    .execute(&mut conn)
    .await
    .expect("the statement runs");
    wait_until("new orders to be shed", Duration::from_secs(20), || async {
        let response = app.place_order("tok_visa", &[(&mug, 1)], None).await;
        (response.status() == 503).then_some(())
    })
    .await;
    let before = order_count(&db).await;
    let shed = app.place_order("tok_visa", &[(&mug, 1)], None).await;
    let retry_after = shed
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(error_code(shed).await, (503, "overloaded".to_string()));
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        order_count(&db).await,
        before,
        "a shed order writes nothing"
    );
    // Reads and probes keep answering.
    assert_eq!(get_with(&app, "/products", None).await.status(), 200);
    assert_eq!(get_with(&app, "/healthz", None).await.status(), 200);
    assert_eq!(app.order(&first).await["status"], "pending");

    // The stage catches up: orders are taken again.
    diesel::sql_query(
        "UPDATE tasks SET state = 'completed', completed_at = now() WHERE kind = 'payment.charge'",
    )
    .execute(&mut conn)
    .await
    .expect("the statement runs");
    wait_until(
        "orders to be taken again",
        Duration::from_secs(20),
        || async {
            let response = app.place_order("tok_visa", &[(&mug, 1)], None).await;
            (response.status() == 202).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_over_the_in_flight_cap_are_shed_at_once_and_the_ones_inside_it_finish() {
    let db = TestDb::new().await;
    let app = TestApp::builder()
        .database(&db)
        .config(orderflow_runtime::config::ApiConfig {
            max_orders_in_flight: 2,
            // The two placements wait on a lock held below, not on a timeout.
            lock_timeout: Duration::from_secs(30),
            statement_timeout: Duration::from_secs(30),
            ..test_api_config()
        })
        .spawn()
        .await;
    let mug = app.create_product("MUG", 1000, 100).await;

    // A session holding `orders` so that no order can be inserted: placements stall.
    let mut holder = db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN SHARE MODE")
        .await
        .expect("the lock is taken");
    let one_mug = [(mug.as_str(), 1)];
    let (first, second, over) = tokio::join!(
        app.place_order("tok_visa", &one_mug, None),
        app.place_order("tok_visa", &one_mug, None),
        async {
            wait_until(
                "two placements waiting on the lock",
                Duration::from_secs(20),
                || async {
                    let waiting = diesel::sql_query(
                        "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = $1 AND wait_event_type = 'Lock'",
                    )
                    .bind::<diesel::sql_types::Text, _>(&db.name)
                    .get_result::<Counted>(&mut db.connect().await)
                    .await
                    .expect("pg_stat_activity reads")
                    .n;
                    (waiting == 2).then_some(())
                },
            )
            .await;
            // Both slots are taken: the next order is turned away, nothing queued.
            let over = app.place_order("tok_visa", &one_mug, None).await;
            let retry_after = over
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let answer = error_code(over).await;
            assert_eq!(get_with(&app, "/products", None).await.status(), 200);
            holder
                .batch_execute("COMMIT")
                .await
                .expect("the lock is released");
            (answer, retry_after)
        }
    );
    assert_eq!(over.0, (503, "overloaded".to_string()));
    assert_eq!(over.1.as_deref(), Some("1"));
    assert_eq!(first.status(), 202, "the orders inside the cap finish");
    assert_eq!(second.status(), 202);
    assert_eq!(order_count(&db).await, 2, "the shed order wrote nothing");
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Reads the stream until the next `event: order` frame and returns its order.
async fn next_order_frame(response: &mut reqwest::Response, buffer: &mut String) -> Value {
    let read = async {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let data = frame.lines().find_map(|line| line.strip_prefix("data: "));
                if let (true, Some(data)) = (frame.starts_with("event: order\n"), data) {
                    return serde_json::from_str::<Value>(data)
                        .unwrap_or_else(|e| panic!("frame {frame:?}: {e}"));
                }
                continue;
            }
            let chunk = response
                .chunk()
                .await
                .expect("reading the stream")
                .unwrap_or_else(|| panic!("the stream ended; read so far: {buffer:?}"));
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    // A deadline for a stream that went silent, not a measure of speed: generous, as the
    // other tests of this binary run alongside.
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("no order frame within 30 s; read so far: {buffer:?}"))
}

/// An order's event stream sends the order at once and again when its timeline grows
/// (the database's NOTIFY, heard by the process's one LISTEN session), and ends once the
/// order is finished; without the order's token it does not exist.
#[tokio::test(flavor = "multi_thread")]
async fn the_live_stream_sends_the_order_and_each_change_and_needs_its_token() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let id = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    let path = format!("/orders/{id}/events");

    // This stream is the process's first: its watch starts the LISTEN session, so the
    // session's first read-again (below) is sure to come after the stream is watching.
    let mut stream = get_with(&app, &path, Some(&app.token_of(&id))).await;
    assert_eq!(stream.status(), 200);
    let content_type = stream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(content_type, "text/event-stream");
    let mut buffer = String::new();
    let first = next_order_frame(&mut stream, &mut buffer).await;
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["status"], "pending");

    // The process opens its LISTEN session for the first stream; once it listens, every
    // stream reads its order again (a change before then was heard by nobody).
    let listening = next_order_frame(&mut stream, &mut buffer).await;
    assert_eq!(listening["status"], "pending");
    // A change made elsewhere (here: the customer cancels) reaches the open stream through
    // the database's notification.
    assert_eq!(app.cancel(&id).await.status(), 200);
    let changed = next_order_frame(&mut stream, &mut buffer).await;
    assert_eq!(changed["status"], "cancelled");
    assert_eq!(changed["cancel_reason"], "customer_request");

    let (status, code) = error_code(get_with(&app, &path, None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (404, "not_found"),
        "without a token"
    );
}

/// The pipeline view's numbers: admin only; orders per status (those in progress counted
/// from their index, finished ones from the timeline) and every task kind's backlog.
#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_stats_count_orders_by_status_and_are_admin_only() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let (status, _) = error_code(get_with(&app, "/admin/stats", None).await).await;
    assert_eq!(status, 401);
    let mug = app.create_product("MUG", 1000, 10).await;
    let kept = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    let cancelled = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    assert_eq!(app.cancel(&cancelled).await.status(), 200);
    assert_eq!(app.order(&kept).await["status"], "pending");

    // Built at most once a second: wait until a build has seen both orders.
    let stats = wait_until(
        "the stats to show both orders",
        Duration::from_secs(10),
        || async {
            let stats = app.admin_json("/admin/stats").await;
            (stats["orders"]["pending"] == 1 && stats["orders"]["cancelled"] == 1).then_some(stats)
        },
    )
    .await;
    assert_eq!(stats["orders"]["fulfilled"], 0);
    let kinds: Vec<&str> = stats["kinds"]
        .as_array()
        .map(|kinds| kinds.iter().filter_map(|k| k["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        [
            "inventory.reserve",
            "notification.send",
            "payment.charge",
            "payment.refund",
            "shipping.book"
        ]
    );
    let charge = stats["kinds"]
        .as_array()
        .and_then(|kinds| kinds.iter().find(|k| k["kind"] == "payment.charge"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(charge["waiting"], 2, "no worker runs: both charges wait");
    let accepted: i64 = stats["per_second"]
        .as_array()
        .map(|seconds| seconds.iter().filter_map(|s| s["accepted"].as_i64()).sum())
        .unwrap_or_default();
    assert_eq!(accepted, 2);
}
