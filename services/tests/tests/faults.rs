//! Faults the system must ride out without losing anything: SIGTERM in the middle of a
//! batch, a PostgreSQL crash under running services, and one that loses what the workers
//! recorded last.

use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orderflow_tests::app::order_body;
use orderflow_tests::cluster::PgCluster;
use orderflow_tests::processes::Service;
use orderflow_tests::smtp::header;
use orderflow_tests::stack::{place_with_retry, Stack};
use orderflow_tests::{invariants, wait_until, SmtpServer, TestApp, TestDb};
use serde_json::Value;

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct StateCount {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    count: i64,
    #[diesel(sql_type = BigInt)]
    attempts: i64,
}

/// Charge tasks by state, with the attempts they used.
async fn charge_tasks(conn: &mut AsyncPgConnection) -> Vec<StateCount> {
    diesel::sql_query(
        "SELECT state, count(*) AS count, sum(attempts)::bigint AS attempts FROM tasks \
         WHERE kind = 'payment.charge' GROUP BY state ORDER BY state",
    )
    .load(conn)
    .await
    .expect("tasks")
}

async fn count_of(conn: &mut AsyncPgConnection, state: &str) -> i64 {
    charge_tasks(conn)
        .await
        .into_iter()
        .find(|row| row.state == state)
        .map_or(0, |row| row.count)
}

/// Places `n` orders through an in-process API and starts a real payment worker with
/// four slots and a slow gateway; returns once four charges are in flight.
async fn payment_worker_mid_batch(db: &TestDb, latency_ms: &str, grace_seconds: &str) -> Service {
    let app = TestApp::spawn(db).await;
    let product = app.create_product("SLOW-1", 1000, 1000).await;
    for _ in 0..12 {
        app.place_order_id("tok_visa", &[(&product, 1)]).await;
    }
    let logs = std::env::temp_dir();
    let worker = Service::start(
        "payment-worker",
        &format!("payment-worker-sigterm-{}", uuid::Uuid::new_v4().simple()),
        &[
            ("DATABASE_URL", db.url.clone()),
            ("WORKER_CONCURRENCY", "4".into()),
            ("PAYMENT_LATENCY_MS", latency_ms.into()),
            ("SHUTDOWN_GRACE_SECONDS", grace_seconds.into()),
            ("LOG_FORMAT", "json".into()),
        ],
        &logs,
    );
    let mut conn = db.connect().await;
    let conn = tokio::sync::Mutex::new(&mut conn);
    wait_until(
        "four charges in flight",
        Duration::from_secs(30),
        || async { (count_of(*conn.lock().await, "running").await == 4).then_some(()) },
    )
    .await;
    worker
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_tasks_in_flight_finish_then_exits_0_holding_nothing() {
    let db = TestDb::new().await;
    let worker = payment_worker_mid_batch(&db, "2000", "30").await;
    let status = worker.terminate(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );

    let mut conn = db.connect().await;
    let tasks = charge_tasks(&mut conn).await;
    assert_eq!(count_of(&mut conn, "running").await, 0, "{tasks:?}");
    let completed = count_of(&mut conn, "completed").await;
    assert!(completed >= 4, "the charges in flight finished: {tasks:?}");
    let waiting = tasks.iter().find(|row| row.state == "waiting");
    assert_eq!(
        waiting.map(|row| (row.count, row.attempts)),
        Some((12 - completed, 0)),
        "the rest were never claimed: {tasks:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_gives_back_the_tasks_that_outlast_the_grace_period() {
    let db = TestDb::new().await;
    let worker = payment_worker_mid_batch(&db, "600000", "1").await;
    let status = worker.terminate(Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );

    let mut conn = db.connect().await;
    let tasks = charge_tasks(&mut conn).await;
    assert_eq!(
        tasks,
        vec![StateCount {
            state: "waiting".into(),
            count: 12,
            attempts: 0
        }],
        "every charge is waiting again, its interrupted attempt not counted"
    );
}

#[derive(QueryableByName)]
struct Listeners {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn listening_sessions(url: &str) -> Option<i64> {
    let mut conn = AsyncPgConnection::establish(url).await.ok()?;
    let listeners: Listeners =
        diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1")
            .bind::<Text, _>(orderflow_queue::LISTENER_APPLICATION_NAME)
            .get_result(&mut conn)
            .await
            .ok()?;
    Some(listeners.n)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_services_ride_out_a_database_crash_without_being_restarted() {
    let cluster = PgCluster::start().await;
    cluster.create_database("orderflow").await;
    let url = cluster.url("orderflow");
    let smtp = SmtpServer::start().await;
    let mut stack = Stack::new(&url, &smtp.url(), &[("TASK_LEASE_SECONDS", "2")]);
    let client = orderflow_tests::http::client();
    let mut api = stack.start_api(&client).await;
    let mut workers = stack.start_workers(1);
    let (products, initial_stock) = stack.create_catalog(&client, "CRASH", &[1000, 1000]).await;
    let place = |n: usize| {
        let body = order_body("tok_visa", &[(&products[n % 2], 1)]);
        let (client, base) = (client.clone(), stack.base.clone());
        async move {
            place_with_retry(
                &client,
                &base,
                &format!("crash-{n}"),
                &body,
                Duration::from_secs(60),
            )
            .await
            .expect("the order is accepted")
        }
    };
    for n in 0..20 {
        place(n).await;
    }
    stack.wait_drained(Duration::from_secs(60)).await;
    wait_until(
        "three listening sessions",
        Duration::from_secs(30),
        || async { (listening_sessions(&url).await? == 3).then_some(()) },
    )
    .await;

    cluster.crash().await;
    // While the database is down the API answers at once, with a JSON 503.
    let started = Instant::now();
    let response = client
        .post(format!("{}/orders", stack.base))
        .json(&order_body("tok_visa", &[(&products[0], 1)]))
        .send()
        .await
        .expect("the API must answer");
    let answered_in = started.elapsed();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let ready = client
        .get(format!("{}/readyz", stack.base))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(ready.status(), 503);

    cluster.start_server().await;
    let restarted = Instant::now();
    for n in 20..40 {
        place(n).await;
    }
    let drained = stack.wait_drained(Duration::from_secs(90)).await;
    eprintln!(
        "database crash: the API answered 503 in {} ms; orders placed after the restart drained {} ms after it",
        answered_in.as_millis(),
        (restarted.elapsed()).as_millis().max(drained.as_millis())
    );
    wait_until(
        "the listeners to reconnect",
        Duration::from_secs(30),
        || async { (listening_sessions(&url).await? == 3).then_some(()) },
    )
    .await;
    for service in workers.iter_mut().chain([&mut api]) {
        assert!(
            service.exited().is_none(),
            "{} exited during the outage: see {}",
            service.name,
            stack.logs().display()
        );
    }
    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .expect("a database connection");
    let report = invariants::check(&mut conn, &initial_stock, Some(&smtp.messages())).await;
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.orders, 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn services_started_before_their_database_wait_for_it_instead_of_exiting() {
    let cluster = PgCluster::start().await;
    cluster.create_database("orderflow").await;
    let url = cluster.url("orderflow");
    cluster.crash().await;
    let smtp = SmtpServer::start().await;
    let mut stack = Stack::new(&url, &smtp.url(), &[]);
    let client = orderflow_tests::http::client();
    let mut api = stack.start("order-api", "order-api");
    let mut workers = stack.start_workers(1);
    let api_log = stack.logs().join("order-api.1.log");
    wait_until(
        "the API to report the database unreachable",
        Duration::from_secs(30),
        || async {
            let log = std::fs::read_to_string(&api_log).ok()?;
            log.contains("database not reachable").then_some(())
        },
    )
    .await;
    for service in workers.iter_mut().chain([&mut api]) {
        assert!(
            service.exited().is_none(),
            "{} exited without a database",
            service.name
        );
    }

    cluster.start_server().await;
    stack.wait_ready(&client).await;
    let (products, initial_stock) = stack.create_catalog(&client, "LATE", &[10]).await;
    let body = order_body("tok_visa", &[(&products[0], 2)]);
    place_with_retry(
        &client,
        &stack.base,
        "late-1",
        &body,
        Duration::from_secs(30),
    )
    .await
    .expect("the order is accepted");
    stack.wait_drained(Duration::from_secs(60)).await;
    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .expect("a database connection");
    let report = invariants::check(&mut conn, &initial_stock, Some(&smtp.messages())).await;
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!((report.orders, report.fulfilled), (1, 1));

    // SIGTERM while waiting for nothing in particular still exits 0.
    let status = api.terminate(Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[derive(QueryableByName)]
struct OrderProgress {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    fulfilled_events: i64,
}

async fn order_progress(url: &str, order_id: &str) -> Option<OrderProgress> {
    let mut conn = AsyncPgConnection::establish(url).await.ok()?;
    diesel::sql_query(
        "SELECT o.status, (SELECT count(*) FROM order_events e \
                            WHERE e.order_id = o.id AND e.type = 'fulfilled') AS fulfilled_events \
         FROM orders o WHERE o.id = $1::uuid",
    )
    .bind::<Text, _>(order_id)
    .get_result(&mut conn)
    .await
    .ok()
}

/// The workers' recordings commit without waiting for the WAL flush: a server crash can
/// lose the last of them. Such a crash loses no order and doubles nothing: the steps are
/// taken again, the provider charges the order once, and the e-mail goes out again with
/// the same Message-ID.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_that_loses_the_workers_last_recordings_has_their_steps_taken_again() {
    // The WAL writer flushes asynchronous commits every 10 s here (every 200 ms by
    // default), so that a crash right after an order is fulfilled loses what the workers
    // recorded for it; nothing else on this server commits meanwhile.
    let cluster =
        PgCluster::start_with(&[("wal_writer_delay", "10s"), ("autovacuum", "off")]).await;
    cluster.create_database("orderflow").await;
    let url = cluster.url("orderflow");
    let smtp = SmtpServer::start().await;
    let mut stack = Stack::new(&url, &smtp.url(), &[("TASK_LEASE_SECONDS", "2")]);
    let _gateway = stack.start_gateway(&[]).await;
    let client = orderflow_tests::http::client();
    let _api = stack.start_api(&client).await;
    let _workers = stack.start_workers(1);
    let (products, initial_stock) = stack.create_catalog(&client, "LOST", &[100]).await;

    // The WAL writer may happen to flush between the fulfilment and the crash: then that
    // order kept its recordings, and the next one is tried.
    let mut lost = None;
    for attempt in 0..3 {
        let body = order_body("tok_visa", &[(&products[0], 1)]);
        let key = format!("lost-recording-{attempt}");
        let placed = place_with_retry(&client, &stack.base, &key, &body, Duration::from_secs(30))
            .await
            .expect("the order is accepted");
        wait_until(
            "the order to be fulfilled",
            Duration::from_secs(30),
            || async {
                let progress = order_progress(&url, &placed.order_id).await?;
                (progress.status == "fulfilled").then_some(())
            },
        )
        .await;
        cluster.crash().await;
        cluster.start_server().await;
        let after_recovery = order_progress(&url, &placed.order_id)
            .await
            .expect("the order outlives the crash: its placement was durable");
        if after_recovery.status != "fulfilled" {
            lost = Some(placed.order_id);
            break;
        }
    }
    let order_id = lost.expect("one of three crashes right after a fulfilment lost a recording");

    stack.wait_drained(Duration::from_secs(60)).await;
    let progress = order_progress(&url, &order_id)
        .await
        .expect("the order is read");
    assert_eq!(
        (progress.status.as_str(), progress.fulfilled_events),
        ("fulfilled", 1),
        "fulfilled again, and once in its timeline"
    );
    let messages = smtp.messages();
    let message_ids: Vec<Option<String>> = messages
        .iter()
        .filter(|message| header(message, "X-Order-Id").as_deref() == Some(order_id.as_str()))
        .map(|message| header(message, "Message-ID"))
        .collect();
    assert_eq!(
        message_ids.len(),
        2,
        "sent before the crash and again after it"
    );
    assert!(message_ids[0].is_some() && message_ids[0] == message_ids[1]);

    let mut conn = AsyncPgConnection::establish(&url)
        .await
        .expect("a database connection");
    let report = invariants::check(&mut conn, &initial_stock, Some(&messages)).await;
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    let journal = stack.gateway_journal().expect("gateway-sim was started");
    let (provider_violations, charges) = invariants::check_provider(&mut conn, &journal).await;
    assert!(provider_violations.is_empty(), "{provider_violations:#?}");
    assert_eq!(
        charges, report.orders,
        "one charge per order at the provider"
    );
}
