use std::future::{ready, Ready};

use actix_web::{web, FromRequest, HttpRequest};
use orderflow::config::Secret;
use orderflow::db::Pool;

use crate::error::{ApiError, ErrorCode};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub admin_token: Option<Secret>,
    /// `None` when the metrics recorder could not be installed (logged at start).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.expose().as_bytes()) => {
            Ok(Admin)
        }
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "missing or wrong admin token (Authorization: Bearer ...)",
        )),
    }
}

/// Compares without an early exit, so the time taken does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
