//! HTTP metrics, labelled by the route's pattern (`/orders/{id}`), never by the raw path,
//! and by a known method or `other`, never the method as sent, so the number of series stays
//! bounded whatever clients send.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;

pub fn record_request<B: MessageBody>(response: &ServiceResponse<B>, elapsed: Duration) {
    let request = response.request();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let method = method_label(request.method()).to_string();
    let status = response.status().as_u16().to_string();
    metrics::counter!(
        "orderflow_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "orderflow_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(elapsed.as_secs_f64());
}

/// The standard methods by name; anything else a client invents is `other`.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, label)| label)
}
