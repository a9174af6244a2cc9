//! The API and the workers, in-process, against a test database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_sim::SimulatedGateway;
use orderflow::payment::PaymentGateway;
use orderflow_runtime::config::{ApiConfig, MailConfig, PaymentConfig, Secret, WorkerConfig};
use orderflow_runtime::mailer::Mailer;
use orderflow_runtime::runtime::WorkerRuntime;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::TestDb;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    server: actix_web::dev::ServerHandle,
    /// The access tokens of the orders this client placed, by order id.
    tokens: Mutex<HashMap<String, String>>,
}

/// The API's configuration in tests: a free port, the admin token, no per-client limit
/// (the tests place their orders from one address) and no admission control (many tests
/// leave charges waiting on purpose); both have tests of their own. One HTTP worker (two
/// cores run several tests at once).
pub fn test_api_config() -> ApiConfig {
    ApiConfig {
        addr: "127.0.0.1:0".parse().expect("a valid literal"),
        admin_token: Some(Secret::new(ADMIN_TOKEN.into())),
        migrate_on_start: false,
        order_rate_limit: 0,
        admission_max_queue_wait: None,
        workers: 1,
        ..ApiConfig::default()
    }
}

impl TestApp {
    /// The API on a free port against `db`, configured as the tests want it
    /// ([`test_api_config`]); [`TestApp::builder`] for anything else.
    pub async fn spawn(db: &TestDb) -> TestApp {
        Self::builder().database(db).spawn().await
    }

    pub fn builder() -> AppBuilder {
        AppBuilder {
            config: test_api_config(),
            database: None,
            pool: None,
        }
    }
}

/// How to start a [`TestApp`]: against a test database (with the API's own pool, its
/// sessions' statement and lock timeouts included) or on a given pool (which may point
/// nowhere), with the test configuration or another.
pub struct AppBuilder {
    config: ApiConfig,
    database: Option<orderflow_runtime::config::DatabaseConfig>,
    pool: Option<orderflow_runtime::db::Pool>,
}

impl AppBuilder {
    pub fn database(mut self, db: &TestDb) -> Self {
        self.database = Some(db.database_config(4));
        self
    }

    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    pub fn pool(mut self, pool: orderflow_runtime::db::Pool) -> Self {
        self.pool = Some(pool);
        self
    }

    pub async fn spawn(self) -> TestApp {
        let pool = match (self.pool, &self.database) {
            (Some(pool), _) => pool,
            (None, Some(database)) => order_api::startup::api_pool(database, &self.config),
            (None, None) => panic!("a test app needs a database or a pool"),
        };
        start_app(&self.config, pool)
    }
}

fn start_app(config: &ApiConfig, pool: orderflow_runtime::db::Pool) -> TestApp {
    let app = order_api::startup::build(config, pool).expect("cannot start the API");
    let server = app.server.handle();
    tokio::spawn(app.server);
    TestApp {
        base_url: format!("http://{}", app.addr),
        client: crate::http::client(),
        server,
        tokens: Mutex::new(HashMap::new()),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let server = self.server.clone();
        // Stopping is async; without a runtime (end of test) the server dies with it anyway.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { server.stop(false).await });
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: body: {e}"))
    }

    /// Creates a product through the admin API and returns its id.
    pub async fn create_product(&self, sku: &str, price_cents: i64, stock: i64) -> String {
        let response = self
            .client
            .post(self.url("/products"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "sku": sku, "name": format!("Product {sku}"), "price_cents": price_cents, "stock": stock }))
            .send()
            .await
            .expect("POST /products");
        assert_eq!(response.status(), 201, "creating product {sku}");
        let product: Value = response.json().await.expect("a JSON body");
        product["id"].as_str().unwrap_or_default().to_string()
    }

    /// Remembers the access token of an order (from its 202).
    pub fn remember_token(&self, order: &Value) {
        if let (Some(id), Some(token)) = (order["id"].as_str(), order["access_token"].as_str()) {
            self.tokens
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(id.to_string(), token.to_string());
        }
    }

    /// The access token of an order this client placed.
    pub fn token_of(&self, order_id: &str) -> String {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(order_id)
            .cloned()
            .unwrap_or_else(|| panic!("no access token for order {order_id}"))
    }

    /// `GET /orders/{id}` as its customer, with the order's access token.
    pub async fn order(&self, order_id: &str) -> Value {
        let path = format!("/orders/{order_id}");
        let response = self
            .client
            .get(self.url(&path))
            .bearer_auth(self.token_of(order_id))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: body: {e}"))
    }

    /// `POST /orders/{id}/cancel` as its customer, with the order's access token.
    pub async fn cancel(&self, order_id: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/orders/{order_id}/cancel")))
            .bearer_auth(self.token_of(order_id))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cancel {order_id}: {e}"))
    }

    /// Places an order; returns the response for the caller to check.
    pub async fn place_order(
        &self,
        token: &str,
        items: &[(&str, i64)],
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/orders"))
            .json(&order_body(token, items));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST /orders")
    }

    /// Places an order that must be accepted; returns its id (and remembers its token).
    pub async fn place_order_id(&self, token: &str, items: &[(&str, i64)]) -> String {
        let response = self.place_order(token, items, None).await;
        assert_eq!(response.status(), 202, "placing an order");
        let order: Value = response.json().await.expect("order body");
        self.remember_token(&order);
        order["id"].as_str().unwrap_or_default().to_string()
    }

    /// A request to an admin route, with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// `GET path` with the admin token; must succeed.
    pub async fn admin_json(&self, path: &str) -> Value {
        let response = self
            .admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: body: {e}"))
    }

    /// `GET path` with the admin token, for the caller to check.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Waits until the order is fulfilled or cancelled and returns it.
    pub async fn wait_terminal(&self, order_id: &str) -> Value {
        crate::wait_until(
            &format!("order {order_id} to finish"),
            Duration::from_secs(30),
            || async {
                let order = self.order(order_id).await;
                matches!(order["status"].as_str(), Some("fulfilled" | "cancelled")).then_some(order)
            },
        )
        .await
    }
}

impl TestApp {
    /// Waits until the order's timeline has an event of this type and returns the order.
    pub async fn wait_until_event(&self, order_id: &str, event: &str) -> Value {
        crate::wait_until(
            &format!("a {event} event on {order_id}"),
            Duration::from_secs(30),
            || async {
                let order = self.order(order_id).await;
                let events = order["events"].as_array().cloned().unwrap_or_default();
                events.iter().any(|e| e["type"] == event).then_some(order)
            },
        )
        .await
    }
}

pub fn order_body(token: &str, items: &[(&str, i64)]) -> Value {
    json!({
        "customer": { "email": "ada@example.com", "name": "Ada Lovelace" },
        "items": items.iter().map(|(id, quantity)| json!({ "product_id": id, "quantity": quantity })).collect::<Vec<_>>(),
        "payment": { "token": token },
    })
}

/// The three worker services running in-process; stopped on drop.
pub struct Workers {
    shutdown: Vec<CancellationToken>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    pub async fn stop(mut self) {
        for token in &self.shutdown {
            token.cancel();
        }
        for handle in self.handles.drain(..) {
            let _ = handle.await;
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for token in &self.shutdown {
            token.cancel();
        }
    }
}

pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        min_concurrency: 4,
        poll_interval: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(5),
        claim_cooldown: Duration::ZERO,
        completed_retention: Some(orderflow_queue::DEFAULT_COMPLETED_RETENTION),
        lease: None,
        metrics_addr: None,
    }
}

impl Workers {
    /// The three worker services against `db`, e-mail going to `smtp_url`: by default one
    /// replica each, with a simulated gateway that always answers at once.
    pub fn builder(db: &TestDb, smtp_url: &str) -> WorkersBuilder {
        WorkersBuilder {
            database: db.database_config(4),
            smtp_url: smtp_url.to_string(),
            gateway: Some(Arc::new(SimulatedGateway::new(PaymentConfig {
                latency: Duration::ZERO,
                transient_failure_rate: 0.0,
                ..Default::default()
            }))),
            inventory_replicas: 1,
            notification: true,
        }
    }
}

/// Which worker services to run in-process, and how: leaving one out stops orders at its
/// stage.
pub struct WorkersBuilder {
    database: orderflow_runtime::config::DatabaseConfig,
    smtp_url: String,
    gateway: Option<Arc<dyn PaymentGateway>>,
    inventory_replicas: usize,
    notification: bool,
}

impl WorkersBuilder {
    /// Charges through `gateway`.
    pub fn gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Charges through a simulated gateway configured by `payment`.
    pub fn simulated_gateway(self, payment: PaymentConfig) -> Self {
        self.gateway(Arc::new(SimulatedGateway::new(payment)))
    }

    /// No payment worker: orders stay `pending`.
    pub fn without_payment(mut self) -> Self {
        self.gateway = None;
        self
    }

    /// `replicas` inventory workers (0: orders stop at `paid`).
    pub fn inventory_replicas(mut self, replicas: usize) -> Self {
        self.inventory_replicas = replicas;
        self
    }

    /// No notification worker: orders stop at `reserved`, cancellations are not mailed.
    pub fn without_notification(mut self) -> Self {
        self.notification = false;
        self
    }

    pub fn spawn(self) -> Workers {
        // Small pools: tests run in parallel against one server with max_connections = 100.
        let database = self.database;
        let worker = worker_config();
        let mut runtimes = Vec::new();

        if let Some(gateway) = self.gateway {
            let mut payment = WorkerRuntime::new(&database, &worker, payment_worker::KINDS);
            payment_worker::register(&mut payment, gateway);
            runtimes.push(payment);
        }

        for _ in 0..self.inventory_replicas {
            let mut inventory = WorkerRuntime::new(&database, &worker, inventory_worker::KINDS);
            inventory_worker::register(&mut inventory);
            runtimes.push(inventory);
        }

        if self.notification {
            let mail = MailConfig {
                smtp_url: Some(Secret::new(self.smtp_url)),
                mail_dir: std::env::temp_dir(),
                from: "Orderflow <orders@orderflow.example>"
                    .parse()
                    .expect("a valid sender address"),
                public_url: "http://shop.test".into(),
            };
            let mailer = Mailer::from_config(&mail).expect("a mailer for the test SMTP server");
            let mut notification =
                WorkerRuntime::new(&database, &worker, notification_worker::KINDS);
            notification_worker::register(&mut notification, mailer, mail.letterhead());
            runtimes.push(notification);
        }

        let shutdown = runtimes.iter().map(WorkerRuntime::shutdown_token).collect();
        let handles = runtimes
            .into_iter()
            .map(|runtime| tokio::spawn(runtime.run_until_stopped()))
            .collect();
        Workers { shutdown, handles }
    }
}
