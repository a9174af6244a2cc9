//! Reserves stock: all lines of an order or none, in the transaction that completes the task.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use orderflow::db::Pool;
use orderflow::lifecycle;
use orderflow::runtime::WorkerRuntime;
use orderflow::tasks::{self, OrderTask, TaskKind};
use orderflow_queue::{ClaimedTask, Completion, DeadTask, TaskError, TaskHandler};

pub const KINDS: &[TaskKind] = &[TaskKind::InventoryReserve];

pub fn register(runtime: &mut WorkerRuntime) {
    let pool = runtime.pool.clone();
    runtime.spawn(TaskKind::InventoryReserve, ReserveInventory { pool });
}

pub struct ReserveInventory {
    pool: Pool,
}

impl TaskHandler for ReserveInventory {
    #[tracing::instrument(name = "reserve_inventory", skip_all)]
    async fn run(&self, task: ClaimedTask) -> Result<Completion, TaskError> {
        let OrderTask { order_id } = task.payload()?;
        let mut conn = self.pool.get().await?;
        let (completion, reservation) = conn
            .transaction(async |conn| {
                let completion = task.complete(conn).await?;
                let reservation = lifecycle::reserve_stock(conn, order_id).await?;
                Ok::<_, TaskError>((completion, reservation))
            })
            .await?;
        tracing::info!(?reservation, "inventory step done");
        Ok(completion)
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
