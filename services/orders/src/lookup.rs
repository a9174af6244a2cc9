//! Reads by key, many keys per statement.
//!
//! The tasks of one claim start together, and each step's `perform` reads its order. One
//! statement per task pays PostgreSQL's fixed cost of a statement (executor start-up,
//! relation locks, a round trip) for each; a read of many orders by key costs little more
//! than a read of one. A [`BatchedLookup`] serves the
//! keys asked for at about the same time with one read: one read runs at a time, and the
//! keys asked for meanwhile make up the next. A lone request is read at once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;

use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use orderflow_queue::TaskError;
use tokio::sync::{mpsc, oneshot};

use orderflow_queue::Pool;

/// The most keys one read asks for.
const MAX_KEYS: usize = 64;

/// A read of many keys at once.
pub trait LookupMany: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    type Value: Clone + Send + 'static;

    /// The values of `keys` (distinct), in any order; a key without one is left out.
    fn read(
        &self,
        conn: &mut AsyncPgConnection,
        keys: &[Self::Key],
    ) -> impl Future<Output = QueryResult<Vec<(Self::Key, Self::Value)>>> + Send;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("database: {0}")]
    Database(String),
    #[error("the lookup has stopped")]
    Stopped,
}

impl From<LookupError> for TaskError {
    fn from(error: LookupError) -> Self {
        TaskError::retryable(error)
    }
}

type Answer<V> = Result<Option<V>, LookupError>;
type Request<L> = (
    <L as LookupMany>::Key,
    oneshot::Sender<Answer<<L as LookupMany>::Value>>,
);

/// Batches the reads of one [`LookupMany`]; cloned handles share its batches.
pub struct BatchedLookup<L: LookupMany> {
    requests: mpsc::UnboundedSender<Request<L>>,
}

impl<L: LookupMany> Clone for BatchedLookup<L> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
        }
    }
}

impl<L: LookupMany> BatchedLookup<L> {
    /// Starts the task that reads; it stops once every handle is gone.
    pub fn start(pool: Pool, lookup: L) -> Self {
        let (requests, mut pending) = mpsc::unbounded_channel::<Request<L>>();
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                // The other tasks of a claim are usually about to ask: let them first.
                tokio::task::yield_now().await;
                let mut batch = vec![first];
                while batch.len() < MAX_KEYS {
                    match pending.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                answer(&pool, &lookup, batch).await;
            }
        });
        Self { requests }
    }

    /// The value of `key`, `None` if it has none.
    pub async fn get(&self, key: L::Key) -> Answer<L::Value> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send((key, reply))
            .map_err(|_| LookupError::Stopped)?;
        answer.await.unwrap_or(Err(LookupError::Stopped))
    }
}

/// Reads a batch's keys and answers each request; a failed read fails all of them.
async fn answer<L: LookupMany>(pool: &Pool, lookup: &L, batch: Vec<Request<L>>) {
    let mut keys: Vec<L::Key> = batch.iter().map(|(key, _)| key.clone()).collect();
    dedup_in_order(&mut keys);
    let read = async {
        let mut conn = pool
            .get()
            .await
            .map_err(|error| LookupError::Database(error.to_string()))?;
        // A panic in the read fails this batch, not every read after it.
        match AssertUnwindSafe(lookup.read(&mut conn, &keys))
            .catch_unwind()
            .await
        {
            Ok(rows) => rows.map_err(|error| LookupError::Database(error.to_string())),
            Err(_) => Err(LookupError::Database("the read panicked".to_string())),
        }
    };
    match read.await {
        Ok(rows) => {
            let values: HashMap<L::Key, L::Value> = rows.into_iter().collect();
            for (key, reply) in batch {
                // The asking attempt may have been stopped meanwhile.
                let _ = reply.send(Ok(values.get(&key).cloned()));
            }
        }
        Err(error) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

fn dedup_in_order<K: Clone + Eq + Hash>(keys: &mut Vec<K>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|key| seen.insert(key.clone()));
}
