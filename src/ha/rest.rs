//! HA's REST API: answers cache misses.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::state::{EntityState, Fallback, FallbackError};

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
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("a client with only timeouts set always builds");
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
            .map_err(|e| FallbackError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp
            .text()
            .await
            .map_err(|e| FallbackError::Unreachable(e.without_url().to_string()))?;
        if !status.is_success() {
            let mut message = body;
            message.truncate(200);
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
