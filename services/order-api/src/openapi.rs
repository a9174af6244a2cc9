//! The OpenAPI 3.1 document. Paths and their schemas are collected from the handlers'
//! `#[utoipa::path]` attributes as they are registered (`startup.rs`), so a route cannot
//! be served undocumented; this module adds the rest: info, tags, the admin security
//! scheme, and the shapes of bodies that handlers build with `json!`.

use orderflow::views::OrderSummary;
use orderflow_queue::admin::{DeadTaskView, KindStateCount};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::ErrorCode;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orderflow",
        description = "Order processing with PostgreSQL as the only queue. Orders are accepted \
                       (202) with their first task in one transaction; workers take them to \
                       `fulfilled` or `cancelled`. Errors are `{\"error\": {\"code\", \"message\", \
                       \"details\"?}}`; every response carries `X-Request-Id`.",
        license(name = "MIT OR Apache-2.0")
    ),
    tags(
        (name = "orders", description = "Place, read, list and cancel orders"),
        (name = "products", description = "The catalog"),
        (name = "admin", description = "Operators: catalog changes and the task queue (bearer token)"),
        (name = "health", description = "Probes and metrics")
    ),
    components(schemas(ErrorResponse, ErrorCode)),
    modifiers(&AdminToken)
)]
pub struct ApiDoc;

/// `Authorization: Bearer $ADMIN_TOKEN` on the admin routes.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The `access_token` of the order's 202.
        components.add_security_scheme(
            "order_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every error: `{"error": {"code", "message", "details"?}}`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "validation_failed", "message": "items: must have 1 to 50 lines", "details": {"fields": {"items": ["must have 1 to 50 lines"]}}}}))]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorObject {
    pub code: ErrorCode,
    pub message: String,
    /// More about the error, e.g. the invalid fields or the unknown product ids.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok` (process up) or `ready` (database reachable).
    pub status: String,
}

/// A page of orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueOverview {
    pub kinds: Vec<KindStateCount>,
}

#[derive(Serialize, ToSchema)]
pub struct DeadTasks {
    pub tasks: Vec<DeadTaskView>,
    /// How many dead tasks match the filter in all (the list stops at `limit`).
    pub matching: i64,
}

/// One server-sent event of `GET /orders/{id}/events`.
#[derive(Serialize, ToSchema)]
pub struct OrderFrame {
    /// Always `order`.
    #[schema(example = "order")]
    pub event: String,
    /// The order, as JSON.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

#[derive(Serialize, ToSchema)]
pub struct RetriedTasks {
    /// How many dead tasks are waiting again.
    pub retried: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RetriedTask {
    pub id: i64,
    /// Always `waiting`: due now, with a fresh set of attempts.
    pub state: String,
}

/// An interactive reference for the API, rendered by Swagger UI (vendored, see
/// `assets/swagger-ui/README.md`) from `/openapi.json`.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <title>Orderflow API</title>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <link rel="stylesheet" href="/docs/swagger-ui.css" />
  </head>
  <body>
    <div id="reference" data-url="/openapi.json"></div>
    <script src="/docs/swagger-ui-bundle.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
"#;

/// Starts Swagger UI on the page's `#reference` element: a file rather than an inline
/// script, so that the page's Content-Security-Policy can forbid inline scripts. The
/// validator badge (which would call validator.swagger.io) is off.
pub const DOCS_INIT_JS: &str = r#"window.addEventListener("DOMContentLoaded", function () {
  var target = document.getElementById("reference");
  window.ui = SwaggerUIBundle({
    url: target.dataset.url,
    domNode: target,
    validatorUrl: null,
    deepLinking: true
  });
});
"#;

/// The methods the document lists for a concrete request path (`/orders/0192...` matches
/// `/orders/{id}`), upper-case; empty when no documented path matches.
pub fn allowed_methods(openapi: &utoipa::openapi::OpenApi, path: &str) -> Vec<String> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let Some((_, item)) = openapi.paths.paths.iter().find(|(template, _)| {
        let pattern: Vec<&str> = template.split('/').collect();
        pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s)
    }) else {
        return Vec::new();
    };
    let operations = [
        ("GET", &item.get),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
    ];
    operations
        .iter()
        .filter(|(_, operation)| operation.is_some())
        .map(|(method, _)| method.to_string())
        .collect()
}
