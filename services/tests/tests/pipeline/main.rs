//! The order pipeline through the API, the workers and the database: the lifecycle, each
//! step's guarantees (payment, reservation, notification, cancellation), the operator
//! commands and the invariant checker. One test binary, one module per concern; each test
//! has a database of its own.

mod cancel;
mod end_to_end;
mod gateway_http;
mod inventory_race;
mod lifecycle;
mod notification;
mod operator;
mod payment;
