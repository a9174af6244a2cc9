//! Builds the HTTP server, so that `main` and the tests start the same application.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use orderflow::config::ApiConfig;
use orderflow::db::Pool;

use crate::error::{ApiError, ErrorCode};
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
    let state = web::Data::new(AppState {
        pool,
        admin_token: config.admin_token.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(|error, _| ApiError::from(error).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::malformed(format!("invalid query: {error}")).into()
            }))
            .wrap(tracing_actix())
            .service(health::healthz)
            .service(health::readyz)
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
            .default_service(web::to(unknown_route))
    })
    .listen(listener)?
    .shutdown_timeout(10)
    .run();
    Ok(Application { server, addr })
}

fn tracing_actix() -> actix_web::middleware::Logger {
    actix_web::middleware::Logger::new("%r %s %b %Dms").log_target("http")
}

async fn unknown_route(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let error = ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    );
    error.error_response()
}
