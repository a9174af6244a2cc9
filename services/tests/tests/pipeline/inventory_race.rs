//! Stock under contention: no overselling, no deadlocks.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::{order_items, orders, products};
use orderflow_tests::{SmtpServer, TestApp, TestDb, Workers};

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
    let app = TestApp::spawn(&db).await;
    let scarce = app.create_product("SCARCE", 999, 10).await;
    // Orders first, then two inventory workers competing for them.
    let ids = place_all(&app, (0..50).map(|_| vec![(scarce.clone(), 1)]).collect()).await;
    let workers = Workers::builder(&db, &smtp.url())
        .inventory_replicas(2)
        .spawn();

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
    let app = TestApp::spawn(&db).await;
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
    let workers = Workers::builder(&db, &smtp.url())
        .inventory_replicas(2)
        .spawn();

    for id in &ids {
        assert_eq!(app.wait_terminal(id).await["status"], "fulfilled");
    }
    assert_eq!(
        deadlocks(&mut conn, &db.name).await,
        deadlocks_before,
        "PostgreSQL saw a deadlock"
    );
    let stock = stock_by_sku(&mut conn).await;
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
        run_at: chrono::Utc::now(),
        claimed_at: chrono::Utc::now(),
        correlation_id: None,
        lease: orderflow_queue::LeaseClock::until(std::time::Instant::now()),
    }
}

/// The inventory handler's group recording of these orders, as its worker runs it.
async fn record_group(
    conn: &mut diesel_async::AsyncPgConnection,
    order_ids: &[uuid::Uuid],
) -> Result<Vec<orderflow::lifecycle::Reservation>, orderflow_queue::TaskError> {
    use orderflow_queue::{Recording, TaskHandler};
    let task = reservation_task();
    let span = tracing::Span::none();
    let group: Vec<Recording<'_, uuid::Uuid>> = order_ids
        .iter()
        .map(|order_id| Recording {
            task: &task,
            outcome: order_id,
            span: &span,
        })
        .collect();
    inventory_worker::ReserveInventory
        .record_group(conn, &group)
        .await
}

/// Two reservation groups over the same two orders, in opposite order, the second
/// started while the first is open: it waits at its first statement (the first group holds
/// the products), then finds both orders reserved and takes nothing. No deadlock, no
/// double reservation.
#[tokio::test(flavor = "multi_thread")]
async fn reservation_groups_sharing_products_wait_for_each_other_without_deadlock() {
    use diesel_async::AsyncConnection;
    use orderflow::lifecycle::Reservation;
    use orderflow_queue::TaskError;

    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let p1 = app.create_product("P1", 100, 10).await;
    let p2 = app.create_product("P2", 100, 10).await;
    let o1 = app.place_order_id("tok_visa", &[(&p1, 1), (&p2, 2)]).await;
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
        .expect("the statement runs");
    let deadlocks_before = deadlocks(&mut conn, &db.name).await;

    let mut first = db.connect().await;
    let url = db.url.clone();
    let (first_group, second) = first
        .transaction(async |conn| {
            let reserved = record_group(conn, &[o1, o2]).await?;
            let second = tokio::spawn(async move {
                let mut conn = diesel_async::AsyncPgConnection::establish(&url)
                    .await
                    .map_err(TaskError::retryable)?;
                conn.transaction(async |conn| record_group(conn, &[o2, o1]).await)
                    .await
            });
            wait_for_a_lock_wait(&db).await;
            Ok::<_, TaskError>((reserved, second))
        })
        .await
        .expect("first group");
    let second_group = second
        .await
        .expect("the second group finishes")
        .expect("second group");

    assert_eq!(first_group, [Reservation::Reserved, Reservation::Reserved]);
    assert_eq!(
        second_group,
        [Reservation::NotApplicable, Reservation::NotApplicable]
    );
    assert_eq!(deadlocks(&mut conn, &db.name).await, deadlocks_before);
    let stock = stock_by_sku(&mut conn).await;
    assert_eq!(stock, [9, 7]);
}

/// Within one group, orders are served in the group's order from the stock the earlier
/// ones left: the second of two orders for the last units is cancelled out of stock, and
/// an order that is not paid is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_group_serves_its_orders_in_order_from_what_is_left() {
    use orderflow::lifecycle::Reservation;

    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let last = app.create_product("LAST", 100, 3).await;
    let first = app.place_order_id("tok_visa", &[(&last, 2)]).await;
    let second = app.place_order_id("tok_visa", &[(&last, 2)]).await;
    let unpaid = app.place_order_id("tok_visa", &[(&last, 1)]).await;
    let ids: Vec<uuid::Uuid> = [&first, &second, &unpaid]
        .iter()
        .map(|id| id.parse().expect("a valid literal"))
        .collect();
    let mut conn = db.connect().await;
    diesel::update(orders::table.filter(orders::id.eq_any(&ids[..2])))
        .set(orders::status.eq("paid"))
        .execute(&mut conn)
        .await
        .expect("the statement runs");

    let reserved = record_group(&mut conn, &ids).await.expect("record group");
    let last_id: uuid::Uuid = last.parse().expect("a valid literal");
    assert_eq!(
        reserved,
        [
            Reservation::Reserved,
            Reservation::OutOfStock {
                short_product_ids: vec![last_id]
            },
            Reservation::NotApplicable,
        ]
    );
    assert_eq!(app.get_json(&format!("/products/{last}")).await["stock"], 1);
    let mut statuses = Vec::new();
    for id in &ids {
        let order = app.order(&id.to_string()).await;
        statuses.push((
            order["status"].as_str().unwrap_or_default().to_string(),
            order["cancel_reason"].as_str().map(str::to_string),
        ));
    }
    assert_eq!(
        statuses,
        [
            ("reserved".to_string(), None),
            ("cancelled".to_string(), Some("out_of_stock".to_string())),
            ("pending".to_string(), None),
        ]
    );
    // Each moved order got its event and its follow-up: the confirmation e-mail for the
    // first, a refund for the second.
    let kinds: Vec<String> = orderflow::schema::order_events::table
        .filter(orderflow::schema::order_events::order_id.eq_any(&ids))
        .filter(orderflow::schema::order_events::event_type.ne("placed"))
        .order(orderflow::schema::order_events::id)
        .select(orderflow::schema::order_events::event_type)
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(kinds, ["reserved", "cancelled"]);
    #[derive(QueryableByName)]
    struct Kind {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kind: String,
    }
    let follow_ups: Vec<String> =
        diesel::sql_query("SELECT kind FROM tasks WHERE kind <> 'payment.charge' ORDER BY id")
            .load::<Kind>(&mut conn)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|row| row.kind)
            .collect();
    assert_eq!(follow_ups, ["shipping.book", "payment.refund"]);
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

/// Every product's stock, in sku order.
async fn stock_by_sku(conn: &mut diesel_async::AsyncPgConnection) -> Vec<i32> {
    products::table
        .order(products::sku)
        .select(products::stock)
        .load(conn)
        .await
        .unwrap_or_default()
}
