//! All configuration, read once from the environment at start. Each concern has its own
//! struct; a bad value stops the service with a message naming the variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// Reads `name`, falling back to `default` when unset or empty.
fn var<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match optional_var(name)? {
        Some(value) => Ok(value),
        None => Ok(default),
    }
}

fn optional_var<T>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match std::env::var(name) {
        Ok(raw) if raw.trim().is_empty() => Ok(None),
        Ok(raw) => raw.trim().parse().map(Some).map_err(|error| ConfigError {
            variable: name,
            message: format!("{error} (got {raw:?})"),
        }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError {
            variable: name,
            message: "not valid UTF-8".into(),
        }),
    }
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// A value that must never reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: Secret,
    /// `DB_POOL_SIZE`; unset, each service sizes its own pool (see [`Self::pool_size_or`]).
    pub pool_size: Option<u32>,
    /// `DB_ACQUIRE_TIMEOUT_MS`: how long a request or task waits for a connection before it
    /// fails (503 for a request), so that an unreachable database means fast errors, not
    /// hung requests.
    pub acquire_timeout: Duration,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/orderflow";

impl DatabaseConfig {
    /// The configured pool size, or the service's own default.
    pub fn pool_size_or(&self, default: u32) -> u32 {
        self.pool_size.unwrap_or(default)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let url: String = var("DATABASE_URL", DEFAULT_DATABASE_URL.to_string())?;
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid(
                "DATABASE_URL",
                "must start with postgres:// or postgresql://",
            ));
        }
        let pool_size: Option<u32> = optional_var("DB_POOL_SIZE")?;
        if pool_size.is_some_and(|size| !(1..=1000).contains(&size)) {
            return Err(invalid("DB_POOL_SIZE", "must be between 1 and 1000"));
        }
        let acquire_timeout_ms = var("DB_ACQUIRE_TIMEOUT_MS", 1000u64)?;
        if !(1..=600_000).contains(&acquire_timeout_ms) {
            return Err(invalid(
                "DB_ACQUIRE_TIMEOUT_MS",
                "must be between 1 and 600000",
            ));
        }
        Ok(Self {
            url: Secret(url),
            pool_size,
            acquire_timeout: Duration::from_millis(acquire_timeout_ms),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    /// Admin endpoints are disabled when unset.
    pub admin_token: Option<Secret>,
    /// `CORS_ORIGINS`: browser origins allowed to call the API; none by default.
    pub cors_origins: Vec<String>,
    pub migrate_on_start: bool,
    /// `ORDER_RATE_LIMIT`: orders a client may place per minute (`0`: no limit).
    pub order_rate_limit: u32,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `API_MAX_CONNECTIONS`: open client connections at most, all workers together; more
    /// wait in the listen backlog.
    pub max_connections: usize,
    /// `REQUEST_BODY_TIMEOUT_MS`: a request body must arrive within this, from the request's
    /// start (408 otherwise), so a client trickling bytes cannot hold a connection.
    pub body_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS` and `DB_LOCK_TIMEOUT_MS`: the API's database sessions give
    /// up on a statement, or on a lock, after these (503), so every request ends.
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    /// HTTP worker threads (one per core by default).
    pub workers: usize,
    /// The queue gauges of `/metrics` are read from the database at most this often.
    pub queue_gauges_every: Duration,
    /// `ADMISSION_MAX_QUEUE_WAIT_MS` (1,000; `0` turns it off): new orders are turned away
    /// (503 `overloaded`) while the oldest due task of any stage has waited longer.
    pub admission_max_queue_wait: Option<Duration>,
    /// `API_MAX_ORDERS_IN_FLIGHT` (64): orders being placed at once in this process, at most;
    /// more are turned away (503 `overloaded`) rather than queued for the database.
    pub max_orders_in_flight: usize,
    /// How often the stages' backlog is read for admission control.
    pub admission_every: Duration,
}

impl Default for ApiConfig {
    /// The defaults of [`ApiConfig::from_env`], with no admin token.
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            cors_origins: Vec::new(),
            migrate_on_start: true,
            order_rate_limit: 30,
            trusted_proxies: Vec::new(),
            max_connections: 1024,
            body_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(3),
            lock_timeout: Duration::from_secs(1),
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            queue_gauges_every: Duration::from_secs(1),
            admission_max_queue_wait: Some(Duration::from_secs(1)),
            max_orders_in_flight: 64,
            admission_every: Duration::from_millis(200),
        }
    }
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let admin_token: Option<String> = optional_var("ADMIN_TOKEN")?;
        if admin_token.as_ref().is_some_and(|token| token.len() < 16) {
            return Err(invalid("ADMIN_TOKEN", "must be at least 16 characters"));
        }
        let cors_origins: String = var("CORS_ORIGINS", String::new())?;
        let cors_origins = cors_origins
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| parse_origin(origin).map_err(|message| invalid("CORS_ORIGINS", message)))
            .collect::<Result<Vec<_>, _>>()?;
        let order_rate_limit = var("ORDER_RATE_LIMIT", defaults.order_rate_limit)?;
        if order_rate_limit > 1_000_000 {
            return Err(invalid(
                "ORDER_RATE_LIMIT",
                "must be between 0 (no limit) and 1000000",
            ));
        }
        let trusted_proxies: String = var("TRUSTED_PROXIES", String::new())?;
        let trusted_proxies = trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|proxy| !proxy.is_empty())
            .map(|proxy| {
                proxy.parse().map_err(|_| {
                    invalid(
                        "TRUSTED_PROXIES",
                        format!("{proxy:?} is not an IP address (a comma-separated list)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_connections = var("API_MAX_CONNECTIONS", defaults.max_connections)?;
        if !(1..=1_000_000).contains(&max_connections) {
            return Err(invalid(
                "API_MAX_CONNECTIONS",
                "must be between 1 and 1000000",
            ));
        }
        let millis = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            let ms = var(name, default.as_millis() as u64)?;
            if !(1..=600_000).contains(&ms) {
                return Err(invalid(name, "must be between 1 and 600000"));
            }
            Ok(Duration::from_millis(ms))
        };
        let max_queue_wait_ms = var("ADMISSION_MAX_QUEUE_WAIT_MS", 1_000u64)?;
        if max_queue_wait_ms > 600_000 {
            return Err(invalid(
                "ADMISSION_MAX_QUEUE_WAIT_MS",
                "must be between 0 (off) and 600000",
            ));
        }
        let max_orders_in_flight = var("API_MAX_ORDERS_IN_FLIGHT", defaults.max_orders_in_flight)?;
        if !(1..=100_000).contains(&max_orders_in_flight) {
            return Err(invalid(
                "API_MAX_ORDERS_IN_FLIGHT",
                "must be between 1 and 100000",
            ));
        }
        Ok(Self {
            admission_max_queue_wait: (max_queue_wait_ms > 0)
                .then(|| Duration::from_millis(max_queue_wait_ms)),
            max_orders_in_flight,
            addr: var("API_ADDR", defaults.addr)?,
            admin_token: admin_token.map(Secret),
            cors_origins,
            migrate_on_start: var("MIGRATE_ON_START", true)?,
            order_rate_limit,
            trusted_proxies,
            max_connections,
            body_timeout: millis("REQUEST_BODY_TIMEOUT_MS", defaults.body_timeout)?,
            statement_timeout: millis("DB_STATEMENT_TIMEOUT_MS", defaults.statement_timeout)?,
            lock_timeout: millis("DB_LOCK_TIMEOUT_MS", defaults.lock_timeout)?,
            ..defaults
        })
    }
}

/// A browser origin as the `Origin` header spells it: `http(s)://host[:port]`, no path;
/// or `*` for any origin.
fn parse_origin(origin: &str) -> Result<String, String> {
    if origin == "*" {
        return Ok(origin.to_string());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
    let valid_host = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid_host {
        return Err(format!(
            "{origin:?} is not an origin (scheme://host[:port], no path or trailing slash)"
        ));
    }
    Ok(origin.to_ascii_lowercase())
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// lettre's URL form, e.g. `smtp://127.0.0.1:1025`; may hold credentials.
    pub smtp_url: Option<Secret>,
    /// Where `.eml` files go when there is no SMTP server.
    pub mail_dir: PathBuf,
    pub from: lettre::message::Mailbox,
    /// `PUBLIC_URL`: the API's address as customers reach it; the e-mails link to the
    /// order's page there. No trailing slash.
    pub public_url: String,
}

/// Where the API listens by default, as a URL.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

impl MailConfig {
    /// Who the e-mails come from, and where their links point.
    pub fn letterhead(&self) -> orderflow::email::Letterhead {
        orderflow::email::Letterhead {
            from: self.from.clone(),
            public_url: self.public_url.clone(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let smtp_url: Option<String> = optional_var("SMTP_URL")?;
        if let Some(url) = &smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(invalid("SMTP_URL", "must start with smtp:// or smtps://"));
            }
        }
        let public_url: String = var("PUBLIC_URL", DEFAULT_PUBLIC_URL.to_string())?;
        let public_url = public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.contains(char::is_whitespace)
        {
            return Err(invalid(
                "PUBLIC_URL",
                "must be an http:// or https:// URL without spaces",
            ));
        }
        Ok(Self {
            public_url,
            smtp_url: smtp_url.map(Secret),
            mail_dir: var("MAIL_DIR", PathBuf::from(".data/mail"))?,
            from: var(
                "MAIL_FROM",
                lettre::message::Mailbox::new(
                    Some("Orderflow".into()),
                    lettre::Address::new("orders", "orderflow.example")
                        .map_err(|e| invalid("MAIL_FROM", e.to_string()))?,
                ),
            )?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `WORKER_CONCURRENCY`: the most tasks of each kind a worker process runs at once.
    /// Within it the worker sizes its limit from what it observes (a slow provider gets
    /// hundreds in flight, a kind that only writes to PostgreSQL few).
    pub concurrency: usize,
    /// `WORKER_MIN_CONCURRENCY`: where the adaptive limit starts and the least it goes
    /// down to (8, or `WORKER_CONCURRENCY` if that is lower; equal, the limit is fixed).
    pub min_concurrency: usize,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    /// `WORKER_CLAIM_COOLDOWN_MS`: the least time between two claims of a busy kind (`0`:
    /// every wake-up claims at once).
    pub claim_cooldown: Duration,
    /// `TASK_LEASE_SECONDS`: overrides the lease of every kind this worker runs.
    pub lease: Option<Duration>,
    /// `COMPLETED_TASK_RETENTION_HOURS`: how long completed tasks are kept (default the
    /// queue's [`orderflow_queue::DEFAULT_COMPLETED_RETENTION`], a day; `0` keeps them forever).
    pub completed_retention: Option<Duration>,
    /// `METRICS_ADDR`: where the worker serves `/metrics`, `/healthz` and `/readyz`; unset,
    /// it serves none (replicas on one host would need a port each).
    pub metrics_addr: Option<SocketAddr>,
}

/// The queue's default ([`orderflow_queue::DEFAULT_CLAIM_COOLDOWN`]).
const DEFAULT_CLAIM_COOLDOWN_MS: u64 = orderflow_queue::DEFAULT_CLAIM_COOLDOWN.as_millis() as u64;

/// The most attempts of a kind in flight per worker process: enough for a provider that
/// answers in half a second at several hundred orders a second (Little's law: 400/s × 0.5 s
/// is 200 in flight), with room for its slow tail.
pub const DEFAULT_MAX_CONCURRENCY: usize = 512;
/// Where the adaptive limit starts, and its floor.
pub const DEFAULT_MIN_CONCURRENCY: usize = 8;

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let concurrency = var("WORKER_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)?;
        if !(1..=4096).contains(&concurrency) {
            return Err(invalid("WORKER_CONCURRENCY", "must be between 1 and 4096"));
        }
        let min_concurrency = var(
            "WORKER_MIN_CONCURRENCY",
            DEFAULT_MIN_CONCURRENCY.min(concurrency),
        )?;
        if !(1..=concurrency).contains(&min_concurrency) {
            return Err(invalid(
                "WORKER_MIN_CONCURRENCY",
                "must be between 1 and WORKER_CONCURRENCY",
            ));
        }
        let poll_interval_ms = var("WORKER_POLL_INTERVAL_MS", 1000u64)?;
        if poll_interval_ms == 0 {
            return Err(invalid("WORKER_POLL_INTERVAL_MS", "must be at least 1"));
        }
        let claim_cooldown_ms = var("WORKER_CLAIM_COOLDOWN_MS", DEFAULT_CLAIM_COOLDOWN_MS)?;
        if claim_cooldown_ms > 1000 {
            return Err(invalid(
                "WORKER_CLAIM_COOLDOWN_MS",
                "must be between 0 and 1000",
            ));
        }
        let lease: Option<f64> = optional_var("TASK_LEASE_SECONDS")?;
        if lease.is_some_and(|secs| !(0.1..=3600.0).contains(&secs)) {
            return Err(invalid(
                "TASK_LEASE_SECONDS",
                "must be between 0.1 and 3600",
            ));
        }
        let default_hours = orderflow_queue::DEFAULT_COMPLETED_RETENTION.as_secs_f64() / 3600.0;
        let retention_hours: f64 = var("COMPLETED_TASK_RETENTION_HOURS", default_hours)?;
        if !(0.0..=87_600.0).contains(&retention_hours) {
            return Err(invalid(
                "COMPLETED_TASK_RETENTION_HOURS",
                "must be between 0 (keep forever) and 87600",
            ));
        }
        Ok(Self {
            concurrency,
            min_concurrency,
            lease: lease.map(Duration::from_secs_f64),
            completed_retention: (retention_hours > 0.0)
                .then(|| Duration::from_secs_f64(retention_hours * 3600.0)),
            metrics_addr: optional_var("METRICS_ADDR")?,
            poll_interval: Duration::from_millis(poll_interval_ms),
            claim_cooldown: Duration::from_millis(claim_cooldown_ms),
            shutdown_grace: Duration::from_secs(var("SHUTDOWN_GRACE_SECONDS", 10u64)?),
        })
    }
}

/// The payment worker's provider: over HTTP at `PAYMENT_GATEWAY_URL`, or, unset, the
/// in-process simulator shaped by the `PAYMENT_*` behaviour variables.
#[derive(Debug, Clone, Default)]
pub struct PaymentConfig {
    pub latency: Duration,
    /// Fraction (0..=1) of gateway calls that fail transiently.
    pub transient_failure_rate: f64,
    /// `PAYMENT_LOST_RESPONSE_RATE`: fraction (0..=1) of charges whose answer is lost after
    /// the charge was made (the caller sees a transient error; the money was taken).
    pub lost_response_rate: f64,
    /// `PAYMENT_GATEWAY_URL`: the provider's base URL (e.g. `http://127.0.0.1:8090`).
    pub gateway_url: Option<String>,
    /// `PAYMENT_GATEWAY_API_KEY`: sent as a bearer token, when the provider wants one.
    pub gateway_api_key: Option<Secret>,
    /// `PAYMENT_GATEWAY_CONNECT_TIMEOUT_MS` (1,000) and `PAYMENT_GATEWAY_TIMEOUT_MS`
    /// (10,000): a call that has not connected, or not answered, by then is a transient
    /// failure, retried with the same idempotency key.
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl PaymentConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let rate = var("PAYMENT_TRANSIENT_FAILURE_RATE", 0.0f64)?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid(
                "PAYMENT_TRANSIENT_FAILURE_RATE",
                "must be between 0 and 1",
            ));
        }
        let lost = var("PAYMENT_LOST_RESPONSE_RATE", 0.0f64)?;
        if !(0.0..=1.0).contains(&lost) {
            return Err(invalid(
                "PAYMENT_LOST_RESPONSE_RATE",
                "must be between 0 and 1",
            ));
        }
        let gateway_url: Option<String> = optional_var("PAYMENT_GATEWAY_URL")?;
        let gateway_url = gateway_url.map(|url| url.trim_end_matches('/').to_string());
        if gateway_url
            .as_ref()
            .is_some_and(|url| !(url.starts_with("http://") || url.starts_with("https://")))
        {
            return Err(invalid(
                "PAYMENT_GATEWAY_URL",
                "must start with http:// or https://",
            ));
        }
        let timeout_ms = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            let ms = var(name, default)?;
            if !(1..=600_000).contains(&ms) {
                return Err(invalid(name, "must be between 1 and 600000"));
            }
            Ok(Duration::from_millis(ms))
        };
        Ok(Self {
            latency: Duration::from_millis(var("PAYMENT_LATENCY_MS", 0u64)?),
            transient_failure_rate: rate,
            lost_response_rate: lost,
            gateway_url,
            gateway_api_key: optional_var::<String>("PAYMENT_GATEWAY_API_KEY")?.map(Secret),
            connect_timeout: timeout_ms("PAYMENT_GATEWAY_CONNECT_TIMEOUT_MS", 1_000)?,
            request_timeout: timeout_ms("PAYMENT_GATEWAY_TIMEOUT_MS", 10_000)?,
        })
    }
}

/// `gateway-sim`, the payment provider simulator.
#[derive(Debug, Clone)]
pub struct GatewaySimConfig {
    /// `GATEWAY_ADDR` (127.0.0.1:8090).
    pub addr: SocketAddr,
    /// `GATEWAY_LATENCY_P50_MS` and `GATEWAY_LATENCY_P99_MS`: the median and the 99th
    /// percentile of the time a call takes (log-normal between them; p99 defaults to p50,
    /// a constant).
    pub latency_p50: Duration,
    pub latency_p99: Duration,
    /// `GATEWAY_TRANSIENT_FAILURE_RATE`: calls answered 503 before anything is done.
    pub transient_failure_rate: f64,
    /// `GATEWAY_LOST_RESPONSE_RATE`: charges made and then answered 504, as if the answer
    /// was lost on the way.
    pub lost_response_rate: f64,
    /// `GATEWAY_IDEMPOTENCY_WINDOW_SECS` (86,400): how long an idempotency key is kept.
    pub idempotency_window: Duration,
    /// `GATEWAY_MAX_KEYS` (300,000, about 225 MB): keys kept at most; the oldest go first.
    pub max_keys: usize,
    /// `GATEWAY_JOURNAL_DIR`: where charges and refunds are written, so that a restarted
    /// simulator remembers them (unset: memory only).
    pub journal_dir: Option<PathBuf>,
    /// `GATEWAY_API_KEY`: when set, calls must carry it as a bearer token.
    pub api_key: Option<Secret>,
}

impl GatewaySimConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let rate = |name: &'static str| -> Result<f64, ConfigError> {
            let value = var(name, 0.0f64)?;
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(name, "must be between 0 and 1"));
            }
            Ok(value)
        };
        let p50 = var("GATEWAY_LATENCY_P50_MS", 0u64)?;
        let p99 = var("GATEWAY_LATENCY_P99_MS", p50)?;
        if p99 < p50 {
            return Err(invalid(
                "GATEWAY_LATENCY_P99_MS",
                "must be at least GATEWAY_LATENCY_P50_MS",
            ));
        }
        let window = var("GATEWAY_IDEMPOTENCY_WINDOW_SECS", 86_400u64)?;
        if !(1..=30 * 86_400).contains(&window) {
            return Err(invalid(
                "GATEWAY_IDEMPOTENCY_WINDOW_SECS",
                "must be between 1 and 2592000 (30 days)",
            ));
        }
        let max_keys = var("GATEWAY_MAX_KEYS", 300_000usize)?;
        if !(1..=100_000_000).contains(&max_keys) {
            return Err(invalid(
                "GATEWAY_MAX_KEYS",
                "must be between 1 and 100000000",
            ));
        }
        Ok(Self {
            addr: var("GATEWAY_ADDR", SocketAddr::from(([127, 0, 0, 1], 8090)))?,
            latency_p50: Duration::from_millis(p50),
            latency_p99: Duration::from_millis(p99),
            transient_failure_rate: rate("GATEWAY_TRANSIENT_FAILURE_RATE")?,
            lost_response_rate: rate("GATEWAY_LOST_RESPONSE_RATE")?,
            idempotency_window: Duration::from_secs(window),
            max_keys,
            journal_dir: optional_var("GATEWAY_JOURNAL_DIR")?,
            api_key: optional_var::<String>("GATEWAY_API_KEY")?.map(Secret),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected json or pretty, not {other:?}")),
        }
    }
}

impl LogFormat {
    pub fn from_env() -> Result<Self, ConfigError> {
        var("LOG_FORMAT", LogFormat::Pretty)
    }
}
