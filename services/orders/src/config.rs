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
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
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
        Ok(Self {
            addr: var("API_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            admin_token: admin_token.map(Secret),
            cors_origins,
            migrate_on_start: var("MIGRATE_ON_START", true)?,
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
}

impl MailConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let smtp_url: Option<String> = optional_var("SMTP_URL")?;
        if let Some(url) = &smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(invalid("SMTP_URL", "must start with smtp:// or smtps://"));
            }
        }
        Ok(Self {
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
    /// Tasks of each kind a worker process runs at once.
    pub concurrency: usize,
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

/// The queue's default: a kind above about 270 tasks/s claims at most every 15 ms, a
/// quieter one at once (load-tests/RESULTS.md, session 14).
const DEFAULT_CLAIM_COOLDOWN_MS: u64 = orderflow_queue::DEFAULT_CLAIM_COOLDOWN.as_millis() as u64;

impl WorkerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let concurrency = var("WORKER_CONCURRENCY", 8usize)?;
        if !(1..=1024).contains(&concurrency) {
            return Err(invalid("WORKER_CONCURRENCY", "must be between 1 and 1024"));
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

#[derive(Debug, Clone)]
pub struct PaymentConfig {
    pub latency: Duration,
    /// Fraction (0..=1) of gateway calls that fail transiently.
    pub transient_failure_rate: f64,
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
        Ok(Self {
            latency: Duration::from_millis(var("PAYMENT_LATENCY_MS", 0u64)?),
            transient_failure_rate: rate,
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
