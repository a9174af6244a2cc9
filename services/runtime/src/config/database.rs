//! The database connection: `DATABASE_URL`, the pool.

use std::time::Duration;

use super::{invalid, optional_var, var, ConfigError, Secret};

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
