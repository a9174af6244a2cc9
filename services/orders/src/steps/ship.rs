//! The shipping step (`shipping.book`), the worked example of "Adding a task kind" in
//! `docs/architecture.md`: after its stock is reserved, each order gets a parcel booked
//! with a carrier, and the confirmation e-mail carries the tracking number. This file is
//! the whole step: its arguments, the outside call, and the set-wise record.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use orderflow_queue::{
    prepared_sql, ClaimedTask, DeadTask, KindConfig, Recording, TaskArgs, TaskError, TaskHandler,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::lifecycle::{column, Recorded};
use crate::status::{EventType, NotificationKind};
use crate::steps::notify::NotifyArgs;
use crate::tasks::{self, order_task};

/// `shipping.book`: book a parcel for a reserved order.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShipArgs {
    pub order_id: Uuid,
}

impl TaskArgs for ShipArgs {
    const KIND: &'static str = "shipping.book";
    fn config() -> KindConfig {
        order_task(Self::KIND, 10, Duration::from_secs(30))
    }
}

/// A booked parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parcel {
    pub carrier: String,
    pub tracking_number: String,
}

/// A carrier that books parcels. Booking is idempotent per order (a retried booking gets
/// the same parcel), as a real carrier API is when called with an idempotency key.
pub trait Carrier: Send + Sync + 'static {
    fn book(
        &self,
        order_id: Uuid,
    ) -> impl std::future::Future<Output = Result<Parcel, TaskError>> + Send;
}

/// The carrier simulator: books at once, and the tracking number follows from the order
/// id, so a retried booking gets the same parcel.
#[derive(Debug, Clone, Copy, Default)]
pub struct CarrierSim;

impl Carrier for CarrierSim {
    async fn book(&self, order_id: Uuid) -> Result<Parcel, TaskError> {
        let digest = hex::encode(Sha256::digest(order_id.as_bytes()));
        Ok(Parcel {
            carrier: "Orderflow Post".to_string(),
            tracking_number: format!("OF{}", digest[..12].to_uppercase()),
        })
    }
}

/// The handler of `shipping.book`: books the parcel (no transaction open), then records
/// the shipments of a group of orders in one statement, each with its `shipped` event, and
/// queues their confirmation e-mails.
pub struct BookShipment<C> {
    carrier: Arc<C>,
}

impl<C: Carrier> BookShipment<C> {
    pub fn new(carrier: C) -> Self {
        Self {
            carrier: Arc::new(carrier),
        }
    }
}

/// What an attempt learnt: the order and its parcel.
pub struct Booked {
    order_id: Uuid,
    parcel: Parcel,
}

impl<C: Carrier> TaskHandler for BookShipment<C> {
    type Args = ShipArgs;
    type Outcome = Booked;
    type Recorded = Recorded;

    async fn perform(&self, _task: &ClaimedTask, args: ShipArgs) -> Result<Booked, TaskError> {
        let parcel = self.carrier.book(args.order_id).await?;
        Ok(Booked {
            order_id: args.order_id,
            parcel,
        })
    }

    async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        task: &ClaimedTask,
        booked: &Booked,
    ) -> Result<Recorded, TaskError> {
        orderflow_queue::record_through_group(self, conn, task, booked).await
    }

    async fn record_group(
        &self,
        conn: &mut AsyncPgConnection,
        group: &[Recording<'_, Booked>],
    ) -> Result<Vec<Recorded>, TaskError> {
        let shipments: Vec<Shipment<'_>> = group
            .iter()
            .map(|attempt| Shipment {
                order_id: attempt.outcome.order_id,
                parcel: &attempt.outcome.parcel,
                correlation_id: attempt.task.correlation_id.as_deref(),
                started_at: attempt.task.claimed_at,
            })
            .collect();
        Ok(record_shipments(conn, &shipments).await?)
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

/// A booked parcel to record ([`record_shipments`]).
#[derive(Debug, Clone, Copy)]
pub struct Shipment<'a> {
    pub order_id: Uuid,
    pub parcel: &'a Parcel,
    /// Carried by the confirmation e-mail's task.
    pub correlation_id: Option<&'a str>,
    /// When the attempt that booked it took its task: the step's start on the timeline.
    pub started_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct Shipped {
    #[diesel(sql_type = SqlUuid)]
    order_id: Uuid,
}

/// Records booked parcels, set-wise: each order's shipment once (a duplicate task finds it
/// and writes nothing), its `shipped` event, and its confirmation e-mail's task. One
/// result per shipment, in order.
pub async fn record_shipments(
    conn: &mut AsyncPgConnection,
    shipments: &[Shipment<'_>],
) -> diesel::QueryResult<Vec<Recorded>> {
    if shipments.is_empty() {
        return Ok(Vec::new());
    }
    let shipped: std::collections::HashSet<Uuid> =
        prepared_sql(include_str!("sql/record_shipments.sql"))
            .bind::<Array<SqlUuid>, _>(column(shipments, |s| s.order_id))
            .bind::<Array<Text>, _>(column(shipments, |s| s.parcel.carrier.as_str()))
            .bind::<Array<Text>, _>(column(shipments, |s| s.parcel.tracking_number.as_str()))
            .bind::<Array<Timestamptz>, _>(column(shipments, |s| s.started_at))
            .bind::<Text, _>(EventType::Shipped.as_str())
            .load::<Shipped>(conn)
            .await?
            .into_iter()
            .map(|row| row.order_id)
            .collect();
    let confirmations: Vec<_> = shipments
        .iter()
        .filter(|shipment| shipped.contains(&shipment.order_id))
        .map(|shipment| {
            NotifyArgs {
                order_id: shipment.order_id,
                notification: NotificationKind::OrderConfirmed,
            }
            .to_task()
            .caused_by(shipment.correlation_id.map(str::to_string))
        })
        .collect();
    orderflow_queue::enqueue_all(conn, &confirmations).await?;
    let mut recorded_once = std::collections::HashSet::new();
    Ok(shipments
        .iter()
        .map(|shipment| {
            if shipped.contains(&shipment.order_id) && recorded_once.insert(shipment.order_id) {
                Recorded::Applied
            } else {
                Recorded::AlreadyDone
            }
        })
        .collect())
}
