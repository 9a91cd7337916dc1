//! The console at `/`: one page of plain HTML, CSS and JavaScript, embedded
//! in the binary at build time, so it works offline and ships with no build
//! step or framework to keep up to date. Its views (status, fetchers,
//! prompts, states) read the same API every other client uses, and the
//! change stream keeps them live. Mounted beside `api`, behind the same
//! token check (the page itself is open; its data is not). Every URL in the
//! page is relative, so it works as well under the prefix of Home
//! Assistant's ingress (`/api/hassio_ingress/<token>/`) as at `/`.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The page.
const INDEX: &str = include_str!("assets/index.html");
/// Its script.
const SCRIPT: &str = include_str!("assets/console.js");
/// Its style.
const STYLE: &str = include_str!("assets/console.css");

/// Only the console's own files run and load; nothing inline, nothing from
/// elsewhere, no framing. State names come from devices, so a name that
/// carries markup must stay text.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// `/`, `/console/console.js` and `/console/console.css`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| asset(INDEX, "text/html; charset=utf-8")))
        .route(
            "/console/console.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/console/console.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
}

/// One embedded file with the headers every console response carries.
async fn asset(body: &'static str, content_type: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            // A new binary may ship a new page: revalidate rather than cache.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                axum::http::header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
}
