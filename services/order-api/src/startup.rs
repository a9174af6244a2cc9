//! Builds the HTTP server, so that `main` and the tests start the same application.

use std::net::{SocketAddr, TcpListener};

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header::{self, HeaderName};
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use orderflow_runtime::config::{ApiConfig, DatabaseConfig};
use orderflow_runtime::db::{Pool, SessionLimits};
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::body_deadline::{body_deadline, BodyTimeout};
use crate::error::{ApiError, ErrorCode};
use crate::openapi::{ApiDoc, DOCS_INIT_JS, DOCS_PAGE};
use crate::placements::Placements;
use crate::request_context::request_context;
use crate::routes::{admin, health, live, order_list, orders, pages, products};
use crate::state::AppState;

/// Bodies above this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every response says unless it says otherwise: nothing here may be framed, and a
/// response loads nothing (the documentation page sets a policy of its own).
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The documentation page's policy: its scripts, styles and the document from this host
/// only. Swagger UI sets element styles, hence `'unsafe-inline'` for styles (not scripts).
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub struct Application {
    pub server: Server,
    pub addr: SocketAddr,
}

/// The API's pool: every session bounds its statements and lock waits, so a request ends
/// with a 503 when the database stalls instead of hanging.
pub fn api_pool(database: &DatabaseConfig, api: &ApiConfig) -> Pool {
    orderflow_runtime::db::pool_with_limits(
        database,
        database.pool_size_or(orderflow_runtime::db::DEFAULT_POOL_SIZE),
        Some(SessionLimits {
            statement_timeout: api.statement_timeout,
            lock_timeout: api.lock_timeout,
        }),
    )
}

/// Binds `config.addr` (port 0 picks a free port) and builds the server; await
/// `server` to run it.
pub fn build(config: &ApiConfig, pool: Pool) -> std::io::Result<Application> {
    let listener = TcpListener::bind(config.addr)?;
    let addr = listener.local_addr()?;
    let metrics = orderflow_runtime::metrics::install()
        .inspect_err(|error| tracing::warn!(%error, "metrics disabled"))
        .ok();
    let admission = crate::admission::Admission::new(
        config.admission_max_queue_wait,
        config.max_orders_in_flight,
    );
    admission.watch(
        pool.clone(),
        orderflow::tasks::TaskKind::ALL
            .iter()
            .map(|kind| kind.as_str())
            .collect(),
        config.admission_every,
    );
    let order_feed = crate::order_feed::OrderFeed::default();
    order_feed.start(pool.clone());
    let state = web::Data::new(AppState {
        order_feed,
        ops_stats: crate::ops_stats::OpsStats::default(),
        admission,
        pool,
        admin_token: config.admin_token.clone(),
        metrics,
        backlog_gauges: orderflow_runtime::metrics::BacklogGauges::every(config.queue_gauges_every),
        order_limiter: crate::rate_limit::RateLimiter::per_minute(config.order_rate_limit),
        trusted_proxies: config.trusted_proxies.clone(),
    });
    let body_timeout = web::Data::new(BodyTimeout(config.body_timeout));
    let workers = config.workers.max(1);
    // actix counts connections per worker thread.
    let connections_per_worker = config.max_connections.div_ceil(workers).max(1);
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
            .service(order_list::list_orders)
            .service(orders::get_order)
            .service(orders::cancel_order)
            .service(live::order_events)
            .service(admin::queue_overview)
            .service(admin::dead_tasks)
            // Before `/admin/tasks/{id}/retry`, which would take `dead` for an id.
            .service(admin::retry_dead_tasks)
            .service(admin::retry_task)
            .service(admin::pipeline_stats)
            .split_for_parts();
        let openapi = web::Data::new(openapi);
        // Built once per worker thread, on its runtime: each thread places its own orders.
        let placements = web::Data::new(Placements::start(state.pool.clone()));
        app.app_data(state.clone())
            .app_data(placements)
            .app_data(body_timeout.clone())
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
            .route("/docs/init.js", web::get().to(docs_init))
            .route("/docs/swagger-ui-bundle.js", web::get().to(docs_bundle))
            .route("/docs/swagger-ui.css", web::get().to(docs_css))
            .configure(pages::configure)
            .default_service(web::to(unknown_route))
            .wrap(middleware::from_fn(body_deadline))
            .wrap(
                middleware::DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, DEFAULT_CSP))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            )
            .wrap(middleware::from_fn(request_context))
            // Outermost: a preflight is answered before anything else runs.
            .wrap(cors(&cors_origins))
    })
    .workers(workers)
    .max_connections(connections_per_worker)
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
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .body(DOCS_PAGE)
}

async fn docs_init() -> HttpResponse {
    asset("text/javascript; charset=utf-8", DOCS_INIT_JS.as_bytes())
}

async fn docs_bundle() -> HttpResponse {
    asset(
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
    )
}

async fn docs_css() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-ui.css"),
    )
}

/// An embedded file; it changes only with the binary, so a browser may keep it a day.
fn asset(content_type: &'static str, body: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body)
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
