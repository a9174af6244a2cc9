//! Every error the API returns, as one type mapped to a status and a JSON body
//! `{"error": {"code", "message", "details"?}}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;

/// The machine-readable error codes; clients and tests match on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedRequest,
    ValidationFailed,
    UnknownProduct,
    UnknownPaymentToken,
    IdempotencyKeyReused,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unauthorized,
    AdminDisabled,
    RateLimited,
    RequestTimeout,
    Overloaded,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedRequest => StatusCode::BAD_REQUEST,
            Self::ValidationFailed
            | Self::UnknownProduct
            | Self::UnknownPaymentToken
            | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::AdminDisabled => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Tells the client when to try again (`Retry-After`, whole seconds, at least one).
    pub fn retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MalformedRequest, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// Something we did not expect: logged in full, answered without internals.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(%error, "database unavailable");
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable; try again shortly",
        )
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Value>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.max(1)));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        })
    }
}

/// Lost or refused connections are the database being away (503); anything else the
/// database says is our bug (500), since input is validated before it gets there.
impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &error {
            Error::NotFound => Self::not_found("resource"),
            // No SQLSTATE: the socket closed or broke (the server crashed or restarted).
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)
            | Error::BrokenTransactionManager => Self::unavailable(error),
            // The server ending sessions or not accepting them yet (SQLSTATE class 57P), or
            // the session's statement or lock timeout (57014, 55P03): the database is too
            // slow or too busy to answer this request now.
            Error::DatabaseError(DatabaseErrorKind::Unknown, info)
                if info.message().contains("connection")
                    || info.message().starts_with("the database system is")
                    || info.message().starts_with("canceling statement due to")
                    || info.message().starts_with("could not obtain lock") =>
            {
                Self::unavailable(error)
            }
            _ => Self::internal(error),
        }
    }
}

impl From<diesel_async::pooled_connection::bb8::RunError> for ApiError {
    fn from(error: diesel_async::pooled_connection::bb8::RunError) -> Self {
        Self::unavailable(error)
    }
}

impl From<actix_web::error::JsonPayloadError> for ApiError {
    fn from(error: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::{JsonPayloadError, PayloadError};
        match error {
            JsonPayloadError::Overflow { limit }
            | JsonPayloadError::OverflowKnownLength { limit, .. } => Self::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes"),
            ),
            JsonPayloadError::Payload(PayloadError::Overflow) => {
                Self::new(ErrorCode::PayloadTooLarge, "the body is too large")
            }
            JsonPayloadError::Payload(PayloadError::Io(error))
                if error.kind() == std::io::ErrorKind::TimedOut =>
            {
                Self::new(
                    ErrorCode::RequestTimeout,
                    "the request body did not arrive in time",
                )
            }
            JsonPayloadError::ContentType => Self::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON (Content-Type: application/json)",
            ),
            JsonPayloadError::Deserialize(error) => {
                Self::malformed(format!("invalid JSON body: {error}"))
            }
            other => Self::malformed(format!("unreadable body: {other}")),
        }
    }
}
