//! All configuration, read once from the environment at start. Each concern has its own
//! struct, in its own file; a bad value stops the service with a message naming the
//! variable.

use std::fmt;
use std::str::FromStr;

mod api;
mod database;
mod mail;
mod payment;
mod worker;

pub use api::ApiConfig;
pub use database::{DatabaseConfig, DEFAULT_DATABASE_URL};
pub use mail::{MailConfig, DEFAULT_PUBLIC_URL};
pub use payment::{GatewaySimConfig, PaymentConfig};
pub use worker::{WorkerConfig, DEFAULT_MAX_CONCURRENCY, DEFAULT_MIN_CONCURRENCY};

#[derive(Debug, thiserror::Error)]
#[error("configuration: {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// Reads `name`, falling back to `default` when unset or empty.
pub(crate) fn var<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match optional_var(name)? {
        Some(value) => Ok(value),
        None => Ok(default),
    }
}

pub(crate) fn optional_var<T>(name: &'static str) -> Result<Option<T>, ConfigError>
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

pub(crate) fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
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
