//! `ApiError`: every failure the API returns, as `{"error": {"code", "message"}}`.

use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::prompt::RenderError;
use crate::state::{FallbackError, StateError};

/// The `Retry-After` of a shed request, in seconds: requests are short, so a
/// slot is usually free by then.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Every failure's body.
// What `ApiError::into_response` writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
}

/// The `code` of a failure; the HTTP status tells the same, coarser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    BadRequest,
    Unauthorized,
    Forbidden,
    MethodNotAllowed,
    TooManyRequests,
    Unavailable,
    BadGateway,
    Unprocessable,
    Overloaded,
    Timeout,
    RequestTimeout,
    TooLarge,
    UnsupportedMediaType,
    PayloadTooLarge,
    Internal,
}

/// An API failure. Internal errors are logged in full and shown as a bare 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The request came under a name or from a page this server does not
    /// answer to (`ALLOWED_HOSTS`); the message says which.
    #[error("{0}")]
    Forbidden(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Too many failed attempts from this peer: try again after this many
    /// seconds (429 with `Retry-After`).
    #[error("too many failed logins from this address; retry in {0} s")]
    TooManyRequests(u64),
    #[error("{0}")]
    Unavailable(String),
    /// Home Assistant answered, but with something unusable (502).
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unprocessable(String),
    /// Every request slot is taken: try again shortly (503 with `Retry-After`).
    #[error("the server is busy; retry in {RETRY_AFTER_SECS} s")]
    Overloaded,
    /// The body did not arrive within `HEADER_READ_TIMEOUT` (408).
    #[error("the request body did not arrive within {0:?} (HEADER_READ_TIMEOUT)")]
    SlowBody(std::time::Duration),
    /// The server is busy for the reason given (the renders running hold all
    /// of `RENDER_MEMORY_TOTAL`): 503 `overloaded` with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// The request outlived `REQUEST_TIMEOUT`.
    #[error("the request took longer than {0:?}")]
    Timeout(std::time::Duration),
    /// A request asks for more than a limit allows, or its answer would be
    /// larger than one; the message names the limit.
    #[error("{0}")]
    TooLarge(String),
    /// An extractor refused the request (bad JSON, wrong content type, body too
    /// large, undecodable path or query); axum's status is kept, the body made ours.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, C::BadRequest),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, C::Unauthorized),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, C::Forbidden),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, C::MethodNotAllowed),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, C::TooManyRequests),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, C::Unavailable),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, C::BadGateway),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::Unprocessable),
            Self::Overloaded | Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, C::Overloaded),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, C::Timeout),
            Self::SlowBody(_) => (StatusCode::REQUEST_TIMEOUT, C::RequestTimeout),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, C::TooLarge),
            Self::Rejected { status, .. } => (*status, rejection_code(*status)),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, C::Internal),
        }
    }
}

/// The `code` of an extractor rejection, by its status.
fn rejection_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::Unprocessable,
        _ => ErrorCode::BadRequest,
    }
}

impl<R: IntoResponse + std::fmt::Display> From<Rejection<R>> for ApiError {
    fn from(Rejection(r): Rejection<R>) -> Self {
        let message = r.to_string();
        let status = r.into_response().status();
        Self::Rejected { status, message }
    }
}

/// Wraps an axum rejection so `ApiError` can take any of them with one impl.
pub struct Rejection<R>(pub R);

macro_rules! from_rejection {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(r: $t) -> Self {
                Rejection(r).into()
            }
        }
    )*};
}

from_rejection!(
    axum::extract::rejection::JsonRejection,
    axum::extract::rejection::PathRejection,
    axum::extract::rejection::QueryRejection
);

impl From<StateError> for ApiError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotFound(_) => Self::NotFound(e.to_string()),
            StateError::BadEntityId(_) | StateError::BadPattern(_) => {
                Self::BadRequest(e.to_string())
            }
            StateError::Unavailable(FallbackError::WrongEntity { .. }) => {
                Self::BadGateway(e.to_string())
            }
            StateError::Unavailable(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::NotFound(_) => Self::NotFound(e.to_string()),
            RenderError::FetcherFailed { .. } => Self::Unavailable(e.to_string()),
            // The process's render memory is spent: the server's load, not the template.
            RenderError::Stopped {
                stop: crate::bounds::Stop::Total(_),
                ..
            } => Self::Busy(e.to_string()),
            RenderError::Stopped {
                stop: crate::bounds::Stop::Panicked,
                ..
            } => Self::Internal(anyhow::anyhow!(e.to_string())),
            RenderError::Internal(m) => Self::Internal(anyhow::anyhow!(m)),
            _ => Self::Unprocessable(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match &self {
            Self::Internal(e) => {
                tracing::error!(error = ?e, "Internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail { code, message },
        };
        let mut resp = (status, Json(body)).into_response();
        match self {
            Self::Overloaded | Self::Busy(_) => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            Self::TooManyRequests(secs) => {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            // RFC 6750: a 401 names the scheme; MCP clients read it to know a token is wanted.
            Self::Unauthorized => {
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="ha-fetchers""#),
                );
            }
            _ => {}
        }
        resp
    }
}
