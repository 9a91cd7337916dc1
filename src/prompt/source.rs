//! What the renderer needs from the fetcher engine, as a trait so prompts can
//! be built and tested apart from it. `fetchers::Runner` implements it.

use async_trait::async_trait;

use crate::fetchers::{FetchOutcome, FetchRequest};

/// The fetchers a template may use.
#[async_trait]
pub trait FetcherSource: Send + Sync + 'static {
    /// Whether a fetcher of this name is defined and enabled.
    fn exists(&self, name: &str) -> bool;

    /// Every known fetcher name, for `check` and error messages.
    fn names(&self) -> Vec<String>;

    /// Runs the requests concurrently, each under its own timeout; one outcome per request, in order.
    async fn run_many(&self, requests: Vec<FetchRequest>) -> Vec<FetchOutcome>;
}

/// A source with no fetchers: the renderer still serves HA functions without an engine.
pub struct NoFetchers;

#[async_trait]
impl FetcherSource for NoFetchers {
    fn exists(&self, _name: &str) -> bool {
        false
    }

    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn run_many(&self, requests: Vec<FetchRequest>) -> Vec<FetchOutcome> {
        requests
            .into_iter()
            .map(|r| FetchOutcome {
                result: Err(crate::fetchers::FetchError::UnknownFetcher(r.name.clone())),
                name: r.name,
                params: r.params,
                elapsed_ms: 0.0,
                cached: false,
            })
            .collect()
    }
}

/// The engine is what prompts fetch through.
#[async_trait]
impl FetcherSource for crate::fetchers::Runner {
    fn exists(&self, name: &str) -> bool {
        crate::fetchers::Runner::exists(self, name)
    }

    fn names(&self) -> Vec<String> {
        crate::fetchers::Runner::names(self)
    }

    async fn run_many(&self, requests: Vec<FetchRequest>) -> Vec<FetchOutcome> {
        crate::fetchers::Runner::run_many(self, requests).await
    }
}
