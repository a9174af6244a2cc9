//! CORS for a storefront on another origin, checked the way a browser asks: a preflight
//! `OPTIONS` with `Access-Control-Request-*`, then the actual request with `Origin`.

use orderflow_runtime::config::ApiConfig;
use orderflow_tests::TestDb;

const STOREFRONT: &str = "https://shop.example.com";

async fn app_with_origins(db: &TestDb, origins: &[&str]) -> String {
    let config = ApiConfig {
        cors_origins: origins.iter().map(|o| o.to_string()).collect(),
        ..orderflow_tests::app::test_api_config()
    };
    let app = order_api::startup::build(&config, db.pool(2)).expect("the API starts");
    tokio::spawn(app.server);
    format!("http://{}", app.addr)
}

async fn preflight(base: &str, origin: &str) -> reqwest::Response {
    orderflow_tests::http::client()
        .request(reqwest::Method::OPTIONS, format!("{base}/orders"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,idempotency-key",
        )
        .send()
        .await
        .expect("preflight")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listed_storefront_origin_passes_the_preflight_and_reads_the_answer() {
    let db = TestDb::new().await;
    let base = app_with_origins(&db, &[STOREFRONT, "http://localhost:5173"]).await;

    let response = preflight(&base, STOREFRONT).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(STOREFRONT)
    );
    let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&response, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        headers.contains("idempotency-key") && headers.contains("content-type"),
        "{headers}"
    );

    let actual = orderflow_tests::http::client()
        .get(format!("{base}/products"))
        .header("Origin", STOREFRONT)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(actual.status(), 200);
    assert_eq!(
        header(&actual, "access-control-allow-origin").as_deref(),
        Some(STOREFRONT)
    );
    let exposed = header(&actual, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("location"), "{exposed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_origins_get_no_cors_headers_and_none_are_allowed_by_default() {
    let db = TestDb::new().await;
    let listed = app_with_origins(&db, &[STOREFRONT]).await;
    let unlisted = preflight(&listed, "https://evil.example.net").await;
    assert_eq!(header(&unlisted, "access-control-allow-origin"), None);

    let default = app_with_origins(&db, &[]).await;
    let response = preflight(&default, STOREFRONT).await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    // Same-origin and non-browser clients are unaffected.
    let plain = reqwest::get(format!("{default}/products"))
        .await
        .expect("the API answers");
    assert_eq!(plain.status(), 200);
}
