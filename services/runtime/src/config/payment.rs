//! The payment provider: the payment worker's client, and `gateway-sim`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{invalid, optional_var, var, ConfigError, Secret};

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
