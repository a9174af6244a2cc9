use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The process is up.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Probes give up quickly; a pool checkout alone may wait several seconds.
const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// The database answers, within a second.
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let probe = async {
        let mut conn = state.pool.get().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok::<_, ApiError>(())
    };
    match tokio::time::timeout(READINESS_TIMEOUT, probe).await {
        Ok(result) => result.map(|()| HttpResponse::Ok().json(json!({ "status": "ready" }))),
        Err(_) => Err(ApiError::new(
            ErrorCode::Unavailable,
            "the database did not answer within a second",
        )),
    }
}
