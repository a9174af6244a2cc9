//! The payment provider over HTTP: the gateway a real deployment uses, here pointed at
//! `gateway-sim` (its API: `gateway_sim::api`).
//!
//! - Connections are pooled and kept alive (one client per process); every call has a
//!   connect timeout and a whole-request timeout.
//! - Every charge and refund carries its idempotency key in the `Idempotency-Key` header,
//!   so a retry after a timeout is the same request, not a second charge.
//! - Errors are classed for the queue: no connection, a timeout and any 5xx are transient
//!   (retried with backoff, with the same key); any other 4xx is permanent (the request
//!   itself is wrong; retrying cannot help). A 404 on a lookup means "no such charge".

use async_trait::async_trait;
use gateway_sim::api::{Charge, CreateCharge, CreateRefund, Refund};
use orderflow::payment::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest,
};
use orderflow_runtime::config::{PaymentConfig, Secret};
use reqwest::StatusCode;

pub struct HttpGateway {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
}

impl HttpGateway {
    /// A client for the provider at `base_url`; fails only if the HTTP client cannot be
    /// built (no TLS roots, say).
    pub fn new(base_url: &str, config: &PaymentConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: config.gateway_api_key.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }
}

/// Sends a request and reads a JSON answer; `Ok(None)` for a 404.
async fn send<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<Option<T>, GatewayError> {
    let response = request.send().await.map_err(|error| {
        // Not connected, reset, or timed out: the provider may or may not have acted.
        GatewayError::Transient(format!("no answer from the provider: {error}"))
    })?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status.is_success() {
        return response.json::<T>().await.map(Some).map_err(|error| {
            GatewayError::Transient(format!("an unreadable answer from the provider: {error}"))
        });
    }
    let body = response.text().await.unwrap_or_default();
    let message = format!(
        "the provider answered {status}: {}",
        body.chars().take(300).collect::<String>()
    );
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(GatewayError::Transient(message))
    } else {
        Err(GatewayError::Rejected(message))
    }
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let body = CreateCharge {
            amount: request.amount_cents,
            currency: request.currency.clone(),
            source: request.token.clone(),
        };
        let charge: Option<Charge> = send(
            self.request(reqwest::Method::POST, "/v1/charges")
                .header("Idempotency-Key", &request.idempotency_key)
                .json(&body),
        )
        .await?;
        charge
            .map(gateway_sim::outcome)
            .ok_or_else(|| GatewayError::Rejected("the provider has no charges endpoint".into()))
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let body = CreateRefund {
            charge: request.charge_id.clone(),
            amount: request.amount_cents,
        };
        let refund: Option<Refund> = send(
            self.request(reqwest::Method::POST, "/v1/refunds")
                .header("Idempotency-Key", &request.idempotency_key)
                .json(&body),
        )
        .await?;
        refund.map(|refund| refund.id).ok_or_else(|| {
            GatewayError::Rejected(format!(
                "the provider knows no charge {}",
                request.charge_id
            ))
        })
    }

    async fn find_charge(&self, key: &str) -> Result<Option<ChargeOutcome>, GatewayError> {
        let charge: Option<Charge> = send(
            self.request(reqwest::Method::GET, "/v1/charges")
                .query(&[("idempotency_key", key)]),
        )
        .await?;
        Ok(charge.map(gateway_sim::outcome))
    }
}
