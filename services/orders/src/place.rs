//! Placing an order: the order, its lines, the `placed` event and the first task, in one
//! transaction.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use uuid::Uuid;

use crate::lifecycle::append_event;
use crate::schema::{order_items, orders, products};
use crate::status::{EventType, OrderStatus};
use crate::tasks;
use crate::views::{Customer, Order, OrderEvent, OrderItem};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct NewOrderLine {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// An order that passed validation; prices come from the catalog at placement.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub customer_email: String,
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
    /// The key's earlier order.
    Replayed(Uuid),
}

impl Placed {
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::Created(order) => order.id,
            Self::Replayed(id) => *id,
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
    let catalog: HashMap<Uuid, (String, i64, String)> = products::table
        .filter(products::id.eq_any(&product_ids))
        .select((
            products::id,
            (products::sku, products::price_cents, products::currency),
        ))
        .load::<(Uuid, (String, i64, String))>(conn)
        .await?
        .into_iter()
        .collect();
    let unknown: Vec<Uuid> = product_ids
        .iter()
        .filter(|id| !catalog.contains_key(id))
        .copied()
        .collect();
    if !unknown.is_empty() {
        return Err(PlaceError::UnknownProducts(unknown));
    }
    let mut currencies = catalog.values().map(|(_, _, currency)| currency.as_str());
    let currency = currencies.next().unwrap_or("USD").to_string();
    if currencies.any(|other| other != currency) {
        return Err(PlaceError::MixedCurrencies);
    }
    let total_cents: i64 = order
        .lines
        .iter()
        .map(|line| catalog[&line.product_id].1 * i64::from(line.quantity))
        .sum();

    let order_id = Uuid::now_v7();
    let (key, fingerprint) = order.idempotency.clone().unzip();
    // With a key, a concurrent duplicate blocks here until the first commits, then
    // inserts nothing and finds the first's order below.
    let created_at: Vec<DateTime<Utc>> = diesel::insert_into(orders::table)
        .values((
            orders::id.eq(order_id),
            orders::status.eq(OrderStatus::Pending.as_str()),
            orders::customer_email.eq(&order.customer_email),
            orders::customer_name.eq(&order.customer_name),
            orders::shipping_address.eq(&order.shipping_address),
            orders::payment_token.eq(&order.payment_token),
            orders::total_cents.eq(total_cents),
            orders::currency.eq(&currency),
            orders::idempotency_key.eq(&key),
            orders::request_fingerprint.eq(&fingerprint),
        ))
        .on_conflict(orders::idempotency_key)
        .do_nothing()
        .returning(orders::created_at)
        .get_results(conn)
        .await?;
    let Some(created_at) = created_at.into_iter().next() else {
        return replay(conn, key.as_deref(), fingerprint.as_deref()).await;
    };

    let items: Vec<_> = order
        .lines
        .iter()
        .enumerate()
        .map(|(line_no, line)| {
            let (sku, price, _) = &catalog[&line.product_id];
            (
                order_items::order_id.eq(order_id),
                order_items::line_no.eq(line_no as i32),
                order_items::product_id.eq(line.product_id),
                order_items::sku.eq(sku.clone()),
                order_items::quantity.eq(line.quantity),
                order_items::unit_price_cents.eq(*price),
            )
        })
        .collect();
    diesel::insert_into(order_items::table)
        .values(items)
        .execute(conn)
        .await?;
    let placed_details = json!({ "total_cents": total_cents });
    append_event(conn, order_id, EventType::Placed, placed_details.clone()).await?;
    orderflow_queue::enqueue(conn, &tasks::charge_payment(order_id)).await?;
    // Everything of the new order is known here; `now()` is the transaction's start, so the
    // `placed` event has the order's own timestamp.
    let view = Order {
        id: order_id,
        status: OrderStatus::Pending.as_str().to_string(),
        cancel_reason: None,
        customer: Customer {
            email: order.customer_email.clone(),
            name: order.customer_name.clone(),
        },
        shipping_address: order.shipping_address.clone(),
        items: order
            .lines
            .iter()
            .map(|line| {
                let (sku, price, _) = &catalog[&line.product_id];
                OrderItem {
                    product_id: line.product_id,
                    sku: sku.clone(),
                    quantity: line.quantity,
                    unit_price_cents: *price,
                }
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
    };
    Ok(Placed::Created(Box::new(view)))
}

async fn replay(
    conn: &mut AsyncPgConnection,
    key: Option<&str>,
    fingerprint: Option<&str>,
) -> Result<Placed, PlaceError> {
    let (order_id, stored): (Uuid, Option<String>) = orders::table
        .filter(orders::idempotency_key.eq(key))
        .select((orders::id, orders::request_fingerprint))
        .first(conn)
        .await?;
    if stored.as_deref() == fingerprint {
        Ok(Placed::Replayed(order_id))
    } else {
        Err(PlaceError::IdempotencyKeyReused)
    }
}
