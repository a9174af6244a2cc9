//! Orders placed together (the API groups the orders that arrive while others are being
//! placed): one transaction for the group, an answer per order, and an order that fails
//! fails alone.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use orderflow::email::CustomerEmail;
use orderflow::input::Quantity;
use orderflow::lifecycle::{place_orders, NewOrder, NewOrderLine, PlaceError, Placed};
use orderflow_tests::{TestApp, TestDb};
use uuid::Uuid;

/// Far more than a group needs: these tests are not about its time running out.
const AMPLE: Duration = Duration::from_secs(60);

fn new_order(product_id: Uuid, name: &str, idempotency: Option<(&str, &str)>) -> NewOrder {
    NewOrder {
        customer_email: CustomerEmail::parse("group@example.com")
            .unwrap_or_else(|e| panic!("a valid address: {e}")),
        customer_name: name.to_string(),
        shipping_address: None,
        payment_token: "tok_visa".to_string(),
        lines: vec![NewOrderLine {
            product_id,
            quantity: Quantity::new(1).unwrap_or_else(|| panic!("1 is a quantity")),
        }],
        idempotency: idempotency
            .map(|(key, fingerprint)| (key.to_string(), fingerprint.to_string())),
        correlation_id: Some(format!("request-{name}")),
    }
}

/// Places `orders` as one group, as the API does.
async fn place(
    conn: &mut AsyncPgConnection,
    orders: &[NewOrder],
    budget: Duration,
) -> Result<Vec<Result<Placed, PlaceError>>, diesel::result::Error> {
    place_orders(conn, &orders.iter().collect::<Vec<_>>(), budget).await
}

#[derive(diesel::QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Counted>(&mut db.connect().await)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// A product to order, made through the API.
async fn product(db: &TestDb) -> Uuid {
    let app = TestApp::spawn(db).await;
    let id = app.create_product("MUG", 1000, 100).await;
    Uuid::parse_str(&id).unwrap_or_else(|e| panic!("a product id: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_placed_together_share_one_transaction_and_each_gets_its_own_answer() {
    let db = TestDb::new().await;
    let mug = product(&db).await;
    let orders = [
        new_order(mug, "first", Some(("key-1", "body-1"))),
        new_order(Uuid::now_v7(), "unknown product", None),
        new_order(mug, "second", None),
        // The first order's key again: with its body a replay, with another a reuse.
        new_order(mug, "first again", Some(("key-1", "body-1"))),
        new_order(mug, "other body", Some(("key-1", "body-2"))),
    ];
    let mut conn = db.connect().await;
    let placed = place(&mut conn, &orders, AMPLE)
        .await
        .unwrap_or_else(|e| panic!("the group is placed: {e}"));

    let [first, unknown, second, again, reused] = placed.as_slice() else {
        panic!("one answer per order: {placed:?}");
    };
    let (Ok(Placed::Created(first)), Ok(Placed::Created(second))) = (first, second) else {
        panic!("both new orders created: {first:?}, {second:?}");
    };
    assert_ne!(first.id, second.id);
    assert!(matches!(unknown, Err(PlaceError::UnknownProducts(ids)) if ids.len() == 1));
    assert!(
        matches!(again, Ok(Placed::Replayed { order_id, .. }) if *order_id == first.id),
        "a replay in the same group finds the first order: {again:?}"
    );
    assert!(matches!(reused, Err(PlaceError::IdempotencyKeyReused)));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM orders").await, 2);
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM tasks").await,
        2,
        "a payment task each"
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT xmin::text) AS n FROM orders").await,
        1,
        "one transaction wrote both"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM tasks \
             WHERE correlation_id IN ('request-first', 'request-second')"
        )
        .await,
        2,
        "each first task carries its own order's request id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_the_database_refuses_fails_alone_and_the_others_are_placed() {
    let db = TestDb::new().await;
    let mug = product(&db).await;
    // Stands for any constraint one order can break.
    db.connect()
        .await
        .batch_execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.customer_name = 'poison' THEN \
               RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON orders \
               FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
        )
        .await
        .unwrap_or_else(|e| panic!("the trigger is created: {e}"));
    let orders = [
        new_order(mug, "before", None),
        new_order(mug, "poison", None),
        new_order(mug, "after", None),
    ];
    let mut conn = db.connect().await;
    let placed = place(&mut conn, &orders, AMPLE)
        .await
        .unwrap_or_else(|e| panic!("the others are placed: {e}"));

    assert!(
        matches!(placed[0], Ok(Placed::Created(_))),
        "{:?}",
        placed[0]
    );
    assert!(
        matches!(placed[1], Err(PlaceError::Database(_))),
        "{:?}",
        placed[1]
    );
    assert!(
        matches!(placed[2], Ok(Placed::Created(_))),
        "{:?}",
        placed[2]
    );
    let names: Vec<String> =
        diesel::sql_query("SELECT customer_name AS name FROM orders ORDER BY customer_name")
            .load::<Named>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("orders read: {e}"))
            .into_iter()
            .map(|row| row.name)
            .collect();
    assert_eq!(names, ["after", "before"]);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM tasks").await, 2);
}

#[derive(diesel::QueryableByName)]
struct Named {
    #[diesel(sql_type = Text)]
    name: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_cannot_commit_writes_nothing_and_says_so() {
    let db = TestDb::new().await;
    let mug = product(&db).await;
    let orders = [new_order(mug, "one", None), new_order(mug, "two", None)];
    let mut conn = db.connect().await;
    // The session's statements time out at once: the database's state, not an order's.
    conn.batch_execute("SET statement_timeout = 1; SET lock_timeout = 1")
        .await
        .unwrap_or_else(|e| panic!("the settings apply: {e}"));
    let mut holder = db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN SHARE MODE")
        .await
        .unwrap_or_else(|e| panic!("the lock is taken: {e}"));
    let placed = place(&mut conn, &orders, AMPLE).await;
    holder
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("the lock is released: {e}"));

    assert!(placed.is_err(), "one error for the group: {placed:?}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM orders").await, 0);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM tasks").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_orders_a_group_has_no_time_left_for_are_left_out_with_nothing_written() {
    let db = TestDb::new().await;
    let mug = product(&db).await;
    let orders = [new_order(mug, "one", None), new_order(mug, "two", None)];
    let mut conn = db.connect().await;
    let placed = place(&mut conn, &orders, Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("the group commits what it placed: {e}"));

    assert!(
        placed
            .iter()
            .all(|p| matches!(p, Err(PlaceError::OutOfTime))),
        "{placed:?}"
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM orders").await, 0);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM tasks").await, 0);
}
