//! The inventory worker: runs the reservation step (`orderflow::steps::reserve`: all lines
//! of an order or none, in the transaction that completes the task) and the shipping step
//! (`orderflow::steps::ship`: the reserved order's parcel).

pub use orderflow::steps::reserve::ReserveInventory;
use orderflow::steps::ship::{BookShipment, CarrierSim};
use orderflow::tasks::TaskKind;
use orderflow_runtime::runtime::WorkerRuntime;

pub const KINDS: &[TaskKind] = &[TaskKind::InventoryReserve, TaskKind::ShippingBook];

pub fn register(runtime: &mut WorkerRuntime) {
    runtime.spawn(TaskKind::InventoryReserve, ReserveInventory);
    runtime.spawn(TaskKind::ShippingBook, BookShipment::new(CarrierSim));
}
