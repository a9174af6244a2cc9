//! Operator endpoints, behind the admin token: the queue at a glance, dead tasks, retry.

use actix_web::{get, post, web, HttpResponse};
use orderflow_queue::admin;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::{DeadTasks, ErrorResponse, QueueOverview, RetriedTask};
use crate::state::{Admin, AppState};

#[utoipa::path(tag = "admin", security(("admin_token" = [])), responses(
        (status = 200, description = "Task counts by kind and state", body = QueueOverview),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/admin/queue")]
pub async fn queue_overview(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let rows = admin::overview(&mut conn).await?;
    Ok(HttpResponse::Ok().json(json!({ "kinds": rows })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadParams {
    /// 1 to 500, default 50.
    limit: Option<i64>,
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), params(DeadParams), responses(
        (status = 200, description = "Dead tasks, most recent first, with every attempt's error", body = DeadTasks),
        (status = 400, description = "Malformed JSON or a wrong type", body = ErrorResponse),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 422, description = "The request is well-formed but invalid", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/admin/tasks/dead")]
pub async fn dead_tasks(
    _admin: Admin,
    state: web::Data<AppState>,
    params: web::Query<DeadParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::validation("limit must be from 1 to 500"));
    }
    let mut conn = state.pool.get().await?;
    let tasks = admin::dead_tasks(&mut conn, limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks })))
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), params(("id" = String, Path, description = "Task id")), responses(
        (status = 202, description = "Waiting again with a fresh set of attempts", body = RetriedTask),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 404, description = "No such resource", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[post("/admin/tasks/{id}/retry")]
pub async fn retry_task(
    _admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("task"))?;
    let mut conn = state.pool.get().await?;
    if admin::retry_dead(&mut conn, id).await? {
        Ok(HttpResponse::Accepted().json(json!({ "id": id, "state": "waiting" })))
    } else {
        Err(ApiError::not_found("dead task"))
    }
}
