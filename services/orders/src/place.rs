//! Placing an order: the order, its lines, the `placed` event and the first task, written
//! by one statement in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int4, Int8, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{prepared_sql, TaskArgs};
use serde_json::json;
use uuid::Uuid;

use crate::email::CustomerEmail;
use crate::input::Quantity;
use crate::schema::orders;
use crate::status::{EventType, OrderStatus};
use crate::steps::charge::ChargeArgs;
use crate::views::{Customer, Order, OrderEvent, OrderItem};

#[derive(Debug, Clone)]
pub struct NewOrderLine {
    pub product_id: Uuid,
    pub quantity: Quantity,
}

/// An order that passed validation; prices come from the catalog at placement.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub customer_email: CustomerEmail,
    pub customer_name: String,
    pub shipping_address: Option<serde_json::Value>,
    pub payment_token: String,
    pub lines: Vec<NewOrderLine>,
    /// `Idempotency-Key` and a fingerprint of the request it came with.
    pub idempotency: Option<(String, String)>,
    /// The correlation id (the placing request's id) that its first task carries, so that
    /// the order's work can be followed across services; `None`, the current one
    /// ([`orderflow_queue::with_correlation_id`]). Orders placed together each keep theirs.
    pub correlation_id: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Placed {
    /// A new order, as it was stored (the caller need not read it back).
    Created(Box<Order>),
    /// The key's earlier order, and its access token.
    Replayed {
        order_id: Uuid,
        access_token: String,
    },
}

impl Placed {
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Created(order) => order.id,
            Self::Replayed { order_id, .. } => *order_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("unknown product(s): {0:?}")]
    UnknownProducts(Vec<Uuid>),
    #[error("the products are priced in different currencies")]
    MixedCurrencies,
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// Placed with others, it was not reached before the group's time was up (the
    /// database answering slowly); nothing was written for it.
    #[error("the database was too slow to place the order in time")]
    OutOfTime,
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// The whole placement in one statement, so that an order costs one statement and one
/// commit; what it does is written at the top of the file.
const PLACE_ORDER: &str = include_str!("sql/place_order.sql");

/// What [`PLACE_ORDER`] found and did.
#[derive(QueryableByName)]
struct Placement {
    #[diesel(sql_type = Int8)]
    known: i64,
    #[diesel(sql_type = Int8)]
    currencies: i64,
    #[diesel(sql_type = Nullable<Text>)]
    currency: Option<String>,
    #[diesel(sql_type = Int8)]
    total_cents: i64,
    #[diesel(sql_type = Nullable<Array<SqlUuid>>)]
    product_ids: Option<Vec<Uuid>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    skus: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Int8>>)]
    prices: Option<Vec<i64>>,
    /// Set when the order was inserted.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Int8>)]
    task_id: Option<i64>,
}

/// Places an order: one statement ([`PLACE_ORDER`]) in an explicit transaction. A replayed
/// idempotency key costs a second statement, which reads the earlier order's id.
///
/// Why not the statement alone, in an implicit transaction: that commits when the server
/// processes the protocol's Sync, after the statement's rows are already in its output
/// buffer. A server that crashes during that commit flushes the buffer as it dies, and a
/// client that does not wait for ReadyForQuery (tokio-postgres does not) reads a placed
/// order that was never committed. The fault-injection test caught exactly this: 202s for
/// orders lost in a PostgreSQL crash. An explicit COMMIT answers only once it is durable.
pub async fn place_order(
    conn: &mut AsyncPgConnection,
    order: &NewOrder,
) -> Result<Placed, PlaceError> {
    conn.transaction(async |conn| insert_order(conn, order).await)
        .await
}

/// Places several orders in one transaction: one durable commit (and one wake-up of the
/// payment worker) for all of them, each order by its own statement ([`PLACE_ORDER`]).
/// Each order gets its own result, in order: one turned down (an unknown product, mixed
/// currencies, a reused idempotency key) wrote nothing and leaves the others be. If the
/// database refuses one of them (a constraint it breaks), the transaction is rolled back
/// and each order is placed again in a transaction of its own, so that it fails alone.
/// Any other database error (a timeout, a lost connection) is the group's: returned alone,
/// nothing written. Once the group has taken `budget`, the orders not yet placed are left
/// out ([`PlaceError::OutOfTime`]), so that a slow database cannot hold the group's requests
/// for a statement timeout each.
pub async fn place_orders(
    conn: &mut AsyncPgConnection,
    orders: &[&NewOrder],
    budget: std::time::Duration,
) -> Result<Vec<Result<Placed, PlaceError>>, diesel::result::Error> {
    match place_together(conn, orders, budget).await {
        Err(error) if orders.len() > 1 && refused_for_one_order(&error) => {
            tracing::warn!(%error, orders = orders.len(), "placing orders together failed; placing each alone");
            let mut placed = Vec::with_capacity(orders.len());
            for order in orders {
                placed.push(place_order(conn, order).await);
            }
            Ok(placed)
        }
        placed => placed,
    }
}

async fn place_together(
    conn: &mut AsyncPgConnection,
    orders: &[&NewOrder],
    budget: std::time::Duration,
) -> Result<Vec<Result<Placed, PlaceError>>, diesel::result::Error> {
    let started = std::time::Instant::now();
    conn.transaction(async |conn| {
        let mut placed = Vec::with_capacity(orders.len());
        for order in orders {
            if started.elapsed() >= budget {
                placed.push(Err(PlaceError::OutOfTime));
                continue;
            }
            match insert_order(conn, order).await {
                Err(PlaceError::Database(error)) => return Err(error),
                outcome => placed.push(outcome),
            }
        }
        Ok(placed)
    })
    .await
}

/// Whether the database refused a statement for what one order holds (a constraint it
/// breaks), rather than for its own state (a timeout, a lost connection), which placing
/// each order again would only meet once per order.
fn refused_for_one_order(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    matches!(
        error,
        Error::DatabaseError(
            Kind::UniqueViolation
                | Kind::ForeignKeyViolation
                | Kind::CheckViolation
                | Kind::NotNullViolation,
            _
        )
    )
}

async fn insert_order(
    conn: &mut AsyncPgConnection,
    order: &NewOrder,
) -> Result<Placed, PlaceError> {
    let product_ids: Vec<Uuid> = order.lines.iter().map(|line| line.product_id).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|line| line.quantity.get()).collect();
    let order_id = Uuid::now_v7();
    let (key, fingerprint) = order.idempotency.clone().unzip();
    let first_task = ChargeArgs { order_id }
        .to_task()
        .caused_by(order.correlation_id.clone());
    let access_token = crate::access::new_access_token();
    let placement: Placement = prepared_sql(PLACE_ORDER)
        .bind::<Array<SqlUuid>, _>(&product_ids)
        .bind::<Array<Int4>, _>(&quantities)
        .bind::<SqlUuid, _>(order_id)
        .bind::<Text, _>(OrderStatus::Pending.as_str())
        .bind::<Text, _>(order.customer_email.as_str())
        .bind::<Text, _>(&order.customer_name)
        .bind::<Nullable<Jsonb>, _>(&order.shipping_address)
        .bind::<Text, _>(&order.payment_token)
        .bind::<Nullable<Text>, _>(&key)
        .bind::<Nullable<Text>, _>(&fingerprint)
        .bind::<Text, _>(&access_token)
        .bind::<Text, _>(EventType::Placed.as_str())
        .bind::<Text, _>(first_task.kind)
        .bind::<Jsonb, _>(&first_task.payload)
        .bind::<Int4, _>(first_task.max_attempts)
        .bind::<Nullable<Text>, _>(&first_task.unique_key)
        .bind::<Nullable<Text>, _>(first_task.stored_correlation_id())
        .get_result(conn)
        .await?;

    let catalog: HashMap<Uuid, (String, i64)> = placement
        .product_ids
        .unwrap_or_default()
        .into_iter()
        .zip(placement.skus.unwrap_or_default())
        .zip(placement.prices.unwrap_or_default())
        .map(|((id, sku), price)| (id, (sku, price)))
        .collect();
    if placement.known < product_ids.len() as i64 {
        let unknown = product_ids
            .iter()
            .filter(|id| !catalog.contains_key(id))
            .copied()
            .collect();
        return Err(PlaceError::UnknownProducts(unknown));
    }
    if placement.currencies != 1 {
        return Err(PlaceError::MixedCurrencies);
    }
    let Some(created_at) = placement.created_at else {
        return replay(conn, key.as_deref(), fingerprint.as_deref()).await;
    };
    tracing::debug!(task_id = placement.task_id, "order and first task inserted");
    let currency = placement.currency.unwrap_or_default();
    let total_cents = placement.total_cents;
    let placed_details = json!({ "total_cents": total_cents });
    // Everything of the new order is known here; `now()` is the transaction's start, so the
    // `placed` event has the order's own timestamp.
    let view = Order {
        id: order_id,
        status: OrderStatus::Pending,
        cancel_reason: None,
        customer: Customer {
            email: order.customer_email.as_str().to_string(),
            name: order.customer_name.clone(),
        },
        shipping_address: order.shipping_address.clone(),
        items: order
            .lines
            .iter()
            .filter_map(|line| {
                let (sku, price) = catalog.get(&line.product_id)?;
                Some(OrderItem {
                    product_id: line.product_id,
                    sku: sku.clone(),
                    quantity: line.quantity.get(),
                    unit_price_cents: *price,
                })
            })
            .collect(),
        total_cents,
        currency,
        payment: None,
        events: vec![OrderEvent {
            event_type: EventType::Placed.as_str().to_string(),
            at: created_at,
            details: placed_details.as_object().cloned().unwrap_or_default(),
        }],
        created_at,
        updated_at: created_at,
        access_token: Some(access_token),
    };
    Ok(Placed::Created(Box::new(view)))
}

async fn replay(
    conn: &mut AsyncPgConnection,
    key: Option<&str>,
    fingerprint: Option<&str>,
) -> Result<Placed, PlaceError> {
    let (order_id, stored, access_token): (Uuid, Option<String>, String) = orders::table
        .filter(orders::idempotency_key.eq(key))
        .select((
            orders::id,
            orders::request_fingerprint,
            orders::access_token,
        ))
        .first(conn)
        .await?;
    // The same token as the first answer: the client holding either can use it.
    if stored.as_deref() == fingerprint {
        Ok(Placed::Replayed {
            order_id,
            access_token,
        })
    } else {
        Err(PlaceError::IdempotencyKeyReused)
    }
}
