//! A request body must arrive within a deadline from the request's start. actix-web bounds
//! the time to read a request's head, not its body: without this, a client that sends one
//! byte every few seconds holds a connection (and a worker's buffer) for as long as it
//! likes. Past the deadline the body reads fail with a timeout, which the JSON extractor
//! turns into a 408.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_util::Stream;
use tokio::time::{sleep, Sleep};

/// The body deadline of every request, set by [`crate::startup`].
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = req
        .app_data::<actix_web::web::Data<BodyTimeout>>()
        .map(|timeout| timeout.0);
    if let Some(timeout) = timeout {
        let body = req.take_payload();
        req.set_payload(Payload::from(Box::pin(DeadlineBody {
            body,
            deadline: Box::pin(sleep(timeout)),
        })
            as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>));
    }
    next.call(req).await
}

/// The body's chunks until the deadline, then a timeout error.
struct DeadlineBody {
    body: Payload,
    deadline: Pin<Box<Sleep>>,
}

impl Stream for DeadlineBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(chunk) = Pin::new(&mut self.body).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}
