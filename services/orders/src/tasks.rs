//! The task kinds of the order pipeline, their payloads and queue settings.

use std::time::Duration;

use orderflow_queue::{KindConfig, NewTask};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::status::NotificationKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    PaymentCharge,
    PaymentRefund,
    InventoryReserve,
    NotificationSend,
}

impl TaskKind {
    pub const ALL: [TaskKind; 4] = [
        Self::PaymentCharge,
        Self::PaymentRefund,
        Self::InventoryReserve,
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

    /// Attempts, leases and timeouts per kind. Gateway and SMTP calls get more attempts
    /// (outages pass); inventory only touches PostgreSQL.
    pub fn config(self) -> KindConfig {
        // Leases are short because a heartbeat extends them; the timeout bounds an attempt.
        let (kind, max_attempts, timeout_secs) = match self {
            Self::PaymentCharge => ("payment.charge", 10, 60),
            Self::PaymentRefund => ("payment.refund", 20, 60),
            Self::InventoryReserve => ("inventory.reserve", 10, 30),
            Self::NotificationSend => ("notification.send", 20, 60),
        };
        KindConfig {
            kind,
            max_attempts,
            lease: DEFAULT_LEASE,
            timeout: Duration::from_secs(timeout_secs),
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// How long a task stays claimed after its worker stopped sending heartbeats.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// Payload of `payment.charge`, `payment.refund` and `inventory.reserve`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OrderTask {
    pub order_id: Uuid,
}

/// Payload of `notification.send`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct NotificationTask {
    pub order_id: Uuid,
    pub notification: NotificationKind,
}

fn new_task(kind: TaskKind, payload: impl Serialize) -> NewTask {
    // Serialising these plain structs cannot fail.
    let payload = serde_json::to_value(payload).unwrap_or_default();
    NewTask::new(&kind.config(), payload)
}

pub fn charge_payment(order_id: Uuid) -> NewTask {
    new_task(TaskKind::PaymentCharge, OrderTask { order_id })
}

pub fn refund_payment(order_id: Uuid) -> NewTask {
    new_task(TaskKind::PaymentRefund, OrderTask { order_id })
}

pub fn reserve_inventory(order_id: Uuid) -> NewTask {
    new_task(TaskKind::InventoryReserve, OrderTask { order_id })
}

/// Unique per order and kind: when two paths ask for the same e-mail (a customer cancels
/// while a charge is in flight, and the refund asks again), one task sends it.
pub fn send_notification(order_id: Uuid, notification: NotificationKind) -> NewTask {
    new_task(
        TaskKind::NotificationSend,
        NotificationTask {
            order_id,
            notification,
        },
    )
    .unique(format!("notification:{order_id}:{notification}"))
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
