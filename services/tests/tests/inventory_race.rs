//! Stock under contention: no overselling, no deadlocks.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::{order_items, orders, products};
use orderflow_tests::{spawn_app, spawn_workers, SmtpServer, TestDb};

async fn place_all(
    app: &orderflow_tests::TestApp,
    baskets: Vec<Vec<(String, i64)>>,
) -> Vec<String> {
    let requests = baskets.iter().map(|basket| {
        let items: Vec<(&str, i64)> = basket.iter().map(|(id, q)| (id.as_str(), *q)).collect();
        async move { app.place_order_id("tok_visa", &items).await }
    });
    futures_util::future::join_all(requests).await
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_orders_racing_for_ten_units_fulfil_exactly_ten() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&db).await;
    let scarce = app.create_product("SCARCE", 999, 10).await;
    // Orders first, then two inventory workers competing for them.
    let ids = place_all(&app, (0..50).map(|_| vec![(scarce.clone(), 1)]).collect()).await;
    let workers = spawn_workers(&db, &smtp.url(), 2);

    let mut fulfilled = 0;
    let mut out_of_stock = 0;
    for id in &ids {
        let order = app.wait_terminal(id).await;
        match (order["status"].as_str(), order["cancel_reason"].as_str()) {
            (Some("fulfilled"), _) => fulfilled += 1,
            (Some("cancelled"), Some("out_of_stock")) => out_of_stock += 1,
            other => panic!("unexpected end state {other:?}"),
        }
    }
    assert_eq!(fulfilled, 10);
    assert_eq!(out_of_stock, 40);
    assert_eq!(
        app.get_json(&format!("/products/{scarce}")).await["stock"],
        0
    );
    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_in_opposite_product_order_do_not_deadlock() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&db).await;
    let a = app.create_product("A", 100, 1000).await;
    let b = app.create_product("B", 100, 1000).await;
    let c = app.create_product("C", 100, 1000).await;
    let baskets = (0..60)
        .map(|n| match n % 3 {
            0 => vec![(a.clone(), 1), (b.clone(), 2), (c.clone(), 1)],
            1 => vec![(c.clone(), 1), (b.clone(), 2), (a.clone(), 1)],
            _ => vec![(b.clone(), 2), (a.clone(), 1), (c.clone(), 1)],
        })
        .collect();
    let ids = place_all(&app, baskets).await;
    let mut conn = db.connect().await;
    let deadlocks_before = deadlocks(&mut conn, &db.name).await;
    let workers = spawn_workers(&db, &smtp.url(), 2);

    for id in &ids {
        assert_eq!(app.wait_terminal(id).await["status"], "fulfilled");
    }
    assert_eq!(
        deadlocks(&mut conn, &db.name).await,
        deadlocks_before,
        "PostgreSQL saw a deadlock"
    );
    let stock: Vec<i32> = products::table
        .order(products::sku)
        .select(products::stock)
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(stock, [1000 - 60, 1000 - 120, 1000 - 60]);

    // Invariant 2: what left the shelves is what fulfilled orders hold.
    let sold: Option<i64> = order_items::table
        .inner_join(orders::table)
        .filter(orders::status.eq_any(["fulfilled", "reserved"]))
        .select(diesel::dsl::sum(order_items::quantity))
        .first(&mut conn)
        .await
        .unwrap_or(None);
    assert_eq!(sold, Some(240));
    workers.stop().await;
}

async fn deadlocks(conn: &mut diesel_async::AsyncPgConnection, database: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        deadlocks: i64,
    }
    diesel::sql_query("SELECT deadlocks FROM pg_stat_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(database)
        .get_result::<Count>(conn)
        .await
        .map(|c| c.deadlocks)
        .unwrap_or(-1)
}

/// A claimed task for calling the inventory handler directly (it reads only the outcome).
fn reservation_task() -> orderflow_queue::ClaimedTask {
    orderflow_queue::ClaimedTask {
        id: 0,
        kind: "inventory.reserve".into(),
        payload: serde_json::Value::Null,
        attempt: 1,
        max_attempts: 1,
        claim_token: uuid::Uuid::nil(),
        lease_expires_at: chrono::Utc::now(),
        correlation_id: None,
    }
}

/// Two reservation groups over the same two orders, recorded in opposite order: had each
/// group locked products as it reserved, each would hold what the other waits for. The
/// handler locks a group's products first, so the second group waits at its first
/// statement until the first commits.
#[tokio::test(flavor = "multi_thread")]
async fn reservation_groups_sharing_products_lock_them_first_and_do_not_deadlock() {
    use diesel_async::AsyncConnection;
    use inventory_worker::ReserveInventory;
    use orderflow::lifecycle::Reservation;
    use orderflow_queue::{TaskError, TaskHandler};

    let db = TestDb::new().await;
    let app = spawn_app(&db).await;
    let p1 = app.create_product("P1", 100, 10).await;
    let p2 = app.create_product("P2", 100, 10).await;
    let o1 = app.place_order_id("tok_visa", &[(&p1, 1)]).await;
    let o2 = app.place_order_id("tok_visa", &[(&p2, 1)]).await;
    let (o1, o2): (uuid::Uuid, uuid::Uuid) = match (o1.parse(), o2.parse()) {
        (Ok(o1), Ok(o2)) => (o1, o2),
        other => panic!("order ids: {other:?}"),
    };
    let mut conn = db.connect().await;
    // No workers run: the test stands in for the charge step.
    diesel::update(orders::table)
        .set(orders::status.eq("paid"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadlocks_before = deadlocks(&mut conn, &db.name).await;

    let task = reservation_task();
    let mut first = db.connect().await;
    let url = db.url.clone();
    let (first_group, second) = first
        .transaction(async |conn| {
            ReserveInventory.lock_shared(conn, &[&o1, &o2]).await?;
            let r1 = ReserveInventory.record(conn, &task, &o1).await?;
            let second = tokio::spawn(async move {
                let task = reservation_task();
                let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                    .await
                    .map_err(TaskError::retryable)?;
                conn.transaction(async |conn| {
                    ReserveInventory.lock_shared(conn, &[&o2, &o1]).await?;
                    let r2 = ReserveInventory.record(conn, &task, &o2).await?;
                    let r1 = ReserveInventory.record(conn, &task, &o1).await?;
                    Ok::<_, TaskError>((r2, r1))
                })
                .await
            });
            wait_for_a_lock_wait(&db).await;
            let r2 = ReserveInventory.record(conn, &task, &o2).await?;
            Ok::<_, TaskError>(((r1, r2), second))
        })
        .await
        .unwrap_or_else(|e| panic!("first group: {e}"));
    let second_group = second
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("second group: {e}"));

    assert_eq!(first_group, (Reservation::Reserved, Reservation::Reserved));
    // The second group found both orders already reserved and took nothing.
    assert_eq!(
        second_group,
        (Reservation::NotApplicable, Reservation::NotApplicable)
    );
    assert_eq!(deadlocks(&mut conn, &db.name).await, deadlocks_before);
    let stock: Vec<i32> = products::table
        .order(products::sku)
        .select(products::stock)
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(stock, [9, 9]);
}

/// Waits until a session of the test's database waits for a row lock.
async fn wait_for_a_lock_wait(db: &TestDb) {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    orderflow_tests::wait_until(
        "a session to wait for a lock",
        std::time::Duration::from_secs(10),
        || async {
            let mut probe = db.connect().await;
            let waiting: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .get_result(&mut probe)
            .await
            .ok()?;
            (waiting.n > 0).then_some(())
        },
    )
    .await;
}
