//! The spec's invariants (`orderflow::invariants`), with a database error failing the test.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
pub use orderflow::invariants::Report;
use uuid::Uuid;

pub async fn check(
    conn: &mut AsyncPgConnection,
    initial_stock: &HashMap<Uuid, i32>,
    received: Option<&[String]>,
) -> Report {
    orderflow::invariants::check(conn, initial_stock, received)
        .await
        .unwrap_or_else(|e| panic!("checking the invariants: {e}"))
}
