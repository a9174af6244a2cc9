pub mod admin;
pub mod health;
pub mod live;
pub mod order_list;
pub mod orders;
pub mod pages;
pub mod products;

use uuid::Uuid;

use crate::error::ApiError;

/// An id from the path; anything that is not a UUID names nothing, so it is a 404.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}
