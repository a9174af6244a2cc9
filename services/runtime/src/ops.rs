//! A worker's small HTTP listener for operations: `/healthz` (the process is up),
//! `/readyz` (the database answers) and `/metrics` (Prometheus), on `METRICS_ADDR`.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::db::{self, Pool};

struct OpsState {
    pool: Pool,
    kinds: Vec<&'static str>,
    metrics: PrometheusHandle,
    backlog: crate::metrics::BacklogGauges,
}

/// Binds `addr` and returns the server (to be awaited) and the address it listens on.
pub fn serve(
    addr: SocketAddr,
    pool: Pool,
    kinds: Vec<&'static str>,
    metrics: PrometheusHandle,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let state = web::Data::new(OpsState {
        pool,
        kinds,
        metrics,
        backlog: crate::metrics::BacklogGauges::every(crate::metrics::BACKLOG_READ_EVERY),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics_text))
    })
    .workers(1)
    // The worker runtime owns SIGTERM/SIGINT and stops this server itself.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, bound))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<OpsState>) -> HttpResponse {
    match db::database_ready(&state.pool).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(message) => HttpResponse::ServiceUnavailable()
            .json(json!({ "error": { "code": "unavailable", "message": message } })),
    }
}

async fn metrics_text(state: web::Data<OpsState>) -> HttpResponse {
    let body = crate::metrics::render(
        &state.metrics,
        &state.pool,
        Some(&state.kinds),
        &state.backlog,
    )
    .await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
