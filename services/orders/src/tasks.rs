//! The task kinds of the order pipeline, their payloads and queue settings.

use std::time::Duration;

use orderflow_queue::{KindConfig, TaskArgs};
use serde::Deserialize;
use uuid::Uuid;

pub use crate::steps::charge::ChargeArgs;
pub use crate::steps::notify::NotifyArgs;
pub use crate::steps::refund::RefundArgs;
pub use crate::steps::reserve::ReserveArgs;
pub use crate::steps::ship::ShipArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    PaymentCharge,
    PaymentRefund,
    InventoryReserve,
    ShippingBook,
    NotificationSend,
}

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        Self::PaymentCharge,
        Self::PaymentRefund,
        Self::InventoryReserve,
        Self::ShippingBook,
        Self::NotificationSend,
    ];

    pub fn as_str(self) -> &'static str {
        self.config().kind
    }

    /// The kind's queue settings, with its lease from `TASK_LEASE_SECONDS` when set.
    pub fn config_with_lease(self, lease: Option<Duration>) -> KindConfig {
        let mut config = self.config();
        if let Some(lease) = lease {
            config.lease = lease;
        }
        config
    }

    /// The settings its arguments' type gives the kind.
    pub fn config(self) -> KindConfig {
        match self {
            Self::PaymentCharge => ChargeArgs::config(),
            Self::PaymentRefund => RefundArgs::config(),
            Self::InventoryReserve => ReserveArgs::config(),
            Self::ShippingBook => ShipArgs::config(),
            Self::NotificationSend => NotifyArgs::config(),
        }
    }
}

/// How long a task stays claimed after its worker stopped sending heartbeats.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The settings every order task shares. Leases are short because a heartbeat extends
/// them; the timeout bounds an attempt. Gateway and SMTP calls get more attempts (outages
/// pass); inventory only touches PostgreSQL.
pub(crate) fn order_task(kind: &'static str, max_attempts: i32, timeout: Duration) -> KindConfig {
    KindConfig {
        kind,
        max_attempts,
        lease: DEFAULT_LEASE,
        timeout,
        base_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(60),
    }
}

/// The part every order task's payload has: used to put a dead task on its order's timeline.
#[derive(Debug, Clone, Copy, Deserialize)]
struct AnyOrderTask {
    order_id: Uuid,
}

/// The span of every order task: its order id on every log line of the attempt.
pub fn order_span(task: &orderflow_queue::ClaimedTask) -> tracing::Span {
    match serde_json::from_value::<AnyOrderTask>(task.payload.clone()) {
        Ok(AnyOrderTask { order_id }) => tracing::info_span!("order", order_id = %order_id),
        Err(_) => tracing::Span::none(),
    }
}

/// The dead hook of every order task: the failure shows on the order's timeline.
pub async fn record_dead_on_timeline(
    conn: &mut diesel_async::AsyncPgConnection,
    task: &orderflow_queue::DeadTask,
) -> diesel::QueryResult<()> {
    match serde_json::from_value::<AnyOrderTask>(task.payload.clone()) {
        Ok(AnyOrderTask { order_id }) => {
            crate::lifecycle::record_task_dead(conn, order_id, task).await
        }
        Err(_) => Ok(()),
    }
}
