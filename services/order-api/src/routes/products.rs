use actix_web::{get, patch, post, web, HttpResponse};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};
use orderflow::input::Cents;
use orderflow::schema::products;
use orderflow::views::Product;
use serde::Deserialize;
use validator::Validate;

use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::ErrorResponse;
use crate::routes::parse_id;
use crate::state::{Admin, AppState};
use crate::validation::{not_blank, validate};

#[utoipa::path(tag = "products", responses(
        (status = 200, description = "Every product", body = Vec<Product>),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/products")]
pub async fn list_products(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let all: Vec<Product> = products::table
        .order(products::sku)
        .select(Product::as_select())
        .load(&mut conn)
        .await?;
    Ok(HttpResponse::Ok().json(all))
}

#[utoipa::path(tag = "products", params(("id" = String, Path, description = "Product id (UUID)")), responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such resource", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/products/{id}")]
pub async fn get_product(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "product")?;
    let mut conn = state.pool.get().await?;
    let product: Option<Product> = products::table
        .find(id)
        .select(Product::as_select())
        .first(&mut conn)
        .await
        .optional()?;
    product
        .map(|product| HttpResponse::Ok().json(product))
        .ok_or_else(|| ApiError::not_found("product"))
}

fn validate_sku(sku: &str) -> Result<(), validator::ValidationError> {
    if sku
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(validator::ValidationError::new("sku")
            .with_message("letters, digits, - and _ only".into()))
    }
}

fn validate_currency(currency: &str) -> Result<(), validator::ValidationError> {
    if currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(validator::ValidationError::new("currency")
            .with_message("an ISO 4217 code in capitals, e.g. USD".into()))
    }
}

const MAX_PRICE_CENTS: i64 = Cents::MAX;
const MAX_STOCK: i64 = 10_000_000;

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[schema(example = json!({ "sku": "MUG-01", "name": "Enamel mug", "price_cents": 1299, "currency": "USD", "stock": 250 }))]
pub struct CreateProduct {
    #[validate(length(min = 1, max = 64), custom(function = "validate_sku"))]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    sku: String,
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[validate(range(min = 0, max = MAX_PRICE_CENTS))]
    #[schema(minimum = 0, maximum = 10_000_000_000_i64)]
    price_cents: i64,
    /// ISO 4217, default USD.
    #[validate(custom(function = "validate_currency"))]
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: Option<String>,
    #[validate(range(min = 0, max = MAX_STOCK))]
    #[schema(minimum = 0, maximum = 10_000_000)]
    stock: i64,
}

fn duplicate_sku(error: DieselError) -> ApiError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::conflict("a product with this sku already exists")
        }
        other => other.into(),
    }
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), request_body = CreateProduct, responses(
        (status = 201, description = "Created", body = Product, headers(("Location" = String, description = "/products/{id}"))),
        (status = 400, description = "Malformed JSON or a wrong type", body = ErrorResponse),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 409, description = "Conflict with the current state", body = ErrorResponse),
        (status = 413, description = "Body over 64 KiB", body = ErrorResponse),
        (status = 415, description = "Not application/json", body = ErrorResponse),
        (status = 422, description = "The request is well-formed but invalid", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[post("/products")]
pub async fn create_product(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<CreateProduct>,
) -> Result<HttpResponse, ApiError> {
    validate(&*body)?;
    let price = Cents::new(body.price_cents).ok_or_else(|| {
        ApiError::validation(format!("price_cents must be from 0 to {}", Cents::MAX))
    })?;
    let mut conn = state.pool.get().await?;
    let product: Product = diesel::insert_into(products::table)
        .values((
            products::sku.eq(body.sku.trim()),
            products::name.eq(body.name.trim()),
            products::price_cents.eq(price.get()),
            products::currency.eq(body.currency.as_deref().unwrap_or("USD")),
            products::stock.eq(body.stock as i32),
        ))
        .returning(Product::as_returning())
        .get_result(&mut conn)
        .await
        .map_err(duplicate_sku)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/products/{}", product.id)))
        .json(product))
}

/// A change to a product. Stock changes never undo what orders took meanwhile: either a
/// relative `stock_delta` (a delivery of 20: `+20`), applied to the stock as it is when
/// the change commits, or an absolute `stock` with the `expected_stock` it replaces, which
/// fails (409) if reservations moved the stock since the operator looked.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct UpdateProduct {
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[validate(range(min = 0, max = MAX_PRICE_CENTS))]
    #[schema(minimum = 0, maximum = 10_000_000_000_i64)]
    price_cents: Option<i64>,
    /// Added to the stock (negative takes away); the result must stay from 0 to 10,000,000.
    #[validate(range(min = -MAX_STOCK, max = MAX_STOCK))]
    #[schema(minimum = -10_000_000, maximum = 10_000_000)]
    stock_delta: Option<i64>,
    /// The new stock; needs `expected_stock`.
    #[validate(range(min = 0, max = MAX_STOCK))]
    #[schema(minimum = 0, maximum = 10_000_000)]
    stock: Option<i64>,
    /// The stock that `stock` replaces, as the operator last read it.
    #[validate(range(min = 0, max = MAX_STOCK))]
    #[schema(minimum = 0, maximum = 10_000_000)]
    expected_stock: Option<i64>,
}

/// What a PATCH does to the stock.
#[derive(Debug, Clone, Copy)]
enum StockChange {
    By(i32),
    Replace { expected: i32, new: i32 },
}

impl UpdateProduct {
    fn stock_change(&self) -> Result<Option<StockChange>, ApiError> {
        match (self.stock_delta, self.stock, self.expected_stock) {
            (None, None, None) => Ok(None),
            (Some(delta), None, None) => Ok(Some(StockChange::By(delta as i32))),
            (None, Some(new), Some(expected)) => Ok(Some(StockChange::Replace {
                expected: expected as i32,
                new: new as i32,
            })),
            (None, Some(_), None) => Err(ApiError::validation(
                "stock needs expected_stock (the stock it replaces), so that it cannot undo \
                 reservations made meanwhile; or give stock_delta",
            )),
            (None, None, Some(_)) => Err(ApiError::validation("expected_stock needs stock")),
            (Some(_), _, _) => Err(ApiError::validation(
                "give stock_delta, or stock with expected_stock, not both",
            )),
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = products)]
struct ProductChanges {
    name: Option<String>,
    price_cents: Option<i64>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

#[utoipa::path(tag = "admin", security(("admin_token" = [])), params(("id" = String, Path, description = "Product id (UUID)")), request_body = UpdateProduct, responses(
        (status = 200, description = "The changed product", body = Product),
        (status = 400, description = "Malformed JSON or a wrong type", body = ErrorResponse),
        (status = 401, description = "Missing or wrong admin token", body = ErrorResponse),
        (status = 403, description = "The admin API is disabled (no ADMIN_TOKEN)", body = ErrorResponse),
        (status = 404, description = "No such resource", body = ErrorResponse),
        (status = 409, description = "The stock is not `expected_stock` any more, or the delta would take it out of range; `details.stock` is the current stock", body = ErrorResponse),
        (status = 413, description = "Body over 64 KiB", body = ErrorResponse),
        (status = 415, description = "Not application/json", body = ErrorResponse),
        (status = 422, description = "The request is well-formed but invalid", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[patch("/products/{id}")]
pub async fn update_product(
    _admin: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<UpdateProduct>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "product")?;
    validate(&*body)?;
    let body = body.into_inner();
    let stock = body.stock_change()?;
    if body.name.is_none() && body.price_cents.is_none() && stock.is_none() {
        return Err(ApiError::validation(
            "nothing to change: give name, price_cents, stock_delta or stock with expected_stock",
        ));
    }
    let changes = ProductChanges {
        name: body.name.map(|name| name.trim().to_string()),
        price_cents: body.price_cents,
        updated_at: chrono::Utc::now(),
    };
    let mut conn = state.pool.get().await?;
    let updated = conn
        .transaction(async |conn| apply_changes(conn, id, &changes, stock).await)
        .await;
    match updated {
        Ok(product) => Ok(HttpResponse::Ok().json(product)),
        Err(PatchError::Database(error)) => Err(error.into()),
        Err(PatchError::NotFound) => Err(ApiError::not_found("product")),
        Err(PatchError::StockConflict(current)) => Err(ApiError::conflict(match stock {
            Some(StockChange::Replace { expected, .. }) => format!(
                "the stock is {current}, not the expected {expected}: orders moved it; read it again"
            ),
            _ => format!("the stock is {current}: this change would take it below 0 or above {MAX_STOCK}"),
        })
        .with_details(serde_json::json!({ "stock": current }))),
    }
}

/// Why a PATCH wrote nothing.
#[derive(Debug)]
enum PatchError {
    NotFound,
    /// The stock change does not apply to the current stock (given).
    StockConflict(i32),
    Database(DieselError),
}

impl From<DieselError> for PatchError {
    fn from(error: DieselError) -> Self {
        Self::Database(error)
    }
}

/// The product after the changes, in the caller's transaction; an error rolls them back.
async fn apply_changes(
    conn: &mut diesel_async::AsyncPgConnection,
    id: uuid::Uuid,
    changes: &ProductChanges,
    stock: Option<StockChange>,
) -> Result<Product, PatchError> {
    // The row lock of the first UPDATE orders this change with reservations.
    let product: Option<Product> = diesel::update(products::table.find(id))
        .set(changes)
        .returning(Product::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    let product = product.ok_or(PatchError::NotFound)?;
    let new_stock = match stock {
        None => return Ok(product),
        Some(StockChange::By(delta)) => i64::from(product.stock) + i64::from(delta),
        Some(StockChange::Replace { expected, new }) if expected == product.stock => i64::from(new),
        Some(StockChange::Replace { .. }) => return Err(PatchError::StockConflict(product.stock)),
    };
    if !(0..=MAX_STOCK).contains(&new_stock) {
        return Err(PatchError::StockConflict(product.stock));
    }
    Ok(diesel::update(products::table.find(id))
        .set(products::stock.eq(new_stock as i32))
        .returning(Product::as_returning())
        .get_result(conn)
        .await?)
}
