//! The real system as child processes (the API and the three workers, any number of
//! replicas each), and the client side of a run: a catalog, orders placed with retries,
//! and waiting for every order to finish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::ADMIN_TOKEN;
use crate::processes::Service;
use crate::smtp::free_port;
use crate::wait_until;

pub const WORKERS: [&str; 3] = ["payment-worker", "inventory-worker", "notification-worker"];

/// Where the services run and what they are told.
pub struct Stack {
    pub base: String,
    pub database_url: String,
    env: Vec<(&'static str, String)>,
    logs: PathBuf,
    /// Incarnations started per label, so that each keeps its own log file.
    started: HashMap<String, usize>,
    /// `gateway-sim`'s address and journal, once started ([`Self::start_gateway`]).
    gateway: Option<(String, PathBuf)>,
}

impl Stack {
    /// `extra` adds to or overrides the defaults (JSON logs at info, a short poll).
    pub fn new(database_url: &str, smtp_url: &str, extra: &[(&'static str, &str)]) -> Self {
        let api_addr = format!("127.0.0.1:{}", free_port());
        let mut env: Vec<(&'static str, String)> = vec![
            ("DATABASE_URL", database_url.to_string()),
            ("API_ADDR", api_addr.clone()),
            ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
            ("SMTP_URL", smtp_url.to_string()),
            ("DB_POOL_SIZE", "6".to_string()),
            ("WORKER_CONCURRENCY", "4".to_string()),
            ("WORKER_POLL_INTERVAL_MS", "250".to_string()),
            ("LOG_FORMAT", "json".to_string()),
            ("RUST_LOG", "info".to_string()),
            // The tests place their orders from one address.
            ("ORDER_RATE_LIMIT", "0".to_string()),
        ];
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key, value.to_string()));
        }
        let logs = std::env::temp_dir().join(format!("orderflow-logs-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("{}: {e}", logs.display()));
        Self {
            base: format!("http://{api_addr}"),
            database_url: database_url.to_string(),
            env,
            logs,
            started: HashMap::new(),
            gateway: None,
        }
    }

    /// Starts (or restarts, on the same port and journal) `gateway-sim`, and waits until it
    /// answers; payment workers started afterwards charge through it over HTTP.
    /// `behaviour` sets its `GATEWAY_*` variables.
    pub async fn start_gateway(&mut self, behaviour: &[(&'static str, &str)]) -> Service {
        let (addr, journal) = match &self.gateway {
            Some(gateway) => gateway.clone(),
            None => {
                let gateway = (
                    format!("127.0.0.1:{}", free_port()),
                    self.logs.join("gateway-journal"),
                );
                self.env
                    .push(("PAYMENT_GATEWAY_URL", format!("http://{}", gateway.0)));
                self.gateway = Some(gateway.clone());
                gateway
            }
        };
        let mut env: Vec<(&'static str, String)> = vec![
            ("GATEWAY_ADDR", addr.clone()),
            (
                "GATEWAY_JOURNAL_DIR",
                journal.to_string_lossy().into_owned(),
            ),
        ];
        env.extend(behaviour.iter().map(|(k, v)| (*k, v.to_string())));
        let service = self.start_with("gateway-sim", "gateway-sim", &env);
        let health = format!("http://{addr}/healthz");
        wait_until("gateway-sim to answer", Duration::from_secs(30), || async {
            let response = reqwest::get(&health).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        service
    }

    /// The journal of the `gateway-sim` this stack started: what the provider did.
    pub fn gateway_journal(&self) -> Option<PathBuf> {
        self.gateway.as_ref().map(|(_, journal)| journal.clone())
    }

    /// Starts binary `name` as `label` (e.g. `payment-worker-2`).
    pub fn start(&mut self, name: &str, label: &str) -> Service {
        self.start_with(name, label, &[])
    }

    /// As [`Self::start`], with variables for this service only.
    pub fn start_with(
        &mut self,
        name: &str,
        label: &str,
        extra: &[(&'static str, String)],
    ) -> Service {
        let incarnation = self.started.entry(label.to_string()).or_default();
        *incarnation += 1;
        let mut env = self.env.clone();
        env.extend(extra.iter().cloned());
        let mut service = Service::start(name, &format!("{label}.{incarnation}"), &env, &self.logs);
        service.name = label.to_string();
        service
    }

    /// Starts the API and waits until it is ready (it migrates the database first).
    pub async fn start_api(&mut self, client: &reqwest::Client) -> Service {
        let api = self.start("order-api", "order-api");
        self.wait_ready(client).await;
        api
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) {
        let url = format!("{}/readyz", self.base);
        wait_until("the API to be ready", Duration::from_secs(60), || async {
            let response = client.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// `replicas` of each worker service, labelled `<name>-<n>`.
    pub fn start_workers(&mut self, replicas: usize) -> Vec<Service> {
        let mut workers = Vec::new();
        for name in WORKERS {
            for replica in 1..=replicas {
                workers.push(self.start(name, &format!("{name}-{replica}")));
            }
        }
        workers
    }

    pub fn logs(&self) -> &std::path::Path {
        &self.logs
    }

    /// Creates products with the given stocks through the admin API; returns their ids
    /// and initial stock.
    pub async fn create_catalog(
        &self,
        client: &reqwest::Client,
        prefix: &str,
        stocks: &[i32],
    ) -> (Vec<String>, HashMap<Uuid, i32>) {
        let mut ids = Vec::new();
        let mut initial = HashMap::new();
        for (n, stock) in stocks.iter().enumerate() {
            let response = client
                .post(format!("{}/products", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({
                    "sku": format!("{prefix}-{n}"),
                    "name": format!("Product {n}"),
                    "price_cents": 250 + n as i64 * 100,
                    "stock": stock,
                }))
                .send()
                .await
                .expect("create product");
            assert_eq!(response.status(), 201, "create product {n}");
            let product: Value = response.json().await.unwrap_or_default();
            let id = product["id"].as_str().unwrap_or_default().to_string();
            initial.insert(Uuid::parse_str(&id).unwrap_or_default(), *stock);
            ids.push(id);
        }
        (ids, initial)
    }

    /// How many orders are not finished yet: not terminal, or terminal without their
    /// e-mail recorded. `None` while the database cannot be reached.
    pub async fn unfinished_orders(&self) -> Option<i64> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.database_url)
            .await
            .ok()?;
        let count: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM orders o \
             WHERE o.status NOT IN ('fulfilled', 'cancelled') \
                OR NOT EXISTS (SELECT 1 FROM sent_emails s WHERE s.order_id = o.id)",
        )
        .get_result(&mut conn)
        .await
        .ok()?;
        Some(count.n)
    }

    /// Waits until every order is finished; returns how long that took.
    pub async fn wait_drained(&self, deadline: Duration) -> Duration {
        let start = Instant::now();
        wait_until(
            "every order to finish with its e-mail",
            deadline,
            || async { (self.unfinished_orders().await? == 0).then_some(()) },
        )
        .await;
        start.elapsed()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Logs stay for a failed test to be read; a passing one cleans up.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.logs);
        }
    }
}

/// What placing one order took from the client's side.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order_id: String,
    /// Requests sent, including retries after errors the client should retry (connection
    /// refused, 503).
    pub requests: usize,
}

/// Places an order the way a careful client does: with an Idempotency-Key, retrying on
/// connection errors and 503 until `deadline`, so that a restart of the API or the
/// database costs time but never an order or a duplicate. Any other answer than 202 is
/// returned as an error.
pub async fn place_with_retry(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
    deadline: Duration,
) -> Result<Placed, String> {
    let start = Instant::now();
    let mut requests = 0;
    let mut pause = Duration::from_millis(20);
    loop {
        requests += 1;
        let outcome = client
            .post(format!("{base}/orders"))
            .header("Idempotency-Key", key)
            .timeout(Duration::from_secs(10))
            .json(body)
            .send()
            .await;
        match outcome {
            Ok(response) if response.status() == 202 => {
                let order: Value = response.json().await.map_err(|e| e.to_string())?;
                let order_id = order["id"].as_str().unwrap_or_default().to_string();
                return Ok(Placed { order_id, requests });
            }
            Ok(response) if response.status() == 503 => {}
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                return Err(format!("order {key}: {status} {text}"));
            }
            // Refused, reset or timed out: the API is restarting.
            Err(_) => {}
        }
        if start.elapsed() > deadline {
            return Err(format!("order {key}: not accepted within {deadline:?}"));
        }
        // A client's retry backoff, not a wait for a condition.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
