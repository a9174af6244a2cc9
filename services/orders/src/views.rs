//! Orders and products as the API shows them.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use diesel::sql_types::{
    Array, BigInt, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use orderflow_queue::prepared_sql;

use crate::schema::{order_items, orders, payments, products};
use crate::status::{CancelReason, OrderStatus, PaymentStatus};

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
    pub status: PaymentStatus,
    pub amount_cents: i64,
}

/// One step of the order's timeline; each event type adds its own fields. An event a
/// worker wrote carries `started_at`, when that worker took the task: the order waited
/// from the event before it until `started_at`, and the step ran until `at`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderEvent {
    /// `placed`, `paid`, `reserved`, `shipped` (with `carrier` and `tracking_number`),
    /// `fulfilled`, `cancelled`, `refunded`, `notified`, `notification_failed`, `task_dead`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub details: serde_json::Map<String, serde_json::Value>,
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
        { "type": "paid", "at": "2026-11-24T06:25:45.536Z", "started_at": "2026-11-24T06:25:45.505Z", "amount_cents": 2598 },
        { "type": "reserved", "at": "2026-11-24T06:25:45.540Z", "started_at": "2026-11-24T06:25:45.538Z" },
        { "type": "fulfilled", "at": "2026-11-24T06:25:45.551Z", "started_at": "2026-11-24T06:25:45.541Z" }
    ],
    "created_at": "2026-11-24T06:25:45.503Z",
    "updated_at": "2026-11-24T06:25:45.551Z"
}))]
pub struct Order {
    pub id: Uuid,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
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
    /// The bearer token that opens this order (`GET /orders/{id}`, its cancel). Shown only
    /// in the answer to the `POST /orders` that placed it (or a replay of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

/// An order as stored, with the token that opens it ([`load_order_with_token`]).
pub struct StoredOrder {
    pub order: Order,
    pub access_token: String,
}

/// One order with its lines, payment and timeline, and its access token, for a caller that
/// must check who asks; `None` when it does not exist. One statement, as [`load_order`].
pub async fn load_order_with_token(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Option<StoredOrder>> {
    let row: Option<OrderWithParts> = prepared_sql(LOAD_ORDER)
        .bind::<SqlUuid, _>(order_id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(row.map(|row| {
        let access_token = row.access_token.clone();
        StoredOrder {
            order: row.into_order(),
            access_token,
        }
    }))
}

/// An order's access token; `None` when it does not exist.
pub async fn access_token(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Option<String>> {
    orders::table
        .find(order_id)
        .select(orders::access_token)
        .first(conn)
        .await
        .optional()
}

/// One order with its lines, payment and timeline; `None` when it does not exist.
///
/// One statement: its parts share one snapshot, so the payment and the timeline always
/// agree (a refund committed between two reads could show a `refunded` event beside a
/// captured payment), and a storefront polling an order costs one round trip per poll
/// rather than a read-only transaction of six.
pub async fn load_order(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
) -> QueryResult<Option<Order>> {
    let row: Option<OrderWithParts> = prepared_sql(LOAD_ORDER)
        .bind::<SqlUuid, _>(order_id)
        .get_result(conn)
        .await
        .optional()?;
    Ok(row.map(OrderWithParts::into_order))
}

/// The `LATERAL` that reads an order's lines (of the order aliased `o`) as one array per
/// column, in line order, for [`LineColumns`]: a macro, so that statements can splice it
/// into their text at compile time.
macro_rules! order_lines_lateral {
    () => {
        "CROSS JOIN LATERAL ( \
             SELECT array_agg(i.product_id ORDER BY i.line_no) AS product_ids, \
                    array_agg(i.sku ORDER BY i.line_no) AS skus, \
                    array_agg(i.quantity ORDER BY i.line_no) AS quantities, \
                    array_agg(i.unit_price_cents ORDER BY i.line_no) AS unit_prices_cents \
             FROM order_items i WHERE i.order_id = o.id) AS lines "
    };
}
pub(crate) use order_lines_lateral;

/// An order's lines, one array per column ([`order_lines_lateral`]); an aggregate over no
/// rows is NULL.
#[derive(QueryableByName)]
pub(crate) struct LineColumns {
    #[diesel(sql_type = Nullable<Array<SqlUuid>>)]
    product_ids: Option<Vec<Uuid>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    skus: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Integer>>)]
    quantities: Option<Vec<i32>>,
    #[diesel(sql_type = Nullable<Array<BigInt>>)]
    unit_prices_cents: Option<Vec<i64>>,
}

impl LineColumns {
    /// Back into rows: the arrays are aggregates over the same rows, of equal length.
    pub(crate) fn into_items(self) -> Vec<OrderItem> {
        let skus = self.skus.unwrap_or_default();
        let quantities = self.quantities.unwrap_or_default();
        let prices = self.unit_prices_cents.unwrap_or_default();
        self.product_ids
            .unwrap_or_default()
            .into_iter()
            .zip(skus)
            .zip(quantities)
            .zip(prices)
            .map(
                |(((product_id, sku), quantity), unit_price_cents)| OrderItem {
                    product_id,
                    sku,
                    quantity,
                    unit_price_cents,
                },
            )
            .collect()
    }
}

/// The order, its payment (if any), its lines ([`LineColumns`]) and its events as one
/// array per column, in event order.
const LOAD_ORDER: &str = concat!(
    "SELECT o.id, o.status, o.cancel_reason, o.customer_email, o.customer_name, \
            o.shipping_address, o.total_cents, o.currency, o.created_at, o.updated_at, \
            o.access_token, p.status AS payment_status, p.amount_cents AS payment_amount_cents, \
            lines.product_ids, lines.skus, lines.quantities, lines.unit_prices_cents, \
            timeline.event_types, timeline.event_ats, timeline.event_details \
     FROM orders o \
     LEFT JOIN payments p ON p.order_id = o.id ",
    order_lines_lateral!(),
    "CROSS JOIN LATERAL ( \
         SELECT array_agg(e.type ORDER BY e.id) AS event_types, \
                array_agg(e.at ORDER BY e.id) AS event_ats, \
                array_agg(e.details ORDER BY e.id) AS event_details \
         FROM order_events e WHERE e.order_id = o.id) AS timeline \
     WHERE o.id = $1"
);

#[derive(QueryableByName)]
struct OrderWithParts {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: OrderStatus,
    #[diesel(sql_type = Nullable<Text>)]
    cancel_reason: Option<CancelReason>,
    #[diesel(sql_type = Text)]
    customer_email: String,
    #[diesel(sql_type = Text)]
    customer_name: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    shipping_address: Option<serde_json::Value>,
    #[diesel(sql_type = BigInt)]
    total_cents: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    access_token: String,
    #[diesel(sql_type = Nullable<Text>)]
    payment_status: Option<PaymentStatus>,
    #[diesel(sql_type = Nullable<BigInt>)]
    payment_amount_cents: Option<i64>,
    #[diesel(embed)]
    lines: LineColumns,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    event_types: Option<Vec<String>>,
    #[diesel(sql_type = Nullable<Array<Timestamptz>>)]
    event_ats: Option<Vec<DateTime<Utc>>>,
    #[diesel(sql_type = Nullable<Array<Jsonb>>)]
    event_details: Option<Vec<serde_json::Value>>,
}

impl OrderWithParts {
    fn into_order(self) -> Order {
        let items = self.lines.into_items();
        let events = self
            .event_types
            .unwrap_or_default()
            .into_iter()
            .zip(self.event_ats.unwrap_or_default())
            .zip(self.event_details.unwrap_or_default())
            .map(|((event_type, at), details)| OrderEvent {
                event_type,
                at,
                details: match details {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                },
            })
            .collect();
        let payment =
            self.payment_status
                .zip(self.payment_amount_cents)
                .map(|(status, amount_cents)| PaymentView {
                    status,
                    amount_cents,
                });
        Order {
            id: self.id,
            status: self.status,
            cancel_reason: self.cancel_reason,
            customer: Customer {
                email: self.customer_email,
                name: self.customer_name,
            },
            shipping_address: self.shipping_address,
            items,
            total_cents: self.total_cents,
            currency: self.currency,
            payment,
            events,
            created_at: self.created_at,
            updated_at: self.updated_at,
            access_token: None,
        }
    }
}

pub use crate::order_list::{list_orders, OrderCursor, OrderSummary};
