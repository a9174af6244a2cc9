//! `GET /orders`: every customer's orders, newest first, a page at a time (admin only).

use actix_web::{get, web, HttpResponse};
use orderflow::status::OrderStatus;
use orderflow::views::{self, OrderCursor};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::{ErrorResponse, OrderPage};
use crate::state::{Admin, AppState};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only orders in this status: pending, paid, reserved, fulfilled, cancelled.
    status: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

const DEFAULT_PAGE: i64 = 20;
const MAX_PAGE: i64 = 100;

/// Every customer's orders: for operators only.
#[utoipa::path(tag = "orders", security(("admin_token" = [])), params(ListParams), responses(
        (status = 200, description = "A page of orders, newest first", body = OrderPage),
        (status = 400, description = "Malformed JSON or a wrong type", body = ErrorResponse),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 422, description = "The request is well-formed but invalid", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/orders")]
pub async fn list_orders(
    _admin: Admin,
    state: web::Data<AppState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(OrderStatus::parse(raw).ok_or_else(|| {
            ApiError::validation(format!(
                "status must be one of {}",
                OrderStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::validation(format!("limit must be an integer from 1 to {MAX_PAGE}"))
            })?,
    };
    let cursor = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            OrderCursor::decode(raw)
                .ok_or_else(|| ApiError::validation("cursor is not one this API returned"))?,
        ),
    };
    let mut conn = state.pool.get().await?;
    let (orders, next) =
        views::list_orders(&mut conn, status.map(OrderStatus::as_str), limit, cursor).await?;
    Ok(HttpResponse::Ok().json(json!({
        "orders": orders,
        "next_cursor": next.map(|cursor| cursor.encode()),
    })))
}
