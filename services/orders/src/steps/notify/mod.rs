//! The notification step (`notification.send`): its arguments and its handler. The
//! message is sent with no transaction open and recorded (`record.rs`) in the transaction
//! that completes the task; a crash in between resends the same message (same
//! Message-ID), which is the at-least-once half of the guarantee. An e-mail that can never
//! be delivered (refused for good) does not fail the task: the failure is recorded on the
//! order's timeline and the order still reaches its terminal status.

mod record;

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use orderflow_queue::{
    record_through_group, ClaimedTask, DeadTask, KindConfig, Pool, Recording, TaskArgs, TaskError,
    TaskHandler,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::email::{self, Letterhead, MailError, OrderMail, SendMail};
use crate::lifecycle::{self, Recorded};
use crate::lookup::{BatchedLookup, LookupMany};
use crate::status::NotificationKind;
use crate::tasks::{self, order_task};

pub use record::{
    notification_facts, record_emails_sent, record_emails_undeliverable, SentEmail,
    UndeliverableEmail,
};

/// `notification.send`: the order's confirmation or cancellation e-mail.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct NotifyArgs {
    pub order_id: Uuid,
    pub notification: NotificationKind,
}

impl TaskArgs for NotifyArgs {
    const KIND: &'static str = "notification.send";
    fn config() -> KindConfig {
        order_task(Self::KIND, 20, Duration::from_secs(60))
    }

    /// Unique per order and kind: when two paths ask for the same e-mail (a customer
    /// cancels while a charge is in flight, and the refund asks again), one task sends it.
    fn unique_key(&self) -> Option<String> {
        Some(format!(
            "notification:{}:{}",
            self.order_id, self.notification
        ))
    }
}

pub struct SendNotification<M> {
    orders: BatchedLookup<OrdersToNotify>,
    mailer: M,
    letterhead: Letterhead,
}

impl<M: SendMail> SendNotification<M> {
    /// Starts the handler's order reads (a task of their own): call it on a runtime.
    pub fn new(pool: Pool, mailer: M, letterhead: Letterhead) -> Self {
        Self {
            orders: BatchedLookup::start(pool, OrdersToNotify),
            mailer,
            letterhead,
        }
    }
}

/// The e-mails of one claim read their orders together: for each order and kind, what
/// the e-mail says and whether it was sent already.
struct OrdersToNotify;

impl LookupMany for OrdersToNotify {
    type Key = (Uuid, NotificationKind);
    type Value = (OrderMail, bool);

    async fn read(
        &self,
        conn: &mut AsyncPgConnection,
        wanted: &[(Uuid, NotificationKind)],
    ) -> diesel::QueryResult<Vec<(Self::Key, Self::Value)>> {
        lifecycle::notification_facts(conn, wanted).await
    }
}

/// An e-mail attempt to be recorded: sent (now or earlier), or refused for good.
pub struct Sent {
    order_id: Uuid,
    notification: NotificationKind,
    message_id: String,
    recipient: String,
    order_created_at: DateTime<Utc>,
    /// Why the e-mail can never be delivered; `None` when it was sent.
    undeliverable: Option<String>,
}

impl<M: SendMail> TaskHandler for SendNotification<M> {
    type Args = NotifyArgs;
    type Outcome = Sent;
    type Recorded = Recorded;

    #[tracing::instrument(name = "send_notification", skip_all, fields(notification))]
    async fn perform(
        &self,
        _task: &ClaimedTask,
        NotifyArgs {
            order_id,
            notification,
        }: NotifyArgs,
    ) -> Result<Sent, TaskError> {
        tracing::Span::current().record("notification", notification.as_str());

        let facts = self.orders.get((order_id, notification)).await?;
        let Some((order, already_sent)) = facts else {
            return Err(TaskError::permanent(format!(
                "order {order_id} does not exist"
            )));
        };
        let message_id = email::message_id(order_id, notification);
        let mut undeliverable = None;
        if !already_sent {
            let sent = match email::compose(&self.letterhead, &order, notification) {
                Ok(message) => self.mailer.send(message).await,
                Err(error) => Err(error),
            };
            match sent {
                Ok(()) => tracing::info!(%message_id, "e-mail sent"),
                Err(MailError::Permanent(error)) => undeliverable = Some(error),
                Err(error @ MailError::Transient(_)) => return Err(TaskError::retryable(error)),
            }
        }
        Ok(Sent {
            order_id,
            notification,
            message_id,
            recipient: order.customer.email,
            order_created_at: order.created_at,
            undeliverable,
        })
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        sent: &Sent,
    ) -> Result<Recorded, TaskError> {
        record_through_group(self, conn, task, sent).await
    }

    /// The group's e-mails are recorded set-wise: one statement per table for all of them.
    #[tracing::instrument(name = "record_emails", skip_all, fields(emails = group.len()))]
    async fn record_group(
        &self,
        conn: &mut AsyncPgConnection,
        group: &[Recording<'_, Sent>],
    ) -> Result<Vec<Recorded>, TaskError> {
        let (failed, sent): (Vec<&Recording<'_, Sent>>, Vec<&Recording<'_, Sent>>) = group
            .iter()
            .partition(|attempt| attempt.outcome.undeliverable.is_some());
        let emails: Vec<SentEmail<'_>> = sent
            .iter()
            .map(|attempt| SentEmail {
                order_id: attempt.outcome.order_id,
                kind: attempt.outcome.notification,
                message_id: &attempt.outcome.message_id,
                recipient: &attempt.outcome.recipient,
                started_at: attempt.task.claimed_at,
            })
            .collect();
        let failures: Vec<UndeliverableEmail<'_>> = failed
            .iter()
            .map(|attempt| UndeliverableEmail {
                order_id: attempt.outcome.order_id,
                kind: attempt.outcome.notification,
                error: attempt.outcome.undeliverable.as_deref().unwrap_or_default(),
                started_at: attempt.task.claimed_at,
            })
            .collect();
        let mut recorded_sent = lifecycle::record_emails_sent(conn, &emails)
            .await?
            .into_iter();
        let mut recorded_failed = lifecycle::record_emails_undeliverable(conn, &failures)
            .await?
            .into_iter();
        // Back in the group's order.
        group
            .iter()
            .map(|attempt| {
                let recorded = if attempt.outcome.undeliverable.is_some() {
                    recorded_failed.next()
                } else {
                    recorded_sent.next()
                };
                recorded.ok_or_else(|| TaskError::permanent("an e-mail result is missing"))
            })
            .collect()
    }

    /// Counts the order as finished once its last step has committed.
    fn committed(&self, _task: &ClaimedTask, sent: &Sent, recorded: &Recorded) {
        if *recorded == Recorded::Applied {
            let outcome = match sent.notification {
                NotificationKind::OrderConfirmed => "fulfilled",
                NotificationKind::OrderCancelled => "cancelled",
            };
            let since_accepted = (Utc::now() - sent.order_created_at)
                .to_std()
                .unwrap_or_default();
            metrics::histogram!("orderflow_order_time_to_terminal_seconds", "outcome" => outcome)
                .record(since_accepted.as_secs_f64());
        }
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
