//! Builds the HTTP server, so that `main` and the tests start the same application.

use std::net::{SocketAddr, TcpListener};

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName};
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use orderflow::config::ApiConfig;
use orderflow::db::Pool;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ApiDoc, DOCS_PAGE};
use crate::request_context::request_context;
use crate::routes::{admin, health, orders, products};
use crate::state::AppState;

/// Bodies above this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct Application {
    pub server: Server,
    pub addr: SocketAddr,
}

/// Binds `config.addr` (port 0 picks a free port) and builds the server; await
/// `server` to run it.
pub fn build(config: &ApiConfig, pool: Pool) -> std::io::Result<Application> {
    let listener = TcpListener::bind(config.addr)?;
    let addr = listener.local_addr()?;
    let metrics = orderflow::metrics::install()
        .inspect_err(|error| tracing::warn!(%error, "metrics disabled"))
        .ok();
    let state = web::Data::new(AppState {
        pool,
        admin_token: config.admin_token.clone(),
        metrics,
    });
    let cors_origins = config.cors_origins.clone();
    let server = HttpServer::new(move || {
        let (app, openapi) = App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .service(health::healthz)
            .service(health::readyz)
            .service(health::metrics)
            .service(products::list_products)
            .service(products::get_product)
            .service(products::create_product)
            .service(products::update_product)
            .service(orders::create_order)
            .service(orders::list_orders)
            .service(orders::get_order)
            .service(orders::cancel_order)
            .service(admin::queue_overview)
            .service(admin::dead_tasks)
            .service(admin::retry_task)
            .split_for_parts();
        let openapi = web::Data::new(openapi);
        app.app_data(state.clone())
            .app_data(openapi)
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|error, _| ApiError::from(error).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::malformed(format!("invalid query: {error}")).into()
            }))
            .route("/openapi.json", web::get().to(openapi_json))
            .route("/docs", web::get().to(docs))
            .default_service(web::to(unknown_route))
            .wrap(middleware::from_fn(request_context))
            // Outermost: a preflight is answered before anything else runs.
            .wrap(cors(&cors_origins))
    })
    .listen(listener)?
    .shutdown_timeout(10)
    .run();
    Ok(Application { server, addr })
}

/// CORS for a storefront served from another origin. A request from an origin not listed
/// is still served, without CORS headers, so the browser refuses to hand the answer to the
/// page (the standard behaviour); with no origins configured no CORS headers are ever sent.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods(["GET", "POST", "PATCH"])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            HeaderName::from_static("idempotent-replayed"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(3600);
    for origin in origins {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}

/// The OpenAPI document, collected from the handlers registered above.
async fn openapi_json(openapi: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(openapi.get_ref())
}

async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DOCS_PAGE)
}

/// No route matched: a documented path with another method is a 405 naming the methods
/// it has; anything else a 404.
async fn unknown_route(
    req: HttpRequest,
    openapi: web::Data<utoipa::openapi::OpenApi>,
) -> HttpResponse {
    use actix_web::ResponseError;
    let allowed = crate::openapi::allowed_methods(&openapi, req.path());
    if allowed.is_empty() {
        let error = ApiError::new(
            ErrorCode::NotFound,
            format!("no route for {} {}", req.method(), req.path()),
        );
        return error.error_response();
    }
    let error = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} {} is not supported; use {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ),
    );
    let mut response = error.error_response();
    if let Ok(value) = header::HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}
