//! Reserves stock (all lines of an order or none, in the transaction that completes the
//! task) and books the reserved orders' parcels (`orderflow::steps::ship`).

use diesel_async::AsyncPgConnection;
use orderflow::lifecycle;
use orderflow::lifecycle::ToReserve;
use orderflow::steps::ship::{BookShipment, CarrierSim};
use orderflow::tasks::{self, ReserveArgs, TaskKind};
use orderflow_queue::{
    record_through_group, ClaimedTask, DeadTask, Recording, TaskError, TaskHandler,
};
use orderflow_runtime::runtime::WorkerRuntime;
use uuid::Uuid;

pub const KINDS: &[TaskKind] = &[TaskKind::InventoryReserve, TaskKind::ShippingBook];

pub fn register(runtime: &mut WorkerRuntime) {
    runtime.spawn(TaskKind::InventoryReserve, ReserveInventory);
    runtime.spawn(TaskKind::ShippingBook, BookShipment::new(CarrierSim));
}

pub struct ReserveInventory;

impl TaskHandler for ReserveInventory {
    type Args = ReserveArgs;
    type Outcome = Uuid;
    type Recorded = lifecycle::Reservation;

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
    ) -> Result<lifecycle::Reservation, TaskError> {
        record_through_group(self, conn, task, order_id).await
    }

    /// A group's orders are reserved together, set-wise: their products are locked first,
    /// in id order, so that two groups never wait for each other's locks in a cycle.
    #[tracing::instrument(name = "reserve_inventory", skip_all, fields(orders = group.len()))]
    async fn record_group(
        &self,
        conn: &mut AsyncPgConnection,
        group: &[Recording<'_, Uuid>],
    ) -> Result<Vec<lifecycle::Reservation>, TaskError> {
        let orders: Vec<ToReserve<'_>> = group
            .iter()
            .map(|attempt| ToReserve {
                order_id: *attempt.outcome,
                correlation_id: attempt.task.correlation_id.as_deref(),
                started_at: attempt.task.claimed_at,
            })
            .collect();
        Ok(lifecycle::reserve_orders(conn, &orders).await?)
    }

    fn committed(
        &self,
        _task: &ClaimedTask,
        _order_id: &Uuid,
        reservation: &lifecycle::Reservation,
    ) {
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
