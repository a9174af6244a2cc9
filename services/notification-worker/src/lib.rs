//! The notification worker: runs the notification step (`orderflow::steps::notify`), sending
//! through the mailer (SMTP, or `.eml` files).

use orderflow::email::Letterhead;
pub use orderflow::steps::notify::SendNotification;
use orderflow::tasks::TaskKind;
use orderflow_runtime::mailer::Mailer;
use orderflow_runtime::runtime::WorkerRuntime;

pub const KINDS: &[TaskKind] = &[TaskKind::NotificationSend];

pub fn register(runtime: &mut WorkerRuntime, mailer: Mailer, letterhead: Letterhead) {
    let pool = runtime.pool.clone();
    runtime.spawn(
        TaskKind::NotificationSend,
        SendNotification::new(pool, mailer, letterhead),
    );
}
