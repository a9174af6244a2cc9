//! The payment worker: runs the charge and refund steps (`orderflow::steps::charge`,
//! `orderflow::steps::refund`) against the provider, reached over HTTP (`http_gateway`) or
//! simulated in-process.

pub mod http_gateway;

use std::sync::Arc;

use orderflow::payment::PaymentGateway;
pub use orderflow::steps::charge::ChargePayment;
pub use orderflow::steps::refund::RefundPayment;
use orderflow::tasks::TaskKind;
use orderflow_runtime::runtime::WorkerRuntime;

pub const KINDS: &[TaskKind] = &[TaskKind::PaymentCharge, TaskKind::PaymentRefund];

pub fn register(runtime: &mut WorkerRuntime, gateway: Arc<dyn PaymentGateway>) {
    let pool = runtime.pool.clone();
    runtime.spawn(
        TaskKind::PaymentCharge,
        ChargePayment::new(pool.clone(), Arc::clone(&gateway)),
    );
    runtime.spawn(TaskKind::PaymentRefund, RefundPayment::new(pool, gateway));
}
