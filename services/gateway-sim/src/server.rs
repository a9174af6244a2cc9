//! The provider over HTTP (the calls are listed in [`crate::api`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use orderflow::access::{bearer_token, secrets_match};
use orderflow_runtime::config::Secret;
use serde::Deserialize;

use crate::api::{ApiError, CreateCharge, CreateRefund, ErrorBody};
use crate::provider::{Provider, ProviderError};

struct State {
    provider: Arc<Provider>,
    api_key: Option<Secret>,
}

/// Binds `addr` (port 0 picks one) and returns the server, to be awaited, and its address.
pub fn serve(
    addr: SocketAddr,
    provider: Arc<Provider>,
    api_key: Option<Secret>,
) -> std::io::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let state = web::Data::new(State { provider, api_key });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().error_handler(|error, _| {
                let response = error_response(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &error.to_string(),
                );
                actix_web::error::InternalError::from_response(error, response).into()
            }))
            .route("/v1/charges", web::post().to(create_charge))
            .route("/v1/charges", web::get().to(find_charge))
            .route("/v1/refunds", web::post().to(create_refund))
            .route("/v1/audit", web::get().to(audit))
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
    })
    // A provider answers many callers at once, each call mostly waiting out its latency.
    .max_connections(10_000)
    .listen(listener)?
    .shutdown_timeout(5)
    .run();
    Ok((server, bound))
}

fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ApiError {
        error: ErrorBody {
            code: code.into(),
            message: message.into(),
        },
    })
}

fn provider_error(error: ProviderError) -> HttpResponse {
    let (status, code) = match &error {
        ProviderError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ProviderError::AnswerLost => (StatusCode::GATEWAY_TIMEOUT, "answer_lost"),
        ProviderError::UnknownToken(_) | ProviderError::RefundTooLarge { .. } => {
            (StatusCode::BAD_REQUEST, "invalid_request")
        }
        ProviderError::UnknownCharge(_) => (StatusCode::NOT_FOUND, "not_found"),
        ProviderError::KeyReused(_) => (StatusCode::CONFLICT, "idempotency_conflict"),
    };
    error_response(status, code, &error.to_string())
}

/// Why a request is turned away before the provider sees it.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl Refusal {
    fn response(&self) -> HttpResponse {
        error_response(self.status, self.code, self.message)
    }
}

/// The request's API key and idempotency key, or why it is refused.
fn admit(req: &HttpRequest, state: &State, needs_key: bool) -> Result<Option<String>, Refusal> {
    if let Some(expected) = &state.api_key {
        let presented = req
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        if !presented.is_some_and(|key| secrets_match(key, expected.expose())) {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                message: "a missing or wrong API key",
            });
        }
    }
    if !needs_key {
        return Ok(None);
    }
    match req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
    {
        Some(key) if (1..=255).contains(&key.len()) => Ok(Some(key.to_string())),
        _ => Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: "an Idempotency-Key header of 1 to 255 characters is required",
        }),
    }
}

async fn create_charge(
    req: HttpRequest,
    state: web::Data<State>,
    body: web::Json<CreateCharge>,
) -> HttpResponse {
    let key = match admit(&req, &state, true) {
        Ok(Some(key)) => key,
        Ok(None) => return error_response(StatusCode::BAD_REQUEST, "invalid_request", "no key"),
        Err(refusal) => return refusal.response(),
    };
    match state.provider.charge(&key, &body).await {
        Ok(charge) => HttpResponse::Ok().json(charge),
        Err(error) => provider_error(error),
    }
}

#[derive(Deserialize)]
struct ByKey {
    idempotency_key: String,
}

async fn find_charge(
    req: HttpRequest,
    state: web::Data<State>,
    query: web::Query<ByKey>,
) -> HttpResponse {
    if let Err(refusal) = admit(&req, &state, false) {
        return refusal.response();
    }
    match state.provider.find_charge(&query.idempotency_key).await {
        Ok(Some(charge)) => HttpResponse::Ok().json(charge),
        Ok(None) => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "no charge under this key",
        ),
        Err(error) => provider_error(error),
    }
}

async fn create_refund(
    req: HttpRequest,
    state: web::Data<State>,
    body: web::Json<CreateRefund>,
) -> HttpResponse {
    let key = match admit(&req, &state, true) {
        Ok(Some(key)) => key,
        Ok(None) => return error_response(StatusCode::BAD_REQUEST, "invalid_request", "no key"),
        Err(refusal) => return refusal.response(),
    };
    match state.provider.refund(&key, &body).await {
        Ok(refund) => HttpResponse::Ok().json(refund),
        Err(error) => provider_error(error),
    }
}

async fn audit(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Err(refusal) = admit(&req, &state, false) {
        return refusal.response();
    }
    HttpResponse::Ok().json(state.provider.audit())
}
