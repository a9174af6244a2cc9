//! Reserves stock: all lines of an order or none, in the transaction that completes the task.

use diesel_async::AsyncPgConnection;
use orderflow::lifecycle;
use orderflow::runtime::WorkerRuntime;
use orderflow::tasks::{self, OrderTask, TaskKind};
use orderflow_queue::{ClaimedTask, DeadTask, TaskError, TaskHandler};
use uuid::Uuid;

pub const KINDS: &[TaskKind] = &[TaskKind::InventoryReserve];

pub fn register(runtime: &mut WorkerRuntime) {
    runtime.spawn(TaskKind::InventoryReserve, ReserveInventory);
}

pub struct ReserveInventory;

impl TaskHandler for ReserveInventory {
    type Outcome = Uuid;
    type Recorded = lifecycle::Reservation;

    async fn perform(&self, task: &ClaimedTask) -> Result<Uuid, TaskError> {
        let OrderTask { order_id } = task.payload()?;
        Ok(order_id)
    }

    /// Orders are reserved in groups: every product of the group's orders is locked first,
    /// in id order, so that two groups never wait for each other's locks in a cycle.
    async fn lock_shared(
        &self,
        conn: &mut AsyncPgConnection,
        order_ids: &[&Uuid],
    ) -> Result<(), TaskError> {
        let order_ids: Vec<Uuid> = order_ids.iter().map(|id| **id).collect();
        Ok(lifecycle::lock_products_of(conn, &order_ids).await?)
    }

    #[tracing::instrument(name = "reserve_inventory", skip_all)]
    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        _task: &ClaimedTask,
        order_id: &Uuid,
    ) -> Result<lifecycle::Reservation, TaskError> {
        Ok(lifecycle::reserve_stock(conn, *order_id).await?)
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
