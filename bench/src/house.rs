//! A synthetic house: N entities cloned from the shapes of a real Home
//! Assistant's `/api/states` (108 demo entities, 36 domains), and the
//! `state_changed` events that move it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// The recorded states whose attribute shapes every synthetic entity copies.
const SHAPES: &str = include_str!("../data/rest-states.json");
/// Placeholder for the state string in a rendered template.
const STATE_MARK: &str = "@@STATE@@";
/// Placeholder for the three timestamps in a rendered template.
const TS_MARK: &str = "@@TS@@";
/// The snapshot's timestamps sit here; events are newer.
const BASE_SECS: i64 = 1_790_000_000;

/// One synthetic entity: its id and its JSON with placeholders for state and time.
pub struct Entity {
    /// `domain.object_N`.
    pub id: String,
    /// The state object as HA would send it, with `@@STATE@@` and `@@TS@@` marks.
    template: String,
    /// The state it starts in.
    pub state: String,
}

/// The house and a clock for the events that change it.
pub struct House {
    /// Every entity, in creation order.
    pub entities: Vec<Entity>,
    /// Microseconds since `BASE_SECS`, advanced by every event, so each is newer than the last.
    clock: i64,
    /// Seeded, so two runs send the same traffic.
    rng: StdRng,
}

/// HA's timestamp format (`2026-11-21T14:43:02.491458+00:00`).
fn ts(micros: i64) -> String {
    let t =
        chrono::DateTime::from_timestamp_micros(BASE_SECS * 1_000_000 + micros).unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// A plausible next state for an entity of this domain.
fn next_state(domain: &str, cur: &str, rng: &mut StdRng) -> String {
    match domain {
        "light" | "switch" | "fan" | "siren" | "input_boolean" | "binary_sensor" => {
            if cur == "on" { "off" } else { "on" }.to_string()
        }
        "lock" => if cur == "locked" {
            "unlocked"
        } else {
            "locked"
        }
        .to_string(),
        "cover" | "valve" => if cur == "open" { "closed" } else { "open" }.to_string(),
        _ => format!("{:.1}", rng.random_range(0.0..1000.0)),
    }
}

impl House {
    /// Builds `n` entities, cycling through the recorded shapes.
    pub fn new(n: usize) -> Self {
        let shapes: Vec<Value> = serde_json::from_str(SHAPES).expect("bundled fixture is JSON");
        let mut rng = StdRng::seed_from_u64(7);
        let mut entities = Vec::with_capacity(n);
        for i in 0..n {
            let mut v = shapes[i % shapes.len()].clone();
            let copy = i / shapes.len();
            let id = v["entity_id"].as_str().unwrap_or("sensor.x").to_string();
            let id = format!("{id}_{copy}");
            v["entity_id"] = Value::from(id.clone());
            if let Some(name) = v["attributes"]["friendly_name"].as_str() {
                v["attributes"]["friendly_name"] = Value::from(format!("{name} {copy}"));
            }
            let domain = id.split('.').next().unwrap_or("").to_string();
            let state = match domain.as_str() {
                "light" | "switch" => if rng.random_bool(0.5) { "on" } else { "off" }.to_string(),
                _ => v["state"].as_str().unwrap_or("unknown").to_string(),
            };
            v["state"] = Value::from(STATE_MARK);
            for k in ["last_changed", "last_reported", "last_updated"] {
                v[k] = Value::from(TS_MARK);
            }
            entities.push(Entity {
                id,
                template: v.to_string(),
                state,
            });
        }
        Self {
            entities,
            clock: 0,
            rng,
        }
    }

    fn render(e: &Entity, state: &str, at: &str) -> String {
        e.template
            .replacen(STATE_MARK, state, 1)
            .replace(TS_MARK, at)
    }

    /// The `get_states` result: a JSON array of every current state.
    pub fn snapshot_json(&self) -> String {
        let at = ts(self.clock);
        let mut out = String::with_capacity(self.entities.len() * 600);
        out.push('[');
        for (i, e) in self.entities.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Self::render(e, &e.state, &at));
        }
        out.push(']');
        out
    }

    /// Mean length of one state object, the payload size the Redis reference writes.
    pub fn mean_state_bytes(&self) -> usize {
        let at = ts(0);
        let total: usize = self
            .entities
            .iter()
            .map(|e| Self::render(e, &e.state, &at).len())
            .sum();
        total / self.entities.len().max(1)
    }

    /// One `state_changed` event message for entity `i` (old and new state, as HA sends).
    pub fn event(&mut self, i: usize, forced_state: Option<&str>) -> String {
        let old_at = ts(self.clock);
        self.clock += 1;
        let at = ts(self.clock);
        let e = &self.entities[i];
        let domain = e.id.split('.').next().unwrap_or("");
        let new = match forced_state {
            Some(s) => s.to_string(),
            None => next_state(domain, &e.state, &mut self.rng),
        };
        let old_json = Self::render(e, &e.state, &old_at);
        let new_json = Self::render(e, &new, &at);
        let msg = format!(
            r#"{{"id":2,"type":"event","event":{{"event_type":"state_changed","data":{{"entity_id":"{id}","old_state":{old_json},"new_state":{new_json}}},"origin":"LOCAL","time_fired":"{at}","context":{{"id":"01JBENCH000000000000000000","parent_id":null,"user_id":null}}}}}}"#,
            id = e.id
        );
        self.entities[i].state = new;
        msg
    }

    /// An event for a random entity.
    pub fn random_event(&mut self) -> String {
        let i = self.rng.random_range(0..self.entities.len());
        self.event(i, None)
    }

    /// `n` random events packed into coalesced frames of `per_frame` messages,
    /// as HA does when its send queue backs up.
    pub fn event_frames(&mut self, n: usize, per_frame: usize) -> Vec<String> {
        let mut frames = Vec::with_capacity(n / per_frame + 1);
        let mut left = n;
        while left > 0 {
            let k = left.min(per_frame);
            let mut f = String::with_capacity(k * 1200);
            f.push('[');
            for j in 0..k {
                if j > 0 {
                    f.push(',');
                }
                f.push_str(&self.random_event());
            }
            f.push(']');
            frames.push(f);
            left -= k;
        }
        frames
    }

    /// Entity `i`'s current state object.
    pub fn state_json(&self, i: usize) -> String {
        let e = &self.entities[i];
        Self::render(e, &e.state, &ts(self.clock))
    }

    /// `GET /api/v1/states/{id}` of every entity: the read load's paths.
    pub fn state_paths(&self) -> Vec<String> {
        self.entities
            .iter()
            .map(|e| format!("/api/v1/states/{}", e.id))
            .collect()
    }

    /// Ids of one domain.
    pub fn ids_of(&self, domain: &str) -> Vec<String> {
        let prefix = format!("{domain}.");
        self.entities
            .iter()
            .filter(|e| e.id.starts_with(&prefix))
            .map(|e| e.id.clone())
            .collect()
    }
}
