//! An order's live stream: server-sent events that carry the whole order each time its
//! timeline grows, until it is finished (terminal, with its e-mail sent or given up on).

use std::convert::Infallible;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{get, web, HttpResponse};
use orderflow::status::EventType;
use orderflow::views::{self, Order};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::ApiError;
#[allow(unused_imports)]
use crate::openapi::{ErrorResponse, OrderFrame};
use crate::order_feed::Watch;
use crate::routes::parse_id;
use crate::state::{AppState, OrderCredentials};

/// A comment line this often keeps proxies and the browser from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream ends after this long; the page opens a new one. Bounds what a forgotten tab
/// holds, and lets connections move to a restarted or another API process.
const LIFETIME: Duration = Duration::from_secs(300);
/// A page that cannot keep up is cut off rather than buffered for.
const FRAMES_BUFFERED: usize = 4;

/// The order as `event: order` frames (the same JSON as `GET /orders/{id}`), first at once
/// and then after every change; comment lines keep the connection alive. Needs the same
/// credentials as `GET /orders/{id}`.
#[utoipa::path(tag = "orders", security(("order_token" = []), ("admin_token" = [])),
    params(("id" = String, Path, description = "Order id (UUID)"),
           ("token" = Option<String>, Query, description = "The order's access token, as for `GET /orders/{id}`")),
    responses(
        (status = 200, description = "A stream of `event: order` frames, each with the whole order (as `GET /orders/{id}` answers it) as `data`; comment lines keep it alive", content_type = "text/event-stream", body = OrderFrame),
        (status = 404, description = "No such order, or not the order's (nor the admin) token", body = ErrorResponse),
        (status = 503, description = "The database is unavailable; retry shortly", body = ErrorResponse)
    ))]
#[get("/orders/{id}/events")]
pub async fn order_events(
    state: web::Data<AppState>,
    id: web::Path<String>,
    credentials: OrderCredentials,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "order")?;
    // Watch first: a change between this read and the watch would otherwise be missed.
    let watch = state.order_feed.watch(id);
    let mut conn = state.pool.get().await?;
    let order = views::load_order_with_token(&mut conn, id)
        .await?
        .filter(|stored| credentials.open(&stored.access_token))
        .ok_or_else(|| ApiError::not_found("order"))?
        .order;
    drop(conn);
    let (frames, received) = mpsc::channel(FRAMES_BUFFERED);
    tokio::spawn(follow(state.into_inner(), watch, order, frames));
    let body = futures_util::stream::unfold(received, |mut received| async move {
        received
            .recv()
            .await
            .map(|frame| (Ok::<_, Infallible>(frame), received))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// Sends the order, then again after each change, until it is finished, the page goes
/// away (a send fails), the stream's lifetime ends or the database cannot be read.
async fn follow(
    state: std::sync::Arc<AppState>,
    watch: Watch,
    mut order: Order,
    frames: mpsc::Sender<Bytes>,
) {
    let ends_at = Instant::now() + LIFETIME;
    loop {
        let Some(frame) = order_frame(&order) else {
            return;
        };
        if frames.send(frame).await.is_err() || finished(&order) {
            return;
        }
        loop {
            tokio::select! {
                () = watch.moved() => break,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if frames.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(ends_at) => return,
            }
        }
        let Ok(mut conn) = state.pool.get().await else {
            return;
        };
        match views::load_order_with_token(&mut conn, order.id).await {
            Ok(Some(stored)) => order = stored.order,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, order_id = %order.id, "live order stream could not read its order");
                return;
            }
        }
    }
}

fn order_frame(order: &Order) -> Option<Bytes> {
    let json = serde_json::to_string(order)
        .inspect_err(|error| tracing::error!(%error, "an order did not serialise"))
        .ok()?;
    Some(Bytes::from(format!("event: order\ndata: {json}\n\n")))
}

/// Nothing more will happen to the order: it is terminal and its e-mail was sent (or
/// will never be).
fn finished(order: &Order) -> bool {
    let terminal = order.status.is_terminal();
    let mailed = [
        EventType::Fulfilled,
        EventType::Notified,
        EventType::NotificationFailed,
    ];
    terminal
        && order
            .events
            .iter()
            .any(|event| mailed.iter().any(|kind| kind.as_str() == event.event_type))
}
