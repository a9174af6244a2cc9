//! Operator endpoints, behind the admin token: the queue at a glance, dead tasks, retry.

use actix_web::{get, post, web, HttpResponse};
use orderflow_queue::admin;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::state::{Admin, AppState};

#[get("/admin/queue")]
pub async fn queue_overview(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let rows = admin::overview(&mut conn).await?;
    Ok(HttpResponse::Ok().json(json!({ "kinds": rows })))
}

#[derive(Debug, Deserialize)]
pub struct DeadParams {
    limit: Option<i64>,
}

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
