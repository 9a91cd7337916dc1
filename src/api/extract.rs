//! Extractors whose rejections answer `{"error": {"code", "message"}}` like every
//! other failure, instead of axum's plain-text bodies (the OpenAPI document says so).

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};

use super::ApiError;

/// A JSON request body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Path parameters.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// The query string.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// An optional body: none without a content type, as with `axum::Json`.
impl<T, S> OptionalFromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let body = <axum::Json<T> as OptionalFromRequest<S>>::from_request(req, state).await?;
        Ok(body.map(|axum::Json(v)| Self(v)))
    }
}

/// The engine as the caller's token sees it: scoped for a scoped token
/// (the middleware put its scope on the request), whole for the admin.
/// Handlers that read states, fetchers or templates take this, not
/// `AppState::engine`, so no door answers past a scope.
pub struct Seen(pub crate::engine::Engine);

impl FromRequestParts<std::sync::Arc<super::AppState>> for Seen {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &std::sync::Arc<super::AppState>,
    ) -> Result<Self, ApiError> {
        let scope = parts
            .extensions
            .get::<std::sync::Arc<crate::state::Scope>>();
        Ok(Seen(match scope {
            Some(scope) => app.engine.scoped(scope.clone()),
            None => app.engine.clone(),
        }))
    }
}
