//! Every bad input of the spec gets its 4xx with a JSON error body and writes nothing.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use orderflow::schema::{order_events, orders, products};
use orderflow_queue::admin;
use orderflow_tests::app::{order_body, ADMIN_TOKEN};
use orderflow_tests::{TestApp, TestDb};
use serde_json::{json, Value};

/// Rows in every table a request could write to.
async fn footprint(db: &TestDb) -> (i64, i64, i64, i64) {
    let mut conn = db.connect().await;
    let orders: i64 = orders::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    let events: i64 = order_events::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    let products: i64 = products::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    let tasks: i64 = admin::overview(&mut conn)
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.count)
        .sum();
    (orders, events, products, tasks)
}

async fn expect_error(response: reqwest::Response, status: u16, code: &str, case: &str) {
    assert_eq!(response.status().as_u16(), status, "{case}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{case}: content type {content_type}"
    );
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{case}: a message is given"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_orders_are_refused_and_write_nothing() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let euro_mug = app
        .client
        .post(app.url("/products"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "sku": "MUG-EU", "name": "Mug (EUR)", "price_cents": 900, "currency": "EUR", "stock": 10 }))
        .send()
        .await
        .expect("the API answers")
        .json::<Value>()
        .await
        .expect("a JSON body")["id"]
        .clone();
    let before = footprint(&db).await;

    let valid = order_body("tok_visa", &[(&mug, 1)]);
    let unknown = uuid::Uuid::new_v4();
    let with = |pointer: &str, value: Value| {
        let mut body = valid.clone();
        match body.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => panic!("no {pointer} in the order body"),
        }
        body
    };
    let with_address = |address: Value| {
        let mut body = valid.clone();
        body["shipping_address"] = address;
        body
    };
    let many_lines: Vec<Value> = (0..51)
        .map(|_| json!({ "product_id": mug, "quantity": 1 }))
        .collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "quantity of the wrong type",
            with("/items/0/quantity", json!("two")),
            400,
            "malformed_request",
        ),
        (
            "customer missing",
            json!({ "items": valid["items"], "payment": valid["payment"] }),
            400,
            "malformed_request",
        ),
        (
            "items not a list",
            with("/items", json!("mug")),
            400,
            "malformed_request",
        ),
        (
            "no items",
            with("/items", json!([])),
            422,
            "validation_failed",
        ),
        (
            "quantity 0",
            with("/items/0/quantity", json!(0)),
            422,
            "validation_failed",
        ),
        (
            "quantity 101",
            with("/items/0/quantity", json!(101)),
            422,
            "validation_failed",
        ),
        (
            "negative quantity",
            with("/items/0/quantity", json!(-3)),
            422,
            "validation_failed",
        ),
        (
            "51 lines",
            with("/items", json!(many_lines)),
            422,
            "validation_failed",
        ),
        (
            "unknown product",
            with("/items/0/product_id", json!(uuid::Uuid::new_v4())),
            422,
            "unknown_product",
        ),
        (
            "an unknown product among known ones",
            with(
                "/items",
                json!([{ "product_id": mug, "quantity": 1 }, { "product_id": unknown, "quantity": 1 }]),
            ),
            422,
            "unknown_product",
        ),
        (
            "products priced in two currencies",
            with(
                "/items",
                json!([{ "product_id": mug, "quantity": 1 }, { "product_id": euro_mug, "quantity": 1 }]),
            ),
            422,
            "validation_failed",
        ),
        (
            "product id not a uuid",
            with("/items/0/product_id", json!("mug")),
            422,
            "unknown_product",
        ),
        (
            "bad e-mail",
            with("/customer/email", json!("not-an-email")),
            422,
            "validation_failed",
        ),
        // Valid to some parsers, but the mailer cannot send to it: refused up front.
        (
            "e-mail to an IP-literal domain",
            with("/customer/email", json!("a@[127.0.0.1]")),
            422,
            "validation_failed",
        ),
        (
            "name over 200 characters",
            with("/customer/name", json!("é".repeat(201))),
            422,
            "validation_failed",
        ),
        // A name goes into the e-mail's To header: no line breaks.
        (
            "line break in the name",
            with("/customer/name", json!("Ada\r\nBcc: x@example.com")),
            422,
            "validation_failed",
        ),
        (
            "blank name",
            with("/customer/name", json!("   ")),
            422,
            "validation_failed",
        ),
        // Valid JSON that PostgreSQL cannot store (found by schemathesis as a 500).
        (
            "NUL in the name",
            with("/customer/name", json!("Ada\u{0}Lovelace")),
            422,
            "validation_failed",
        ),
        (
            "NUL in an optional address line",
            with_address(json!({
                "line1": "1 Rue", "line2": "\u{0}", "city": "Paris", "postal_code": "75001", "country": "FR"
            })),
            422,
            "validation_failed",
        ),
        (
            "unknown payment token",
            with("/payment/token", json!("tok_bogus")),
            422,
            "unknown_payment_token",
        ),
        (
            "bad shipping address",
            with_address(
                json!({ "line1": "", "city": "Paris", "postal_code": "75001", "country": "FRA" }),
            ),
            422,
            "validation_failed",
        ),
    ];
    for (case, body, status, code) in cases {
        expect_error(app.post_json("/orders", &body).await, status, code, case).await;
    }

    // The error names exactly the products the catalog lacks.
    let partly_unknown = with(
        "/items",
        json!([{ "product_id": mug, "quantity": 1 }, { "product_id": unknown, "quantity": 1 }]),
    );
    let body: Value = app
        .post_json("/orders", &partly_unknown)
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(
        body["error"]["details"]["product_ids"],
        json!([unknown]),
        "{body}"
    );

    let malformed = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "application/json")
        .body("{\"customer\": ")
        .send()
        .await
        .expect("the API answers");
    expect_error(malformed, 400, "malformed_request", "malformed JSON").await;

    let wrong_type = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "text/plain")
        .body(valid.to_string())
        .send()
        .await
        .expect("the API answers");
    expect_error(wrong_type, 415, "unsupported_media_type", "text/plain body").await;

    let mut huge = valid.clone();
    huge["customer"]["name"] = json!("x".repeat(70 * 1024));
    expect_error(
        app.post_json("/orders", &huge).await,
        413,
        "payload_too_large",
        "body over 64 KiB",
    )
    .await;

    let bad_key = app
        .client
        .post(app.url("/orders"))
        .header("Idempotency-Key", "k".repeat(300))
        .json(&valid)
        .send()
        .await
        .expect("the API answers");
    expect_error(
        bad_key,
        422,
        "validation_failed",
        "Idempotency-Key too long",
    )
    .await;

    assert_eq!(
        footprint(&db).await,
        before,
        "a rejected request wrote something"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_ids_bad_queries_and_missing_admin_tokens_get_their_errors() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let before = footprint(&db).await;

    let unknown = uuid::Uuid::new_v4();
    expect_error(
        app.get(&format!("/orders/{unknown}")).await,
        404,
        "not_found",
        "unknown order",
    )
    .await;
    expect_error(
        app.get("/orders/12345").await,
        404,
        "not_found",
        "order id not a uuid",
    )
    .await;
    expect_error(
        app.get(&format!("/products/{unknown}")).await,
        404,
        "not_found",
        "unknown product",
    )
    .await;
    expect_error(app.get("/nowhere").await, 404, "not_found", "unknown route").await;
    expect_error(
        app.admin_get("/orders?status=lost").await,
        422,
        "validation_failed",
        "unknown status",
    )
    .await;
    expect_error(
        app.admin_get("/orders?limit=0").await,
        422,
        "validation_failed",
        "limit 0",
    )
    .await;
    expect_error(
        app.admin_get("/orders?limit=abc").await,
        422,
        "validation_failed",
        "limit not a number",
    )
    .await;
    expect_error(
        app.admin_get("/orders?cursor=zzz").await,
        422,
        "validation_failed",
        "bad cursor",
    )
    .await;
    let impossible = format!("-8000000000000000000_{}", unknown.simple());
    expect_error(
        app.admin_get(&format!("/orders?cursor={impossible}")).await,
        422,
        "validation_failed",
        "a cursor that cannot be a position",
    )
    .await;

    let product = json!({ "sku": "NEW", "name": "New", "price_cents": 100, "stock": 1 });
    let no_token = app.post_json("/products", &product).await;
    expect_error(no_token, 401, "unauthorized", "admin without a token").await;
    let wrong_token = app
        .client
        .post(app.url("/products"))
        .bearer_auth("wrong-token-wrong-token")
        .json(&product)
        .send()
        .await
        .expect("the API answers");
    expect_error(wrong_token, 401, "unauthorized", "admin with a wrong token").await;
    let patch_without_token = app
        .client
        .patch(app.url(&format!("/products/{mug}")))
        .json(&json!({ "stock": 0 }))
        .send()
        .await
        .expect("the API answers");
    expect_error(
        patch_without_token,
        401,
        "unauthorized",
        "patch without a token",
    )
    .await;
    let queue_without_token = app.get("/admin/queue").await;
    expect_error(
        queue_without_token,
        401,
        "unauthorized",
        "queue overview without a token",
    )
    .await;

    let admin_post = |body: Value| {
        app.client
            .post(app.url("/products"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let duplicate =
        admin_post(json!({ "sku": "MUG", "name": "Mug again", "price_cents": 1, "stock": 1 }))
            .await
            .expect("the API answers");
    expect_error(duplicate, 409, "conflict", "duplicate sku").await;
    let negative =
        admin_post(json!({ "sku": "NEG", "name": "Neg", "price_cents": -1, "stock": 1 }))
            .await
            .expect("the API answers");
    expect_error(negative, 422, "validation_failed", "negative price").await;
    let bad_currency = admin_post(
        json!({ "sku": "EUR1", "name": "Euro", "price_cents": 1, "currency": "euro", "stock": 1 }),
    )
    .await
    .expect("the API answers");
    expect_error(bad_currency, 422, "validation_failed", "bad currency").await;
    let nul_name =
        admin_post(json!({ "sku": "NUL", "name": "Mug\u{0}", "price_cents": 1, "stock": 1 }))
            .await
            .expect("the API answers");
    expect_error(nul_name, 422, "validation_failed", "NUL in a product name").await;
    let negative_stock = app
        .client
        .patch(app.url(&format!("/products/{mug}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "stock": -1 }))
        .send()
        .await
        .expect("the API answers");
    expect_error(negative_stock, 422, "validation_failed", "negative stock").await;

    assert_eq!(
        footprint(&db).await,
        before,
        "a rejected request wrote something"
    );
    assert_eq!(app.get_json(&format!("/products/{mug}")).await["stock"], 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_create_and_patch_products() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let patched = app
        .client
        .patch(app.url(&format!("/products/{mug}")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "stock": 3, "expected_stock": 10, "price_cents": 1200 }))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(patched.status(), 200);
    let product = app.get_json(&format!("/products/{mug}")).await;
    assert_eq!(
        (product["stock"].as_i64(), product["price_cents"].as_i64()),
        (Some(3), Some(1200))
    );

    // Stock changes cannot undo what orders took meanwhile. An order takes one unit...
    let mut conn = db.connect().await;
    diesel::sql_query("UPDATE products SET stock = stock - 1 WHERE sku = 'MUG'")
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/products/{mug}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    // ...so an absolute change made from the stock read before it is refused, whole.
    let stale = patch(json!({ "stock": 50, "expected_stock": 3, "name": "Renamed" }))
        .await
        .expect("the API answers");
    assert_eq!(stale.status(), 409);
    let body: Value = stale.json().await.unwrap_or_default();
    assert_eq!(body["error"]["details"]["stock"], 2);
    let product = app.get_json(&format!("/products/{mug}")).await;
    assert_eq!(
        (product["stock"].as_i64(), product["name"].as_str()),
        (Some(2), Some("Product MUG"))
    );
    // A delivery is added to what is there now.
    let delivery = patch(json!({ "stock_delta": 20 }))
        .await
        .expect("the API answers");
    assert_eq!(delivery.status(), 200);
    assert_eq!(app.get_json(&format!("/products/{mug}")).await["stock"], 22);
    // Too much taken away, or an absolute stock without the one it replaces.
    let below_zero = patch(json!({ "stock_delta": -23 }))
        .await
        .expect("the API answers");
    assert_eq!(below_zero.status(), 409);
    let blind = patch(json!({ "stock": 5 })).await.expect("the API answers");
    assert_eq!(blind.status(), 422);
    assert_eq!(app.get_json(&format!("/products/{mug}")).await["stock"], 22);
    assert_eq!(product["sku"], "MUG");
    assert_eq!(product["currency"], "USD");
    let listed = app.get_json("/products").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
}
