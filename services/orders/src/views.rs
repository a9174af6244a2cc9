//! Orders and products as the API shows them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::schema::{order_events, order_items, orders, payments, products};

#[derive(Debug, Clone, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = products)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub stock: i32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Customer {
    pub email: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = order_items)]
pub struct OrderItem {
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: i32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = payments)]
pub struct PaymentView {
    pub status: String,
    pub amount_cents: i64,
}

/// One step of the order's timeline; each event type adds its own fields.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderEvent {
    /// `placed`, `paid`, `reserved`, `fulfilled`, `cancelled`, `refunded`, `notified`,
    /// `task_dead`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
struct OrderRow {
    id: Uuid,
    status: String,
    cancel_reason: Option<String>,
    customer_email: String,
    customer_name: String,
    shipping_address: Option<serde_json::Value>,
    total_cents: i64,
    currency: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "id": "01a20c3b-5821-7140-a5c9-7cd83eb42df0",
    "status": "fulfilled",
    "cancel_reason": null,
    "customer": { "email": "ada@example.com", "name": "Ada Lovelace" },
    "items": [{ "product_id": "01a20c3a-0c1e-7d2b-9d55-5b4f3f1c2a10", "sku": "DEMO-001", "quantity": 2, "unit_price_cents": 1299 }],
    "total_cents": 2598,
    "currency": "USD",
    "payment": { "status": "captured", "amount_cents": 2598 },
    "events": [
        { "type": "placed", "at": "2026-11-24T06:25:45.503Z", "total_cents": 2598 },
        { "type": "paid", "at": "2026-11-24T06:25:45.536Z", "amount_cents": 2598 },
        { "type": "reserved", "at": "2026-11-24T06:25:45.540Z" },
        { "type": "fulfilled", "at": "2026-11-24T06:25:45.551Z" }
    ],
    "created_at": "2026-11-24T06:25:45.503Z",
    "updated_at": "2026-11-24T06:25:45.551Z"
}))]
pub struct Order {
    pub id: Uuid,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub customer: Customer,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<serde_json::Value>,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub currency: String,
    pub payment: Option<PaymentView>,
    pub events: Vec<OrderEvent>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One order with its lines, payment and timeline; `None` when it does not exist. Its
/// four reads share one snapshot, so the payment and the timeline always agree (a refund
/// committed between two reads could show a `refunded` event beside a captured payment).
/// Call it outside a transaction.
pub async fn load_order(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Option<Order>> {
    conn.build_transaction()
        .read_only()
        .repeatable_read()
        .run(async |conn| read_order(conn, order_id).await)
        .await
}

/// An order's lines, in the order they were placed.
pub async fn order_lines(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Vec<OrderItem>> {
    order_items::table
        .filter(order_items::order_id.eq(order_id))
        .order(order_items::line_no)
        .select(OrderItem::as_select())
        .load(conn)
        .await
}

async fn read_order(conn: &mut AsyncPgConnection, order_id: Uuid) -> QueryResult<Option<Order>> {
    let Some(row) = orders::table
        .find(order_id)
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()?
    else {
        return Ok(None);
    };
    let items = order_lines(conn, order_id).await?;
    let payment = payments::table
        .find(order_id)
        .select(PaymentView::as_select())
        .first(conn)
        .await
        .optional()?;
    let events = order_events::table
        .filter(order_events::order_id.eq(order_id))
        .order(order_events::id)
        .select((
            order_events::event_type,
            order_events::at,
            order_events::details,
        ))
        .load::<(String, DateTime<Utc>, serde_json::Value)>(conn)
        .await?
        .into_iter()
        .map(|(event_type, at, details)| OrderEvent {
            event_type,
            at,
            details: match details {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
        })
        .collect();
    Ok(Some(Order {
        id: row.id,
        status: row.status,
        cancel_reason: row.cancel_reason,
        customer: Customer {
            email: row.customer_email,
            name: row.customer_name,
        },
        shipping_address: row.shipping_address,
        items,
        total_cents: row.total_cents,
        currency: row.currency,
        payment,
        events,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }))
}

/// A summary row of the order list.
/// An order in a list: `GET /orders/{id}` has the rest.
#[derive(Debug, Clone, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = orders)]
pub struct OrderSummary {
    pub id: Uuid,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub customer_email: String,
    pub total_cents: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where the next page starts: the last row of the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl OrderCursor {
    pub fn encode(&self) -> String {
        format!(
            "{}_{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        )
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once('_')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// A page of orders, newest first, and the cursor of the next page if there is one.
pub async fn list_orders(
    conn: &mut AsyncPgConnection,
    status: Option<&str>,
    limit: i64,
    after: Option<OrderCursor>,
) -> QueryResult<(Vec<OrderSummary>, Option<OrderCursor>)> {
    let mut query = orders::table
        .select(OrderSummary::as_select())
        .order((orders::created_at.desc(), orders::id.desc()))
        .limit(limit + 1)
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(orders::status.eq(status.to_string()));
    }
    if let Some(cursor) = after {
        query = query.filter(
            orders::created_at
                .lt(cursor.created_at)
                .or(orders::created_at
                    .eq(cursor.created_at)
                    .and(orders::id.lt(cursor.id))),
        );
    }
    let mut rows = query.load(conn).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| OrderCursor {
            created_at: row.created_at,
            id: row.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}
