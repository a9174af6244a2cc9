//! Operator endpoints, behind the admin token: the queue at a glance, dead tasks, retry.

use actix_web::{get, post, web, HttpResponse};
use orderflow_queue::admin;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::{DeadTasks, ErrorResponse, QueueOverview, RetriedTask, RetriedTasks};
#[allow(unused_imports)]
use crate::ops_stats::PipelineStats;
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
    /// Only tasks of this kind.
    kind: Option<String>,
    /// Only tasks whose last error contains this text (case-insensitive).
    error: Option<String>,
}

/// Which dead tasks "retry all" means: those matching the same filter as the list.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadSelection {
    /// Only tasks of this kind.
    kind: Option<String>,
    /// Only tasks whose last error contains this text (case-insensitive).
    error: Option<String>,
}

/// A filter from what an operator typed: blank means no filter.
fn dead_filter(kind: Option<&str>, error: Option<&str>) -> Result<admin::DeadFilter, ApiError> {
    let given = |value: Option<&str>| {
        value
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let filter = admin::DeadFilter {
        kind: given(kind),
        error_contains: given(error),
    };
    if filter.kind.as_ref().is_some_and(|kind| kind.len() > 100)
        || filter
            .error_contains
            .as_ref()
            .is_some_and(|text| text.len() > 200)
    {
        return Err(ApiError::validation(
            "kind is at most 100 characters, error at most 200",
        ));
    }
    Ok(filter)
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), params(DeadParams), responses(
        (status = 200, description = "Dead tasks that match the filter, most recent first, with every attempt's error, and how many match in all", body = DeadTasks),
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
    let filter = dead_filter(params.kind.as_deref(), params.error.as_deref())?;
    let mut conn = state.pool.get().await?;
    let tasks = admin::dead_tasks(&mut conn, &filter, limit).await?;
    let matching = admin::count_dead(&mut conn, &filter).await?;
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks, "matching": matching })))
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), request_body = DeadSelection, responses(
        (status = 200, description = "How many dead tasks were made waiting again", body = RetriedTasks),
        (status = 400, description = "Malformed JSON or a wrong type", body = ErrorResponse),
        (status = 413, description = "Body over 64 KiB", body = ErrorResponse),
        (status = 415, description = "Not application/json", body = ErrorResponse),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 422, description = "The request is well-formed but invalid", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[post("/admin/tasks/dead/retry")]
pub async fn retry_dead_tasks(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    // Every field is optional, so serde would also take an array (a struct's sequence
    // form): only an object is a selection.
    let body = body.into_inner();
    if !body.is_object() {
        return Err(ApiError::malformed("the body must be a JSON object"));
    }
    let selection: DeadSelection = serde_json::from_value(body)
        .map_err(|error| ApiError::malformed(format!("invalid selection: {error}")))?;
    let filter = dead_filter(selection.kind.as_deref(), selection.error.as_deref())?;
    let mut conn = state.pool.get().await?;
    let retried = admin::retry_dead_matching(&mut conn, &filter).await?;
    Ok(HttpResponse::Ok().json(json!({ "retried": retried })))
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), responses(
        (status = 200, description = "Orders per status, each task kind's backlog, orders accepted and finished per second over the last five minutes; built at most once a second", body = PipelineStats),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/admin/stats")]
pub async fn pipeline_stats(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let stats = state.ops_stats.current(&mut conn).await?;
    Ok(HttpResponse::Ok().json(stats))
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
