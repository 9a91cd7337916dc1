//! HA's REST API: answers cache misses.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::state::{EntityState, Fallback, FallbackError};

/// How much of an HA error body is kept in the error (bytes, at most).
const MAX_ERROR_BODY: usize = 200;

/// Cuts `s` to at most `max` bytes at a char boundary: `String::truncate`
/// panics inside a multibyte char, and HA's error bodies are any UTF-8
/// (`str::floor_char_boundary` is not stable yet).
fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let cut = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.truncate(cut);
}

/// A request that got no answer: a TLS failure says which, in the words of
/// the WebSocket's `last_error`.
fn unreachable(e: reqwest::Error) -> FallbackError {
    let why = crate::tls::describe(&e).unwrap_or_else(|| e.without_url().to_string());
    FallbackError::Unreachable(why)
}

/// A REST client for one HA instance.
#[derive(Clone)]
pub struct HaRest {
    /// Pooled HTTP client with a per-request timeout.
    http: reqwest::Client,
    /// HA's base URL (`http://host:8123`).
    base: Url,
    /// The long-lived token, sent as a bearer.
    token: SecretString,
}

impl HaRest {
    pub fn new(base: Url, token: SecretString, timeout: Duration) -> Self {
        Self::with_tls(base, token, timeout, None)
    }

    /// As [`new`](Self::new); an `https://` base is checked against `tls`,
    /// the same trust as the WebSocket's.
    pub fn with_tls(
        base: Url,
        token: SecretString,
        timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls((*tls).clone());
        }
        let http = builder
            .build()
            .expect("a client with timeouts and a rustls config always builds");
        Self { http, base, token }
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let p = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        u.set_path(&p);
        u
    }

    async fn get(&self, path: &str) -> Result<Option<String>, FallbackError> {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let mut message = body;
            truncate_at_char(&mut message, MAX_ERROR_BODY);
            return Err(FallbackError::Status {
                status: status.as_u16(),
                message,
            });
        }
        Ok(Some(body))
    }

    /// `GET /api/states`: every state, as HA renders them.
    pub async fn states(&self) -> Result<Vec<EntityState>, FallbackError> {
        let body = self
            .get("/api/states")
            .await?
            .unwrap_or_else(|| "[]".into());
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_str(&body).map_err(|e| FallbackError::Invalid(e.to_string()))?;
        let (ok, _bad) = super::protocol::parse_states(&raw)
            .map_err(|e| FallbackError::Invalid(e.to_string()))?;
        Ok(ok)
    }
}

#[async_trait]
impl Fallback for HaRest {
    async fn fetch_state(&self, entity_id: &str) -> Result<Option<EntityState>, FallbackError> {
        let Some(body) = self.get(&format!("/api/states/{entity_id}")).await? else {
            return Ok(None);
        };
        EntityState::from_raw(&body)
            .map(Some)
            .map_err(|e| FallbackError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::truncate_at_char;

    #[test]
    fn truncation_never_splits_a_char() {
        // 1-, 2-, 3- and 4-byte chars, so every cut lands inside one somewhere.
        let text = "aé€😀".repeat(30);
        for max in 0..=text.len() + 1 {
            let mut s = text.clone();
            truncate_at_char(&mut s, max);
            assert!(s.len() <= max, "cut at {max} kept {}", s.len());
            assert!(text.starts_with(&s));
            // The longest prefix that fits: the next char would not.
            let next = text[s.len()..].chars().next().map_or(0, char::len_utf8);
            assert!(s.len() == text.len() || s.len() + next > max);
        }
    }
}
