//! The pages people open: the demo storefront at `/`, an order's page at `/track/{id}`
//! and the live pipeline view at `/ops` (whose data needs the admin token). Static files embedded in the binary; the scripts call the public API
//! like any other client. Nothing loads from another host.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::error::ApiError;

/// Scripts, styles and API calls from this host only; no inline script, no frames.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

macro_rules! site_file {
    ($name:literal) => {
        include_str!(concat!("../../assets/site/", $name))
    };
}

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/", web::get().to(storefront))
        .route("/track/{id}", web::get().to(order_page))
        .route("/ops", web::get().to(ops_page))
        .route("/assets/{file}", web::get().to(asset));
}

async fn storefront() -> HttpResponse {
    page(site_file!("index.html"))
}

/// The id is read by the page's script; any id gets the page, which says so when the
/// order cannot be opened (the page cannot tell a wrong id from a wrong token either).
async fn order_page() -> HttpResponse {
    page(site_file!("order.html"))
}

/// The page itself holds nothing secret: it asks for the admin token and sends it with
/// each request for data.
async fn ops_page() -> HttpResponse {
    page(site_file!("ops.html"))
}

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        // The order page's address carries its token in the fragment; no page sends
        // its address to anyone.
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(html)
}

async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (content_type, body) = match file.as_str() {
        "shop.css" => ("text/css; charset=utf-8", site_file!("shop.css")),
        "common.js" => ("text/javascript; charset=utf-8", site_file!("common.js")),
        "shop.js" => ("text/javascript; charset=utf-8", site_file!("shop.js")),
        "order.js" => ("text/javascript; charset=utf-8", site_file!("order.js")),
        "ops.js" => ("text/javascript; charset=utf-8", site_file!("ops.js")),
        "icon.svg" => ("image/svg+xml", site_file!("icon.svg")),
        _ => return Err(ApiError::not_found("asset")),
    };
    // `no-cache`: the browser revalidates, so a new binary's files are used at once.
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body))
}
