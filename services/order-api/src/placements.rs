//! Placing orders in groups: one transaction, and so one durable commit, for the orders
//! that arrive while others are being placed.
//!
//! Each placement commits durably, and its NOTIFY (the first task's wake-up) makes
//! PostgreSQL hold a server-wide lock through the commit's WAL flush: notifying commits
//! go one at a time. Under load that lock, not the statements, bounds how many orders a
//! second the API can take (`load-tests/RESULTS.md`). An idle API places each order at
//! once in its own transaction; only while [`IN_FLIGHT`] transactions of a worker thread
//! are placing does the next order wait, and it is placed with every order that arrived
//! meanwhile, in one transaction ([`place_orders`]: each order gets its own answer, and one
//! that the database refuses fails alone). A request whose client has gone is left out
//! of its group before anything is written. Measured in `load-tests/RESULTS.md`, "Orders
//! placed together".
//!
//! One queue per actix worker thread (the app factory starts one for each worker), its
//! groups spawned on that thread: a request hands its order to a task on its own thread,
//! not across threads.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orderflow::lifecycle::{place_orders, NewOrder, Placed};
use orderflow_runtime::db::Pool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::ApiError;

/// Placement transactions of one worker thread at once; more orders wait for the next group.
const IN_FLIGHT: usize = 2;

/// The most orders one transaction places.
const MAX_GROUP: usize = 32;

/// How long an order may wait for its group, as a request may wait for a database
/// connection (`DB_ACQUIRE_TIMEOUT_MS`'s default); then it is answered 503 `unavailable`,
/// nothing written. Under load a turn comes within milliseconds.
const WAIT_FOR_A_GROUP: Duration = Duration::from_secs(1);

/// How long a group goes on placing its orders; those it has not reached by then are
/// answered 503 `unavailable`, nothing written for them. A group of 32 takes tens of
/// milliseconds; a database answering each statement slowly must not keep the last order
/// of a group waiting for 32 statements.
const GROUP_BUDGET: Duration = Duration::from_secs(1);

/// Where an order is: waiting for a group, taken into one, or given up by its request
/// (after [`WAIT_FOR_A_GROUP`]). The group and the request each claim it once, so an
/// order is either placed or answered as not placed, never both.
const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

struct Pending {
    order: NewOrder,
    reply: oneshot::Sender<Result<Placed, ApiError>>,
    state: Arc<AtomicU8>,
}

impl Pending {
    /// Takes the order into a group, unless its request gave up or went away.
    fn take(&self) -> bool {
        !self.reply.is_closed()
            && self
                .state
                .compare_exchange(WAITING, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// The queue of one worker thread's placements.
pub struct Placements {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Placements {
    /// Starts the queue on the current worker thread's runtime; it stops once dropped.
    pub fn start(pool: Pool) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<Pending>();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        actix_web::rt::spawn(async move {
            while let Some(first) = pending.recv().await {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    return;
                };
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match pending.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                let pool = pool.clone();
                actix_web::rt::spawn(async move {
                    place_group(&pool, group).await;
                    drop(slot);
                });
            }
        });
        Self { queue }
    }

    /// Places `order`, alone or with others, once it is its turn.
    pub async fn place(&self, order: NewOrder) -> Result<Placed, ApiError> {
        let (reply, mut placed) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(WAITING));
        self.queue
            .send(Pending {
                order,
                reply,
                state: Arc::clone(&state),
            })
            .map_err(|_| ApiError::internal("the placement queue has stopped"))?;
        let answer = tokio::select! {
            answer = &mut placed => answer,
            () = tokio::time::sleep(WAIT_FOR_A_GROUP) => {
                let gave_up = state
                    .compare_exchange(WAITING, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if gave_up {
                    return Err(ApiError::unavailable("no placement group took the order in time"));
                }
                // Taken meanwhile: its group answers.
                placed.await
            }
        };
        answer.unwrap_or_else(|_| Err(ApiError::internal("the placement was dropped")))
    }
}

/// Places a group ([`place_orders`]) and answers each of its requests.
async fn place_group(pool: &Pool, group: Vec<Pending>) {
    let group: Vec<Pending> = group.into_iter().filter(Pending::take).collect();
    if group.is_empty() {
        return;
    }
    // Orders per transaction: the ratio of the two.
    metrics::counter!("orderflow_placement_transactions_total").increment(1);
    metrics::counter!("orderflow_placement_orders_total").increment(group.len() as u64);
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(error) => return answer_all(group, ApiError::from(error)),
    };
    let orders: Vec<&NewOrder> = group.iter().map(|pending| &pending.order).collect();
    match place_orders(&mut conn, &orders, GROUP_BUDGET).await {
        Ok(placed) => {
            for (pending, placed) in group.into_iter().zip(placed) {
                let _ = pending.reply.send(placed.map_err(ApiError::from));
            }
        }
        Err(error) => answer_all(group, ApiError::from(error)),
    }
}

/// The same failure for every request of a group.
fn answer_all(group: Vec<Pending>, error: ApiError) {
    for pending in group {
        let _ = pending.reply.send(Err(error.clone()));
    }
}
