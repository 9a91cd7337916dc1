//! Recorded and hand-made data: the demo houses of real HA versions
//! (`tests/fixtures/home-assistant-*`), the known states of the fetcher tests,
//! the shipped fetchers, and engines over them.

use std::sync::Arc;

use ha_fetchers::fetchers::{Registry, Row, Runner};
use ha_fetchers::sim::House;
use ha_fetchers::state::{EntityState, MemoryStore, SharedStore, StateManager, Store};

/// The recorded demo house of one HA version, read from `tests/fixtures/`.
pub fn fixture(version: &str, file: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/home-assistant-{version}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The house of one recorded version.
pub fn house(version: &str) -> House {
    House::from_json(&fixture(version, "rest-states.json")).expect("fixture is a state array")
}

/// The known states every fetcher test starts from.
pub fn fixture_states() -> Vec<EntityState> {
    let text = include_str!("../../fixtures/fetcher_states.json");
    let list: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    list.iter()
        .map(|v| EntityState::from_raw(&v.to_string()).unwrap())
        .collect()
}

/// A memory store holding the fixture.
pub async fn fixture_store() -> SharedStore {
    let store = MemoryStore::new();
    store.replace_all(fixture_states()).await.unwrap();
    Arc::new(store)
}

/// One state object, with a `last_updated` in 2026 at `sec` seconds.
pub fn state(id: &str, st: &str, attrs: serde_json::Value, sec: u32) -> EntityState {
    let v = serde_json::json!({
        "entity_id": id, "state": st, "attributes": attrs,
        "last_changed": format!("2026-01-02T00:00:{sec:02}+00:00"),
        "last_updated": format!("2026-01-02T00:00:{sec:02}+00:00"),
    });
    EntityState::from_raw(&v.to_string()).unwrap()
}

/// The shipped `fetchers/*.toml` as rows.
pub fn shipped_rows() -> Vec<Row> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fetchers");
    let (rows, problems) = ha_fetchers::fetchers::files::load_dir(&dir).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    rows
}

/// An engine over the shipped fetchers and the fixture.
pub async fn shipped_engine() -> Runner {
    let states = StateManager::new(fixture_store().await, None);
    Runner::new(Registry::from_rows(shipped_rows()), states)
}

/// A row with the usual defaults.
pub fn row(name: &str, source: &str, params: &str) -> Row {
    Row {
        name: name.into(),
        description: format!("test fetcher {name}"),
        source: source.into(),
        params: params.into(),
        required_params: "[]".into(),
        template: None,
        ttl_seconds: 30,
        timeout_ms: 1000,
        enabled: true,
    }
}

/// Copies the tree at `from` into `to`, making `to` if needed.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `mysql/examples/reminders.sql`, as an admin pipes it into `mysql`.
pub const REMINDERS_SQL: &str = include_str!("../../../mysql/examples/reminders.sql");

/// Runs [`REMINDERS_SQL`] as is on `pool`: the `reminders` table, its rows and
/// the `reminders_due_today` fetcher.
pub async fn reminders_example(pool: &sqlx::MySqlPool) {
    sqlx::raw_sql(REMINDERS_SQL)
        .execute(pool)
        .await
        .expect("mysql/examples/reminders.sql runs");
}
