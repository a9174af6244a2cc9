//! Sends the order e-mails. The message is sent with no transaction open and recorded in
//! the transaction that completes the task; a crash in between resends the same message
//! (same Message-ID), which is the at-least-once half of the guarantee.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use lettre::message::Mailbox;
use orderflow::db::Pool;
use orderflow::email::{self, MailError, Mailer};
use orderflow::lifecycle;
use orderflow::runtime::WorkerRuntime;
use orderflow::status::NotificationKind;
use orderflow::tasks::{self, NotificationTask, TaskKind};
use orderflow_queue::{ClaimedTask, Completion, DeadTask, TaskError, TaskHandler};

pub const KINDS: &[TaskKind] = &[TaskKind::NotificationSend];

pub fn register(runtime: &mut WorkerRuntime, mailer: Mailer, from: Mailbox) {
    let pool = runtime.pool.clone();
    runtime.spawn(
        TaskKind::NotificationSend,
        SendNotification { pool, mailer, from },
    );
}

pub struct SendNotification {
    pool: Pool,
    mailer: Mailer,
    from: Mailbox,
}

impl SendNotification {
    pub fn new(pool: Pool, mailer: Mailer, from: Mailbox) -> Self {
        Self { pool, mailer, from }
    }
}

impl TaskHandler for SendNotification {
    #[tracing::instrument(name = "send_notification", skip_all, fields(notification))]
    async fn run(&self, task: ClaimedTask) -> Result<Completion, TaskError> {
        let NotificationTask {
            order_id,
            notification,
        } = task.payload()?;
        tracing::Span::current().record("notification", notification.as_str());

        let facts = {
            let mut conn = self.pool.get().await?;
            lifecycle::notification_facts(&mut conn, order_id, notification).await?
        };
        let Some((order, already_sent)) = facts else {
            return Err(TaskError::permanent(format!(
                "order {order_id} does not exist"
            )));
        };
        let message_id = email::message_id(order_id, notification);
        if !already_sent {
            let message = email::compose(&self.from, &order, notification).map_err(mail_error)?;
            self.mailer.send(message).await.map_err(mail_error)?;
            tracing::info!(%message_id, "e-mail sent");
        }

        let recipient = &order.customer.email;
        let mut conn = self.pool.get().await?;
        let (completion, recorded) = conn
            .transaction(async |conn| {
                let completion = task.complete(conn).await?;
                let recorded = lifecycle::record_email_sent(
                    conn,
                    order_id,
                    notification,
                    &message_id,
                    recipient,
                )
                .await?;
                Ok::<_, TaskError>((completion, recorded))
            })
            .await?;
        tracing::debug!(?recorded, "e-mail recorded");
        if recorded == lifecycle::Recorded::Applied {
            let outcome = match notification {
                NotificationKind::OrderConfirmed => "fulfilled",
                NotificationKind::OrderCancelled => "cancelled",
            };
            let since_accepted = (chrono::Utc::now() - order.created_at)
                .to_std()
                .unwrap_or_default();
            orderflow::metrics::record_order_finished(outcome, since_accepted);
        }
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

fn mail_error(error: MailError) -> TaskError {
    match error {
        MailError::Transient(_) => TaskError::retryable(error),
        MailError::Permanent(_) => TaskError::permanent(error),
    }
}
