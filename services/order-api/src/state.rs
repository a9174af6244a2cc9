use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};
use orderflow::access::{bearer_token, secrets_match};
use orderflow_runtime::config::Secret;
use orderflow_runtime::db::Pool;

use crate::error::{ApiError, ErrorCode};

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    pub admin_token: Option<Secret>,
    /// `None` when the metrics recorder could not be installed (logged at start).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub backlog_gauges: orderflow_runtime::metrics::BacklogGauges,
    /// `None`: orders are not limited per client.
    pub order_limiter: Option<crate::rate_limit::RateLimiter>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub admission: std::sync::Arc<crate::admission::Admission>,
    /// Wakes the live order pages' streams when their order moves.
    pub order_feed: crate::order_feed::OrderFeed,
    /// The `/ops` view, built at most once a second.
    pub ops_stats: crate::ops_stats::OpsStats,
}

/// Present only on requests that carried the admin bearer token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authorize(req))
    }
}

fn authorize(req: &HttpRequest) -> Result<Admin, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            ErrorCode::AdminDisabled,
            "the admin API is disabled: set ADMIN_TOKEN to enable it",
        ));
    };
    match bearer(req) {
        Some(token) if secrets_match(token, expected.expose()) => Ok(Admin),
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing or wrong admin token (Authorization: Bearer ...)",
        )),
    }
}

/// The bearer token of the request's `Authorization` header, if any.
fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
}

/// What a request presents to open one order: the order's access token (as a bearer
/// token, or `?token=` for a link in an e-mail) or the admin token.
pub struct OrderCredentials {
    presented: Option<String>,
    admin: bool,
}

impl OrderCredentials {
    /// Whether these credentials open the order whose token is `access_token`. Both
    /// comparisons run, so the time taken does not tell which one matched.
    pub fn open(&self, access_token: &str) -> bool {
        let owner = self
            .presented
            .as_deref()
            .is_some_and(|presented| secrets_match(presented, access_token));
        owner | self.admin
    }
}

impl FromRequest for OrderCredentials {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let presented = bearer(req)
            .map(str::to_string)
            .or_else(|| query_token(req.query_string()));
        let admin = matches!(authorize(req), Ok(Admin));
        ready(Ok(Self { presented, admin }))
    }
}

/// `token=...` of a query string (the link in an order's e-mails).
fn query_token(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| !token.is_empty())
        .map(str::to_string)
}
