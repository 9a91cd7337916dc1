//! Cache modes (update, invalidate, fallback on a failed update) and the REST
//! fallback on a miss, against a simulated Home Assistant.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use ha_fetchers::sim::Sim;
use ha_fetchers::state::{
    EntityState, Index, Meta, RegistryKind, SharedStore, Store, StoreError, Upserted,
};

use crate::helpers;
use crate::helpers::{both, wait_for, Harness, Kind, Logs, TestStore, TOKEN};

async fn update_mode(kind: Kind) {
    let (logs, _guard) = Logs::capture();
    let h = Harness::start(kind).await;
    h.synced().await;
    h.sim.set("light.bed_light", "off");
    h.wait_state("light.bed_light", "off").await;
    let lines = logs.lines_with(&[
        "Cache updated from WebSocket",
        "entity_id=light.bed_light",
        "old_state=\"on\"",
        "new_state=off",
        "action=\"update\"",
    ]);
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert_eq!(h.writer.stats.updates.load(Ordering::Relaxed), 1);
    if let Some(r) = h.redis() {
        assert_eq!(
            r.redis_state("light.bed_light").await.unwrap(),
            h.sim.state("light.bed_light")
        );
    }
    h.finish().await;
}
both!(update_mode, update_mode_memory, update_mode_redis);

async fn invalidate_mode_and_rest_refill(kind: Kind) {
    let (logs, _guard) = Logs::capture();
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let mut settings = helpers::settings(&sim);
    settings.websocket_update_cache = false;
    let h = Harness::start_with(sim, settings, TestStore::new(kind).await).await;
    h.synced().await;
    h.sim.set("light.bed_light", "off");
    wait_for("the key to be deleted", || {
        h.known("light.bed_light") && h.cached("light.bed_light").is_none()
    })
    .await;
    h.writer.flush().await;
    assert_eq!(
        logs.lines_with(&["entity_id=light.bed_light", "action=\"invalidate\""])
            .len(),
        1,
        "{}",
        logs.text()
    );
    if let Some(r) = h.redis() {
        assert_eq!(r.redis_state("light.bed_light").await.unwrap(), None);
        assert!(r.redis_ids().await.unwrap().contains("light.bed_light"));
    }
    assert_eq!(h.sim.rest_calls(), 0);

    // The miss is answered by HA's REST API and fills the cache.
    let (status, body) = h.get("/api/v1/states/light.bed_light").await;
    assert_eq!(status, 200);
    assert_eq!(Some(body), h.sim.state("light.bed_light"));
    assert_eq!(h.sim.rest_calls(), 1);
    assert_eq!(h.cached_state("light.bed_light").as_deref(), Some("off"));
    let _ = h.get("/api/v1/states/light.bed_light").await;
    assert_eq!(h.sim.rest_calls(), 1, "a hit needs no REST");
    if let Some(r) = h.redis() {
        assert_eq!(
            r.redis_state("light.bed_light").await.unwrap(),
            h.sim.state("light.bed_light")
        );
    }

    // A listing refills invalidated entities too.
    h.sim.set("light.kitchen_lights", "off");
    wait_for("kitchen invalidated", || {
        h.cached("light.kitchen_lights").is_none()
    })
    .await;
    let (_, lights) = h.get_json("/api/v1/states?domain=light&state=off").await;
    let ids: Vec<&str> = lights
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["light.bed_light", "light.kitchen_lights"]);

    // A 404 from HA stays a 404.
    let before = h.sim.rest_calls();
    let (status, err) = h.get_json("/api/v1/states/light.does_not_exist").await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "not_found");
    assert_eq!(h.sim.rest_calls(), before + 1);
    h.finish().await;
}
both!(
    invalidate_mode_and_rest_refill,
    invalidate_mode_memory,
    invalidate_mode_redis
);

/// A store whose updates always fail, to drive the writer's fallback.
struct FailingUpserts(SharedStore);

#[async_trait]
impl Store for FailingUpserts {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn read(&self, f: &mut dyn FnMut(&Index)) {
        self.0.read(f)
    }
    async fn upsert(
        &self,
        _states: Vec<EntityState>,
    ) -> Result<Vec<(EntityState, Upserted)>, StoreError> {
        Err(StoreError::Rejected("test store refuses updates".into()))
    }
    async fn remove(&self, ids: &[(Arc<str>, i64)]) -> Result<(), StoreError> {
        self.0.remove(ids).await
    }
    async fn invalidate(&self, ids: &[Arc<str>]) -> Result<(), StoreError> {
        self.0.invalidate(ids).await
    }
    async fn replace_all(&self, snapshot: Vec<EntityState>) -> Result<Vec<Arc<str>>, StoreError> {
        self.0.replace_all(snapshot).await
    }
    async fn set_registry(&self, kind: RegistryKind, raw: Arc<str>) -> Result<(), StoreError> {
        self.0.set_registry(kind, raw).await
    }
    fn meta(&self) -> Meta {
        self.0.meta()
    }
    async fn set_meta(&self, meta: &Meta) -> Result<(), StoreError> {
        self.0.set_meta(meta).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }
}

async fn fallback_mode(kind: Kind) {
    let (logs, _guard) = Logs::capture();
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let settings = helpers::settings(&sim);
    let mut store = TestStore::new(kind).await;
    store.shared = Arc::new(FailingUpserts(store.shared.clone()));
    let h = Harness::start_with(sim, settings, store).await;
    h.synced().await;
    assert_eq!(h.cached_state("light.bed_light").as_deref(), Some("on"));
    h.sim.set("light.bed_light", "off");
    wait_for("the key to be deleted", || {
        h.known("light.bed_light") && h.cached("light.bed_light").is_none()
    })
    .await;
    h.writer.flush().await;
    let lines = logs.lines_with(&[
        "Failed to update cache, falling back to invalidation",
        "entity_id=light.bed_light",
        "action=\"invalidate\"",
    ]);
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert_eq!(h.writer.stats.fallbacks.load(Ordering::Relaxed), 1);
    if let Some(r) = h.redis() {
        assert_eq!(r.redis_state("light.bed_light").await.unwrap(), None);
    }
    // Readers still get the current state, from REST.
    let (status, body) = h.get("/api/v1/states/light.bed_light").await;
    assert_eq!(status, 200);
    assert_eq!(Some(body), h.sim.state("light.bed_light"));
    h.finish().await;
}
both!(fallback_mode, fallback_mode_memory, fallback_mode_redis);

#[tokio::test]
async fn unreachable_home_assistant_is_a_503() {
    // A port with nothing behind it.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sim = Sim::start_demo(TOKEN).await.unwrap();
    let mut settings = helpers::settings(&sim);
    settings.ha_url = Some(url.parse().unwrap());
    let h = Harness::start_with(sim, settings, TestStore::new(Kind::Memory).await).await;
    let (status, err) = h.get_json("/api/v1/states/light.bed_light").await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"]["code"], "unavailable");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("home assistant"));
    h.finish().await;
}
