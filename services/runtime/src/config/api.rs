//! The order API: where it listens, who may call it, its limits.

use std::net::SocketAddr;
use std::time::Duration;

use super::{invalid, optional_var, var, ConfigError, Secret};

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
