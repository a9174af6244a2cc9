//! The admin's list of orders: summaries, newest first, a page at a time from a cursor.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::schema::orders;
use crate::status::{CancelReason, OrderStatus};

/// An order in a list: `GET /orders/{id}` has the rest.
#[derive(Debug, Clone, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = orders)]
pub struct OrderSummary {
    pub id: Uuid,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
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

    /// The cursor `encode` wrote, or `None`: also for one that cannot be a position, a
    /// time before 1970 or after 9999, which PostgreSQL might not even represent.
    pub fn decode(raw: &str) -> Option<Self> {
        let (micros, id) = raw.split_once('_')?;
        let micros: i64 = micros.parse().ok()?;
        if !(0..=Self::LATEST_MICROS).contains(&micros) {
            return None;
        }
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id: Uuid::parse_str(id).ok()?,
        })
    }

    /// 9999-12-31T23:59:59.999999Z.
    const LATEST_MICROS: i64 = 253_402_300_799_999_999;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_impossible_positions_are_refused() {
        let cursor = OrderCursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("a time"),
            id: Uuid::now_v7(),
        };
        assert_eq!(OrderCursor::decode(&cursor.encode()), Some(cursor));
        let id = cursor.id.simple();
        for raw in [
            format!("-8000000000000000000_{id}"),
            format!("-1_{id}"),
            format!("253402300800000000_{id}"),
            format!("9223372036854775807_{id}"),
            "12_notauuid".to_string(),
            "nounderscore".to_string(),
        ] {
            assert_eq!(OrderCursor::decode(&raw), None, "{raw}");
        }
    }
}
