//! The reservation step (`inventory.reserve`): its arguments, its handler, and the
//! all-or-nothing reservation of a group of paid orders' stock.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{
    prepared_sql, record_through_group, ClaimedTask, DeadTask, NewTask, Recording, TaskError,
    TaskHandler,
};
use orderflow_queue::{KindConfig, TaskArgs};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::lifecycle::column;
use crate::schema::{order_items, orders, products};
use crate::status::{CancelReason, EventType, OrderStatus};
use crate::steps::refund::RefundArgs;
use crate::steps::ship::ShipArgs;
use crate::tasks;
use crate::tasks::order_task;

/// `inventory.reserve`: take a paid order's stock, all of its lines or none.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReserveArgs {
    pub order_id: Uuid,
}

impl TaskArgs for ReserveArgs {
    const KIND: &'static str = "inventory.reserve";
    fn config() -> KindConfig {
        order_task(Self::KIND, 10, Duration::from_secs(30))
    }
}

/// What reserving an order's stock did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    Reserved,
    /// No stock was taken; these products had less than the order needs.
    OutOfStock {
        short_product_ids: Vec<Uuid>,
    },
    /// The order was not `paid` (duplicate or late task).
    NotApplicable,
}

/// An order whose stock a worker reserves, with the correlation id its follow-up task
/// carries.
#[derive(Debug, Clone, Copy)]
pub struct ToReserve<'a> {
    pub order_id: Uuid,
    pub correlation_id: Option<&'a str>,
    /// When the attempt that reserves took its task: the step's start on the timeline.
    pub started_at: DateTime<Utc>,
}

/// Reserves the stock of several orders in one transaction: for each paid order, all of its
/// lines or none, decided in the given order against the stock left by the orders before
/// it. A few statements serve the whole group, whatever its size:
///
/// 1. read the orders' lines (they never change, so no lock is needed);
/// 2. lock the products of every order, in id order, so that two reserving transactions
///    never deadlock; `FOR NO KEY UPDATE` (not `FOR UPDATE`) leaves the foreign-key checks
///    of concurrent order inserts unblocked;
/// 3. lock the orders, in id order, and read their status: an order cancelled meanwhile is
///    left alone, and a cancellation waits until this transaction ends;
/// 4. decide in memory, then write the stock, the transitions, the timeline events and
///    the follow-up tasks set-wise.
///
/// Stock is checked under the lock, so reservations never oversell.
pub async fn reserve_orders(
    conn: &mut AsyncPgConnection,
    orders_to_reserve: &[ToReserve<'_>],
) -> QueryResult<Vec<Reservation>> {
    let order_ids: Vec<Uuid> = orders_to_reserve.iter().map(|o| o.order_id).collect();
    // Lines never change once placed: they are read before anything is locked.
    let mut lines: HashMap<Uuid, Vec<(Uuid, i32)>> = HashMap::new();
    for (order_id, product_id, quantity) in order_items::table
        .filter(order_items::order_id.eq_any(&order_ids))
        .select((
            order_items::order_id,
            order_items::product_id,
            order_items::quantity,
        ))
        .load::<(Uuid, Uuid, i32)>(conn)
        .await?
    {
        lines
            .entry(order_id)
            .or_default()
            .push((product_id, quantity));
    }
    let mut product_ids: Vec<Uuid> = lines.values().flatten().map(|(id, _)| *id).collect();
    product_ids.sort_unstable();
    product_ids.dedup();
    // By primary key, so the planner reads just these rows (a subquery over the lines had
    // it scan the whole catalog).
    let mut stock: HashMap<Uuid, i32> = products::table
        .filter(products::id.eq_any(&product_ids))
        .order(products::id)
        .select((products::id, products::stock))
        .for_no_key_update()
        .load::<(Uuid, i32)>(conn)
        .await?
        .into_iter()
        .collect();
    let mut statuses: HashMap<Uuid, OrderStatus> = orders::table
        .filter(orders::id.eq_any(&order_ids))
        .order(orders::id)
        .select((orders::id, orders::status))
        .for_no_key_update()
        .load::<(Uuid, OrderStatus)>(conn)
        .await?
        .into_iter()
        .collect();

    let mut writes = ReservationWrites::default();
    let mut reservations = Vec::with_capacity(orders_to_reserve.len());
    for order in orders_to_reserve {
        let status = statuses.get_mut(&order.order_id);
        let Some(status) = status.filter(|status| **status == OrderStatus::Paid) else {
            reservations.push(Reservation::NotApplicable);
            continue;
        };
        let wanted = lines
            .get(&order.order_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut short_product_ids: Vec<Uuid> = wanted
            .iter()
            .filter(|(product, quantity)| stock.get(product).copied().unwrap_or(0) < *quantity)
            .map(|(product, _)| *product)
            .collect();
        short_product_ids.sort_unstable();
        let correlation = order.correlation_id.map(str::to_string);
        if short_product_ids.is_empty() {
            for (product, quantity) in wanted {
                *stock.entry(*product).or_default() -= quantity;
                *writes.taken.entry(*product).or_default() += quantity;
            }
            *status = OrderStatus::Reserved;
            writes.reserved.push(order.order_id);
            writes.events.push((
                order.order_id,
                EventType::Reserved,
                json!({ "started_at": order.started_at }),
            ));
            writes.follow_ups.push(
                ShipArgs {
                    order_id: order.order_id,
                }
                .to_task()
                .caused_by(correlation),
            );
            reservations.push(Reservation::Reserved);
        } else {
            *status = OrderStatus::Cancelled;
            writes.out_of_stock.push(order.order_id);
            writes.events.push((
                order.order_id,
                EventType::Cancelled,
                json!({
                    "reason": CancelReason::OutOfStock,
                    "short_product_ids": short_product_ids,
                    "started_at": order.started_at,
                }),
            ));
            writes.follow_ups.push(
                RefundArgs {
                    order_id: order.order_id,
                }
                .to_task()
                .caused_by(correlation),
            );
            reservations.push(Reservation::OutOfStock { short_product_ids });
        }
    }
    writes.apply(conn).await?;
    Ok(reservations)
}

/// What a group of reservations writes, gathered so that each table is written once.
#[derive(Default)]
struct ReservationWrites {
    /// Units taken per product.
    taken: HashMap<Uuid, i32>,
    reserved: Vec<Uuid>,
    out_of_stock: Vec<Uuid>,
    events: Vec<(Uuid, EventType, serde_json::Value)>,
    follow_ups: Vec<NewTask>,
}

impl ReservationWrites {
    /// Two statements: the stock, the transitions and the timeline events in one (the
    /// orders are locked and their statuses checked already), then the follow-up tasks.
    async fn apply(self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        let (product_ids, units): (Vec<Uuid>, Vec<i32>) = self.taken.into_iter().unzip();
        prepared_sql(include_str!("sql/apply_reservations.sql"))
            .bind::<Array<SqlUuid>, _>(product_ids)
            .bind::<Array<diesel::sql_types::Int4>, _>(units)
            .bind::<Text, _>(OrderStatus::Reserved.as_str())
            .bind::<Array<SqlUuid>, _>(self.reserved)
            .bind::<Text, _>(OrderStatus::Paid.as_str())
            .bind::<Text, _>(OrderStatus::Cancelled.as_str())
            .bind::<Text, _>(CancelReason::OutOfStock.as_str())
            .bind::<Array<SqlUuid>, _>(self.out_of_stock)
            .bind::<Array<SqlUuid>, _>(column(&self.events, |(order_id, _, _)| *order_id))
            .bind::<Array<Text>, _>(column(&self.events, |(_, event, _)| event.as_str()))
            .bind::<Array<Jsonb>, _>(column(&self.events, |(_, _, details)| details))
            .execute(conn)
            .await?;
        orderflow_queue::enqueue_all(conn, &self.follow_ups).await?;
        Ok(())
    }
}

/// The handler of `inventory.reserve`.
pub struct ReserveInventory;

impl TaskHandler for ReserveInventory {
    type Args = ReserveArgs;
    type Outcome = Uuid;
    type Recorded = Reservation;

    /// Nothing outside the database: the whole step is its record, set-wise per group.
    async fn perform(
        &self,
        _task: &ClaimedTask,
        ReserveArgs { order_id }: ReserveArgs,
    ) -> Result<Uuid, TaskError> {
        Ok(order_id)
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        order_id: &Uuid,
    ) -> Result<Reservation, TaskError> {
        record_through_group(self, conn, task, order_id).await
    }

    /// A group's orders are reserved together, set-wise: their products are locked first,
    /// in id order, so that two groups never wait for each other's locks in a cycle.
    #[tracing::instrument(name = "reserve_inventory", skip_all, fields(orders = group.len()))]
    async fn record_group(
        &self,
        conn: &mut AsyncPgConnection,
        group: &[Recording<'_, Uuid>],
    ) -> Result<Vec<Reservation>, TaskError> {
        let orders: Vec<ToReserve<'_>> = group
            .iter()
            .map(|attempt| ToReserve {
                order_id: *attempt.outcome,
                correlation_id: attempt.task.correlation_id.as_deref(),
                started_at: attempt.task.claimed_at,
            })
            .collect();
        Ok(reserve_orders(conn, &orders).await?)
    }

    fn committed(&self, _task: &ClaimedTask, _order_id: &Uuid, reservation: &Reservation) {
        tracing::info!(?reservation, "inventory step done");
    }

    async fn on_dead(
        &self,
        conn: &mut AsyncPgConnection,
        task: &DeadTask,
    ) -> diesel::QueryResult<()> {
        tasks::record_dead_on_timeline(conn, task).await
    }

    fn span(&self, task: &ClaimedTask) -> tracing::Span {
        tasks::order_span(task)
    }
}
