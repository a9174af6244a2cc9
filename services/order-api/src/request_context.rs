//! Every request runs in a span that carries its request id: taken from `X-Request-Id`
//! when the client sent a usable one, otherwise made here. The id is returned in the
//! response and becomes the correlation id of every task the request enqueues, so the
//! workers' log lines for the order carry it too.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's id is kept when it is short and plain; anything else is replaced, not
/// rejected (it is a diagnostic aid, not input).
fn usable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| usable(id))
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_string);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let result = orderflow_queue::with_correlation_id(Some(request_id.clone()), next.call(req))
        .instrument(span.clone())
        .await;
    let mut response = result?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    // A created resource (a new order) is named in the access line too.
    let location = response
        .headers()
        .get(actix_web::http::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    span.in_scope(|| {
        tracing::info!(
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            location,
            "request handled"
        )
    });
    crate::metrics::record_request(&response, elapsed);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}
