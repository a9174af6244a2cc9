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

async fn insert_order(
    conn: &mut AsyncPgConnection,
    order: &NewOrder,
) -> Result<Placed, PlaceError> {
    let product_ids: Vec<Uuid> = order.lines.iter().map(|line| line.product_id).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|line| line.quantity.get()).collect();
    let order_id = Uuid::now_v7();
    let (key, fingerprint) = order.idempotency.clone().unzip();
    let first_task = ChargeArgs { order_id }.to_task();
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
