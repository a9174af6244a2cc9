use actix_web::{get, patch, post, web, HttpResponse};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;
use orderflow::schema::products;
use orderflow::views::Product;
use serde::Deserialize;
use validator::Validate;

use crate::error::ApiError;
use crate::routes::parse_id;
use crate::state::{Admin, AppState};
use crate::validation::{not_blank, validate};

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

const MAX_PRICE_CENTS: i64 = 10_000_000_000;
const MAX_STOCK: i64 = 10_000_000;

#[derive(Debug, Deserialize, Validate)]
pub struct CreateProduct {
    #[validate(length(min = 1, max = 64), custom(function = "validate_sku"))]
    sku: String,
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    name: String,
    #[validate(range(min = 0, max = MAX_PRICE_CENTS))]
    price_cents: i64,
    #[validate(custom(function = "validate_currency"))]
    currency: Option<String>,
    #[validate(range(min = 0, max = MAX_STOCK))]
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

#[post("/products")]
pub async fn create_product(
    _admin: Admin,
    state: web::Data<AppState>,
    body: web::Json<CreateProduct>,
) -> Result<HttpResponse, ApiError> {
    validate(&*body)?;
    let mut conn = state.pool.get().await?;
    let product: Product = diesel::insert_into(products::table)
        .values((
            products::sku.eq(body.sku.trim()),
            products::name.eq(body.name.trim()),
            products::price_cents.eq(body.price_cents),
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

#[derive(Debug, Deserialize, Validate)]
pub struct UpdateProduct {
    #[validate(length(min = 1, max = 200), custom(function = "not_blank"))]
    name: Option<String>,
    #[validate(range(min = 0, max = MAX_PRICE_CENTS))]
    price_cents: Option<i64>,
    #[validate(range(min = 0, max = MAX_STOCK))]
    stock: Option<i64>,
}

#[derive(AsChangeset)]
#[diesel(table_name = products)]
struct ProductChanges {
    name: Option<String>,
    price_cents: Option<i64>,
    stock: Option<i32>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

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
    if body.name.is_none() && body.price_cents.is_none() && body.stock.is_none() {
        return Err(ApiError::validation(
            "nothing to change: give name, price_cents or stock",
        ));
    }
    let changes = ProductChanges {
        name: body.name.map(|name| name.trim().to_string()),
        price_cents: body.price_cents,
        stock: body.stock.map(|stock| stock as i32),
        updated_at: chrono::Utc::now(),
    };
    let mut conn = state.pool.get().await?;
    let product: Option<Product> = diesel::update(products::table.find(id))
        .set(&changes)
        .returning(Product::as_returning())
        .get_result(&mut conn)
        .await
        .optional()?;
    product
        .map(|product| HttpResponse::Ok().json(product))
        .ok_or_else(|| ApiError::not_found("product"))
}
