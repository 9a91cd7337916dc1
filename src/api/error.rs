//! `ApiError`: every failure the API returns, as `{"error": {"code", "message"}}`.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::prompt::RenderError;
use crate::state::StateError;

/// The `Retry-After` of a shed request, in seconds: requests are short, so a
/// slot is usually free by then.
pub const RETRY_AFTER_SECS: u64 = 1;

/// An API failure. Internal errors are logged in full and shown as a bare 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unprocessable(String),
    /// Every request slot is taken: try again shortly (503 with `Retry-After`).
    #[error("the server is busy; retry in {RETRY_AFTER_SECS} s")]
    Overloaded,
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
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            Self::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::Rejected { status, .. } => (*status, rejection_code(*status)),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The `code` of an extractor rejection, by its status.
fn rejection_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        _ => "bad_request",
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
            StateError::Unavailable(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::NotFound(_) => Self::NotFound(e.to_string()),
            RenderError::FetcherFailed { .. } => Self::Unavailable(e.to_string()),
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
        let mut resp = (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response();
        if matches!(self, Self::Overloaded) {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        resp
    }
}
