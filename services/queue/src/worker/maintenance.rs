//! What each poll tick does besides looking for work: tasks whose lease expired are made
//! waiting again (or dead on their last attempt), and completed tasks past their
//! retention are deleted.

use diesel_async::AsyncConnection;

use super::{TaskHandler, Worker};
use crate::claim::{bury_expired, rescue_expired};
use crate::{DeadTask, TaskError};

/// The most expired tasks one poll tick makes waiting again.
const RESCUE_BATCH: i64 = 1000;

/// The most completed tasks one poll tick deletes: more than a tick's worth of tasks at
/// the rates this runs at, so that a backlog shrinks, in statements that stay short.
const PRUNE_BATCH: i64 = 1000;

impl<H: TaskHandler> Worker<H> {
    /// What each poll tick does besides looking for work.
    pub(super) async fn upkeep(&self) {
        self.rescue_expired().await;
        self.prune_completed().await;
    }

    /// Tasks whose lease expired (their worker died or hung) are waiting again, or dead on
    /// their last attempt; they would otherwise sit in `running`.
    async fn rescue_expired(&self) {
        let result: Result<(usize, Vec<DeadTask>), TaskError> = async {
            let mut conn = self.pool.get().await?;
            let handler = self.handler.as_ref();
            let kind = self.kind.kind;
            Ok(conn
                .transaction(async |conn| {
                    let rescued = rescue_expired(conn, kind, RESCUE_BATCH).await?;
                    let buried = bury_expired(conn, kind).await?;
                    for task in &buried {
                        handler.on_dead(conn, task).await?;
                    }
                    Ok::<_, diesel::result::Error>((rescued, buried))
                })
                .await?)
        }
        .await;
        match result {
            Ok((rescued, buried)) => {
                if rescued > 0 {
                    metrics::counter!("orderflow_queue_tasks_rescued_total", "kind" => self.kind.kind)
                        .increment(rescued as u64);
                    tracing::warn!(
                        kind = self.kind.kind,
                        rescued,
                        "tasks whose lease expired are waiting again"
                    );
                }
                if !buried.is_empty() {
                    metrics::counter!("orderflow_queue_tasks_dead_total", "kind" => self.kind.kind)
                        .increment(buried.len() as u64);
                }
                for task in buried {
                    tracing::error!(task_id = task.id, kind = %task.kind, "task dead: lease expired during its last attempt");
                }
            }
            Err(error) => {
                tracing::warn!(kind = self.kind.kind, %error, "rescuing expired tasks failed")
            }
        }
    }

    /// Deletes the kind's completed tasks older than the retention period, a batch a tick.
    async fn prune_completed(&self) {
        let Some(retention) = self.options.completed_retention else {
            return;
        };
        let result: Result<usize, TaskError> = async {
            let mut conn = self.pool.get().await?;
            let kind = self.kind.kind;
            Ok(crate::admin::prune_completed(&mut conn, kind, retention, PRUNE_BATCH).await?)
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(pruned) => {
                metrics::counter!("orderflow_queue_tasks_pruned_total", "kind" => self.kind.kind)
                    .increment(pruned as u64);
                tracing::debug!(
                    kind = self.kind.kind,
                    pruned,
                    "completed tasks past their retention deleted"
                );
            }
            Err(error) => {
                tracing::warn!(kind = self.kind.kind, %error, "deleting completed tasks failed")
            }
        }
    }
}
