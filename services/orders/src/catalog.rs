//! The demo catalog: 100 products, so that storefront demos and load tests have
//! something to sell.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::products;

const ADJECTIVES: [&str; 10] = [
    "Classic", "Organic", "Vintage", "Compact", "Deluxe", "Rugged", "Smart", "Handmade",
    "Recycled", "Travel",
];
const NOUNS: [&str; 10] = [
    "Mug", "Backpack", "Lamp", "Notebook", "Teapot", "Scarf", "Speaker", "Bottle", "Candle",
    "Wallet",
];

/// Inserts the demo products that are missing (by sku); returns how many were added.
pub async fn seed_demo_catalog(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let rows: Vec<_> = (0..100)
        .map(|n| {
            let (adjective, noun) = (ADJECTIVES[n / 10], NOUNS[n % 10]);
            (
                products::sku.eq(format!("DEMO-{:03}", n + 1)),
                products::name.eq(format!("{adjective} {noun}")),
                products::price_cents.eq(499 + (n as i64 * 137) % 9_500),
                products::currency.eq("USD"),
                products::stock.eq(1_000_000),
            )
        })
        .collect();
    diesel::insert_into(products::table)
        .values(rows)
        .on_conflict(products::sku)
        .do_nothing()
        .execute(conn)
        .await
}
