use actix_web::{get, post, web, HttpRequest, HttpResponse};
use diesel_async::AsyncConnection;
use orderflow::email::CustomerEmail;
use orderflow::input::Quantity;
use orderflow::lifecycle::{
    cancel_by_customer, Cancellation, NewOrder, NewOrderLine, PlaceError, Placed,
};
use orderflow::payment;
use orderflow::views;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use validator::Validate;

use crate::error::{ApiError, ErrorCode};
#[allow(unused_imports)]
use crate::openapi::ErrorResponse;
use crate::placements::Placements;
use crate::routes::parse_id;
use crate::state::AppState;
use crate::state::OrderCredentials;
use crate::validation::{deliverable_email, not_blank, storable, validate};
#[allow(unused_imports)]
use orderflow::views::Order;

#[derive(Debug, Serialize, Deserialize, Validate, utoipa::ToSchema)]
#[schema(example = json!({
    "customer": { "email": "ada@example.com", "name": "Ada Lovelace" },
    "items": [{ "product_id": "01a20c3a-0c1e-7d2b-9d55-5b4f3f1c2a10", "quantity": 2 }],
    "payment": { "token": "tok_visa" },
    "shipping_address": { "line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "GB" }
}))]
pub struct PlaceOrderRequest {
    #[validate(nested)]
    customer: CustomerRequest,
    #[validate(length(min = 1, max = 50), nested)]
    #[schema(min_items = 1, max_items = 50)]
    items: Vec<ItemRequest>,
    #[validate(nested)]
    payment: PaymentRequest,
    #[validate(nested)]
    shipping_address: Option<AddressRequest>,
}

#[derive(Debug, Serialize, Deserialize, Validate, utoipa::ToSchema)]
struct CustomerRequest {
    /// An address the mailer can send to (`orderflow::email::CustomerEmail`): a mail
    /// domain, not an IP address.
    #[validate(custom(function = "deliverable_email"))]
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

#[derive(Debug, Serialize, Deserialize, Validate, utoipa::ToSchema)]
struct ItemRequest {
    /// Kept as text so that a malformed id is reported as an unknown product (422).
    #[schema(format = Uuid)]
    product_id: String,
    #[validate(range(min = 1, max = 100))]
    #[schema(minimum = 1, maximum = 100)]
    quantity: i64,
}

#[derive(Debug, Serialize, Deserialize, Validate, utoipa::ToSchema)]
struct PaymentRequest {
    /// `tok_visa` (approved) or `tok_chargeDeclined` (declined).
    #[validate(length(min = 1, max = 200), custom(function = "storable"))]
    #[schema(example = "tok_visa")]
    token: String,
}

#[derive(Debug, Serialize, Deserialize, Validate, utoipa::ToSchema)]
struct AddressRequest {
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    line1: String,
    #[validate(length(max = 200), custom(function = "storable"))]
    line2: Option<String>,
    #[validate(length(min = 1, max = 100), custom(function = "not_blank"))]
    city: String,
    #[validate(length(min = 1, max = 20), custom(function = "not_blank"))]
    postal_code: String,
    #[validate(length(equal = 2), custom(function = "not_blank"))]
    country: String,
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

impl PlaceOrderRequest {
    /// Checks what validator's attributes cannot express, and yields the domain's order.
    fn into_new_order(self, idempotency_key: Option<String>) -> Result<NewOrder, ApiError> {
        validate(&self)?;
        if !payment::is_known_token(&self.payment.token) {
            return Err(ApiError::new(
                ErrorCode::UnknownPaymentToken,
                format!("unknown payment token {:?}", self.payment.token),
            ));
        }
        let mut lines = Vec::with_capacity(self.items.len());
        for (index, item) in self.items.iter().enumerate() {
            let product_id = Uuid::parse_str(&item.product_id).map_err(|_| {
                ApiError::new(
                    ErrorCode::UnknownProduct,
                    format!("unknown product {:?}", item.product_id),
                )
                .with_details(json!({ "product_ids": [item.product_id] }))
            })?;
            if lines
                .iter()
                .any(|line: &NewOrderLine| line.product_id == product_id)
            {
                return Err(ApiError::validation(format!(
                    "items[{index}]: product {product_id} appears more than once; combine the quantities"
                )));
            }
            let quantity = Quantity::new(item.quantity).ok_or_else(|| {
                ApiError::validation(format!(
                    "items[{index}].quantity must be from {} to {}",
                    Quantity::MIN,
                    Quantity::MAX
                ))
            })?;
            lines.push(NewOrderLine {
                product_id,
                quantity,
            });
        }
        // The fingerprint covers the parsed request, so formatting differences do not
        // count as a different body.
        let idempotency = idempotency_key.map(|key| {
            let canonical = serde_json::to_vec(&self).unwrap_or_default();
            (key, hex::encode(Sha256::digest(canonical)))
        });
        let customer_email = CustomerEmail::parse(&self.customer.email)
            .map_err(|error| ApiError::validation(format!("customer.email {error}")))?;
        Ok(NewOrder {
            customer_email,
            customer_name: self.customer.name.trim().to_string(),
            shipping_address: self
                .shipping_address
                .as_ref()
                .and_then(|address| serde_json::to_value(address).ok()),
            payment_token: self.payment.token,
            lines,
            idempotency,
            // The request's id: the order may be placed by a task other than this request's.
            correlation_id: orderflow_queue::current_correlation_id(),
        })
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) => Ok(Some(key.to_string())),
        _ => Err(ApiError::validation(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

impl From<PlaceError> for ApiError {
    fn from(error: PlaceError) -> Self {
        match error {
            PlaceError::UnknownProducts(ids) => ApiError::new(
                ErrorCode::UnknownProduct,
                format!(
                    "unknown product(s): {}",
                    ids.iter()
                        .map(Uuid::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_details(json!({ "product_ids": ids })),
            PlaceError::MixedCurrencies => {
                ApiError::validation("all products of an order must be priced in one currency")
            }
            PlaceError::IdempotencyKeyReused => ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request body",
            ),
            PlaceError::OutOfTime => ApiError::unavailable("a placement group ran out of time"),
            PlaceError::Database(error) => error.into(),
        }
    }
}

#[utoipa::path(tag = "orders", request_body = PlaceOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1–255 characters. The same key with the same body returns the same order (also concurrently); with another body, 422.")),
    responses(
        (status = 202, description = "Accepted: the order is pending and its payment task is queued. The body carries the order's `access_token`, which `GET /orders/{id}` and its cancel need.", body = Order,
         headers(("Location" = String, description = "/orders/{id}"), ("Idempotent-Replayed" = String, description = "`true` when this answers a replay of the key"))),
        (status = 400, description = "Malformed JSON or a wrong type", body = ErrorResponse),
        (status = 408, description = "The body did not arrive in time", body = ErrorResponse),
        (status = 413, description = "Body over 64 KiB", body = ErrorResponse),
        (status = 415, description = "Not application/json", body = ErrorResponse),
        (status = 422, description = "The request is well-formed but invalid", body = ErrorResponse),
        (status = 429, description = "Too many orders from this client (`ORDER_RATE_LIMIT`); see `Retry-After`", body = ErrorResponse,
         headers(("Retry-After" = String, description = "Seconds to wait"))),
        (status = 503, description = "`overloaded`: the pipeline is behind, the order was not taken (see `Retry-After`); or `unavailable`: the database is", body = ErrorResponse,
         headers(("Retry-After" = String, description = "Seconds to wait (when overloaded)")))
    ))]
#[post("/orders")]
#[tracing::instrument(name = "place_order", skip_all, fields(order_id))]
pub async fn create_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    placements: web::Data<Placements>,
    body: web::Json<PlaceOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    admit_client(&req, &state)?;
    let order = body.into_inner().into_new_order(idempotency_key(&req)?)?;
    let _placing = state.admission.admit().map_err(shed)?;
    let placed = placements.place(order).await?;
    let order_id = placed.order_id();
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    let mut response = HttpResponse::Accepted();
    response.insert_header(("Location", format!("/orders/{order_id}")));
    let view = match placed {
        Placed::Created(view) => {
            tracing::info!(total_cents = view.total_cents, "order placed");
            *view
        }
        Placed::Replayed { access_token, .. } => {
            response.insert_header(("Idempotent-Replayed", "true"));
            let mut conn = state.pool.get().await?;
            let order = views::load_order(&mut conn, order_id)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(format!("order {order_id} vanished after commit"))
                })?;
            views::Order {
                access_token: Some(access_token),
                ..order
            }
        }
    };
    Ok(response.json(view))
}

/// A new order turned away because the pipeline is behind: 503 `overloaded`, try again
/// in a second.
fn shed(reason: crate::admission::Shed) -> ApiError {
    use crate::admission::Shed;
    let (label, message) = match reason {
        Shed::Backlog(lag) => (
            "backlog",
            format!(
                "the pipeline is {} ms behind; try again shortly",
                lag.as_millis()
            ),
        ),
        Shed::InFlight => (
            "in_flight",
            "too many orders are being placed at once; try again shortly".to_string(),
        ),
    };
    metrics::counter!("orderflow_orders_shed_total", "reason" => label).increment(1);
    ApiError::new(ErrorCode::Overloaded, message).retry_after(std::time::Duration::from_secs(1))
}

/// Counts an order against its client's limit (`ORDER_RATE_LIMIT`): 429 with
/// `Retry-After` past it, before anything is read or written.
fn admit_client(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(limiter) = &state.order_limiter else {
        return Ok(());
    };
    let Some(client) = crate::rate_limit::client_address(req, &state.trusted_proxies) else {
        return Ok(());
    };
    limiter
        .check(client, std::time::Instant::now())
        .map_err(|wait| {
            ApiError::new(
                ErrorCode::RateLimited,
                "too many orders from this client; try again later",
            )
            .retry_after(wait)
        })
}

#[utoipa::path(tag = "orders", security(("order_token" = []), ("admin_token" = [])),
    params(("id" = String, Path, description = "Order id (UUID)"),
           ("token" = Option<String>, Query, description = "The order's access token, for a link (an e-mail's); `Authorization: Bearer` is the usual way")),
    responses(
        (status = 200, description = "The order with its items, payment and timeline", body = Order),
        (status = 404, description = "No such order, or not the order's (nor the admin) token: the two are not told apart", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/orders/{id}")]
pub async fn get_order(
    state: web::Data<AppState>,
    id: web::Path<String>,
    credentials: OrderCredentials,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "order")?;
    let mut conn = state.pool.get().await?;
    views::load_order_with_token(&mut conn, id)
        .await?
        .filter(|stored| credentials.open(&stored.access_token))
        .map(|stored| HttpResponse::Ok().json(stored.order))
        .ok_or_else(|| ApiError::not_found("order"))
}

/// Cancels a `pending` or `paid` order (a paid one is refunded); 409 once it is reserved
/// or terminal. Answers with the cancelled order.
#[utoipa::path(tag = "orders", security(("order_token" = []), ("admin_token" = [])),
    params(("id" = String, Path, description = "Order id (UUID)"),
           ("token" = Option<String>, Query, description = "The order's access token, as for `GET /orders/{id}`")),
    responses(
        (status = 200, description = "Cancelled (a paid order is being refunded)", body = Order),
        (status = 404, description = "No such order, or not the order's (nor the admin) token", body = ErrorResponse),
        (status = 409, description = "Reserved or terminal: too late to cancel; `details.status` says why", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[post("/orders/{id}/cancel")]
#[tracing::instrument(name = "cancel_order", skip_all, fields(order_id = %id))]
pub async fn cancel_order(
    state: web::Data<AppState>,
    id: web::Path<String>,
    credentials: OrderCredentials,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "order")?;
    let mut conn = state.pool.get().await?;
    // Without the order's token (or the admin's) the order does not exist, as for a read.
    let token = views::access_token(&mut conn, id).await?;
    if !token.is_some_and(|token| credentials.open(&token)) {
        return Err(ApiError::not_found("order"));
    }
    let cancellation = conn
        .transaction(async |conn| cancel_by_customer(conn, id).await)
        .await?;
    match cancellation {
        Cancellation::NotFound => return Err(ApiError::not_found("order")),
        Cancellation::TooLate { status } => {
            return Err(ApiError::conflict(format!(
                "an order that is {status} can no longer be cancelled"
            ))
            .with_details(json!({ "status": status })));
        }
        Cancellation::Cancelled { refunding } => {
            tracing::info!(refunding, "order cancelled by the customer");
        }
    }
    views::load_order(&mut conn, id)
        .await?
        .map(|order| HttpResponse::Ok().json(order))
        .ok_or_else(|| ApiError::internal(format!("order {id} vanished after commit")))
}
