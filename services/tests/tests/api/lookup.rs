//! Reads by key made many keys at a time: concurrent asks share a read, each gets its own
//! key's value, and a failed read fails only the asks it served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::join_all;
use orderflow::lifecycle;
use orderflow::lookup::{BatchedLookup, LookupError, LookupMany};
use orderflow::schema::products;
use orderflow::status::NotificationKind;
use orderflow_tests::{TestApp, TestDb};
use uuid::Uuid;

/// Products' stock by id, counting its reads and failing a read that asks for `poison`.
struct StockById {
    reads: Arc<AtomicUsize>,
    poison: Uuid,
}

impl LookupMany for StockById {
    type Key = Uuid;
    type Value = i32;

    async fn read(
        &self,
        conn: &mut AsyncPgConnection,
        ids: &[Uuid],
    ) -> QueryResult<Vec<(Uuid, i32)>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if ids.contains(&self.poison) {
            return Err(diesel::result::Error::NotFound);
        }
        products::table
            .filter(products::id.eq_any(ids))
            .select((products::id, products::stock))
            .load(conn)
            .await
    }
}

async fn insert_products(conn: &mut AsyncPgConnection, count: i32) -> Vec<(Uuid, i32)> {
    let rows: Vec<_> = (0..count)
        .map(|n| {
            (
                products::sku.eq(format!("SKU-{n}")),
                products::name.eq(format!("Product {n}")),
                products::price_cents.eq(100_i64),
                products::stock.eq(n * 3),
            )
        })
        .collect();
    diesel::insert_into(products::table)
        .values(rows)
        .returning((products::id, products::stock))
        .get_results(conn)
        .await
        .expect("the query runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_asks_share_reads_and_each_gets_its_own_value() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let stocked = insert_products(&mut conn, 32).await;
    let reads = Arc::new(AtomicUsize::new(0));
    let lookup = BatchedLookup::start(
        db.pool(2),
        StockById {
            reads: Arc::clone(&reads),
            poison: Uuid::new_v4(),
        },
    );

    // Every product once, the first twice more, and one id that is no product.
    let missing = Uuid::new_v4();
    let mut asked: Vec<Uuid> = stocked.iter().map(|(id, _)| *id).collect();
    asked.extend([stocked[0].0, stocked[0].0, missing]);
    let answers = join_all(asked.iter().map(|id| lookup.get(*id))).await;

    let expected: HashMap<Uuid, i32> = stocked.into_iter().collect();
    for (id, answer) in asked.iter().zip(&answers) {
        let answer = answer.as_ref().expect("an answer");
        assert_eq!(answer.as_ref(), expected.get(id), "product {id}");
    }
    assert!(answers.last().is_some_and(|a| matches!(a, Ok(None))));
    // One at a time, this would be 35 reads; the first ask may be read alone, and the
    // rest wait for the next read while it runs.
    let reads = AtomicUsize::load(&reads, Ordering::SeqCst);
    assert!(reads <= 8, "{} asks took {reads} reads", asked.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_read_fails_the_asks_it_served_and_the_next_read_runs() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let stocked = insert_products(&mut conn, 2).await;
    let poison = Uuid::new_v4();
    let lookup = BatchedLookup::start(
        db.pool(2),
        StockById {
            reads: Arc::new(AtomicUsize::new(0)),
            poison,
        },
    );

    let failed = lookup.get(poison).await;
    assert!(
        matches!(failed, Err(LookupError::Database(_))),
        "{failed:?}"
    );
    let after = lookup.get(stocked[1].0).await;
    assert_eq!(after.ok().flatten(), Some(stocked[1].1));
}

#[tokio::test(flavor = "multi_thread")]
async fn notification_facts_of_many_emails_come_from_one_read_by_order_and_kind() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let pen = app.create_product("PEN", 250, 10).await;
    let first =
        Uuid::parse_str(&app.place_order_id("tok_visa", &[(&mug, 2)]).await).unwrap_or_default();
    let second = Uuid::parse_str(
        &app.place_order_id("tok_visa", &[(&pen, 1), (&mug, 1)])
            .await,
    )
    .unwrap_or_default();
    let mut conn = db.connect().await;
    diesel::sql_query(
        "INSERT INTO sent_emails (order_id, kind, message_id, recipient) \
         VALUES ($1, 'order_confirmed', 'm-1', 'a@example.com')",
    )
    .bind::<diesel::sql_types::Uuid, _>(first)
    .execute(&mut conn)
    .await
    .expect("the statement runs");

    let confirmed = NotificationKind::OrderConfirmed;
    let cancelled = NotificationKind::OrderCancelled;
    let wanted = [
        (first, confirmed),
        (second, confirmed),
        (Uuid::new_v4(), confirmed),
        (first, cancelled),
    ];
    let facts: HashMap<_, _> = lifecycle::notification_facts(&mut conn, &wanted)
        .await
        .expect("notification facts")
        .into_iter()
        .collect();

    assert_eq!(
        facts.len(),
        3,
        "the e-mail of an order that does not exist is left out"
    );
    let sent = |key| facts.get(&key).map(|(_, already_sent)| *already_sent);
    assert_eq!(sent((first, confirmed)), Some(true));
    assert_eq!(sent((first, cancelled)), Some(false));
    assert_eq!(sent((second, confirmed)), Some(false));
    let lines = |key| {
        facts.get(&key).map(|(mail, _)| {
            let skus: Vec<&str> = mail.items.iter().map(|i| i.sku.as_str()).collect();
            (mail.order_id, mail.total_cents, skus.join(","))
        })
    };
    assert_eq!(lines((first, confirmed)), Some((first, 2000, "MUG".into())));
    assert_eq!(
        lines((second, confirmed)),
        Some((second, 1250, "PEN,MUG".into()))
    );
}
