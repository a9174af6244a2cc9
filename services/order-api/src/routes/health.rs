use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
#[allow(unused_imports)]
use crate::openapi::{ErrorResponse, Status};
use crate::state::AppState;

/// The process is up.
#[utoipa::path(tag = "health", responses((status = 200, description = "The process is up", body = Status)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database answers, within a second.
#[utoipa::path(tag = "health", responses(
        (status = 200, description = "The database answers", body = Status),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    orderflow_runtime::db::database_ready(&state.pool)
        .await
        .map(|()| HttpResponse::Ok().json(json!({ "status": "ready" })))
        .map_err(|message| ApiError::new(ErrorCode::Unavailable, message))
}

/// Prometheus metrics: HTTP requests, the queue backlog of every kind, pool usage.
#[utoipa::path(tag = "health", responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)
    ))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = match &state.metrics {
        Some(handle) => {
            orderflow_runtime::metrics::render(handle, &state.pool, None, &state.backlog_gauges)
                .await
        }
        None => String::new(),
    };
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
