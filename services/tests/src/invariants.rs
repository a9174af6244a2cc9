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
        .expect("checking the invariants")
}

/// What the provider did, against what the database says, from the provider's journal:
/// no idempotency key was charged twice; every payment the database holds as captured or
/// refunded is a charge the provider made, for the same amount; every charge the provider
/// made for an order is that order's captured payment or was refunded. Returns the
/// violations, and the number of charges the provider made.
pub async fn check_provider(
    conn: &mut AsyncPgConnection,
    journal: &std::path::Path,
) -> (Vec<String>, usize) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use gateway_sim::api::ChargeStatus;
    use gateway_sim::journal::{read_all, Entry};
    use orderflow::schema::payments;

    let entries = read_all(journal).unwrap_or_else(|e| panic!("{}: {e}", journal.display()));
    let mut violations = Vec::new();
    let mut charges: HashMap<String, (String, i64)> = HashMap::new(); // charge id -> (key, amount)
    let mut charged_keys: HashMap<String, usize> = HashMap::new();
    let mut refunded: std::collections::HashSet<String> = Default::default();
    for entry in entries {
        match entry {
            Entry::Charge(charge) => {
                *charged_keys
                    .entry(charge.idempotency_key.clone())
                    .or_default() += 1;
                if charge.status == ChargeStatus::Succeeded {
                    charges.insert(charge.id, (charge.idempotency_key, charge.amount));
                }
            }
            Entry::Refund(refund) => {
                refunded.insert(refund.charge);
            }
        }
    }
    for (key, times) in &charged_keys {
        if *times > 1 {
            violations.push(format!("the provider charged key {key} {times} times"));
        }
    }
    let stored: Vec<(Uuid, String, i64, Option<String>)> = payments::table
        .select((
            payments::order_id,
            payments::status,
            payments::amount_cents,
            payments::gateway_charge_id,
        ))
        .load(conn)
        .await
        .expect("payments");
    let mut recorded: HashMap<String, (Uuid, String)> = HashMap::new();
    for (order_id, status, amount, charge_id) in stored {
        let Some(charge_id) = charge_id else { continue };
        match charges.get(&charge_id) {
            Some((_, charged)) if *charged == amount => {}
            other => violations.push(format!(
                "order {order_id}: payment {status} of {amount} as {charge_id}, provider has {other:?}"
            )),
        }
        if status == "refunded" && !refunded.contains(&charge_id) {
            violations.push(format!(
                "order {order_id}: refunded, but not at the provider"
            ));
        }
        recorded.insert(charge_id, (order_id, status));
    }
    for (charge_id, (key, _)) in &charges {
        match recorded.get(charge_id) {
            Some((_, status)) if status == "captured" || refunded.contains(charge_id) => {}
            Some((order_id, status)) => violations.push(format!(
                "order {order_id}: payment {status} but charge {charge_id} was never refunded"
            )),
            None if refunded.contains(charge_id) => {}
            None => violations.push(format!(
                "the provider charged {key} ({charge_id}); no order holds it and it was not refunded"
            )),
        }
    }
    (violations, charged_keys.len())
}
