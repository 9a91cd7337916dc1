//! One client's live side: the resources it subscribed to and a task that
//! tells it when they change, and when the tool or prompt lists change.
//!
//! The task watches the writer's change feed, so an update goes out as soon
//! as a change reaches the cache; each resource is told at most once per
//! [`MIN_GAP`] (a light dimming sends dozens of events a second), and a
//! fetcher's resource only when its result really changed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::Peer;
use rmcp::RoleServer;
use serde_json::Map;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::resources::Target;
use super::tools;
use crate::engine::Engine;
use crate::fetchers::FetchRequest;
use crate::state::Changed;

/// The least time between two updates of one resource: at most four a second.
pub const MIN_GAP: Duration = Duration::from_millis(250);
/// The most often a subscribed fetcher whose data changes unseen (`sql`) is
/// run again to see whether it changed; its TTL, when longer, sets the pace.
pub const UNSEEN_POLL: Duration = Duration::from_secs(2);
/// Resources one session may subscribe to: each is looked at on every change.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// The fetcher registry's and the prompt set's revisions, as one task
/// forwards them: sessions wait on this, woken only when a list changed
/// (20,000 idle sessions each ticking every 250 ms took 42 % of a core).
pub type Lists = watch::Receiver<(u64, u64)>;

/// Starts the one task that publishes [`Lists`], until `stop`: it waits on
/// the registry's and the templates' own revisions, so it never polls.
pub fn lists(app: &Engine, stop: CancellationToken) -> Lists {
    let (mut fetchers, mut prompts) = app.revisions();
    let read = |f: &mut watch::Receiver<u64>, p: &mut watch::Receiver<u64>| {
        (*f.borrow_and_update(), *p.borrow_and_update())
    };
    let (tx, rx) = watch::channel(read(&mut fetchers, &mut prompts));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tx.closed() => break,
                r = fetchers.changed() => if r.is_err() { break },
                r = prompts.changed() => if r.is_err() { break },
            }
            let now = read(&mut fetchers, &mut prompts);
            tx.send_if_modified(|seen| std::mem::replace(seen, now) != now);
        }
    });
    rx
}

/// A session's subscriptions and its watcher.
pub struct Session {
    /// Subscribed URIs, shared with the watcher.
    subs: Arc<Mutex<HashSet<String>>>,
    /// Wakes the watcher when `subs` changes (it reads the change feed only
    /// while something is subscribed).
    changed: Arc<Notify>,
    /// The lists' revisions, from the one task that reads them.
    lists: Lists,
    /// Cancels the watcher when the session (its handler) is dropped.
    stop: Mutex<Option<DropGuard>>,
}

impl Session {
    pub fn new(lists: Lists) -> Self {
        Self {
            subs: Arc::default(),
            changed: Arc::default(),
            lists,
            stop: Mutex::default(),
        }
    }

    /// Starts the watcher once, telling `peer`.
    pub fn start(&self, app: &Engine, peer: Peer<RoleServer>) {
        let mut stop = self.stop.lock();
        if stop.is_some() {
            return;
        }
        let token = CancellationToken::new();
        *stop = Some(token.clone().drop_guard());
        let watcher = Watcher {
            app: app.clone(),
            peer,
            subs: self.subs.clone(),
            changed: self.changed.clone(),
            lists: self.lists.clone(),
        };
        tokio::spawn(watcher.run(token));
    }

    /// Subscribes to `uri`; `false` when the session holds [`MAX_SUBSCRIPTIONS`] already.
    pub fn subscribe(&self, uri: String) -> bool {
        let mut subs = self.subs.lock();
        if subs.len() >= MAX_SUBSCRIPTIONS && !subs.contains(&uri) {
            return false;
        }
        subs.insert(uri);
        drop(subs);
        self.changed.notify_one();
        true
    }

    pub fn unsubscribe(&self, uri: &str) {
        self.subs.lock().remove(uri);
        self.changed.notify_one();
    }
}

/// What the watcher keeps between wake-ups.
#[derive(Default)]
struct Pending {
    /// Resources to tell about, and when (no sooner than [`MIN_GAP`] after the last).
    due: HashMap<String, Instant>,
    /// When each resource was last told.
    sent: HashMap<String, Instant>,
    /// A hash of each fetcher resource's last result, so an unchanged one is not sent.
    results: HashMap<String, u64>,
    /// When each polled fetcher resource (see [`UNSEEN_POLL`]) was last looked at.
    polled: HashMap<String, Instant>,
}

/// One session's watcher: what it needs to tell its client.
struct Watcher {
    app: Engine,
    peer: Peer<RoleServer>,
    subs: Arc<Mutex<HashSet<String>>>,
    changed: Arc<Notify>,
    lists: Lists,
}

impl Watcher {
    /// Until the client goes away or the session ends. An idle session (no
    /// subscriptions) waits on the lists alone: no timer, no change feed.
    async fn run(mut self, stop: CancellationToken) {
        let app = self.app.clone();
        // Both lists change only with their revision: compared first, so an idle
        // session hashes nothing. Each is news only when what this session may
        // see of it changed: a scope hears nothing of what it cannot use.
        let (mut revision, mut prompts_revision) = *self.lists.borrow_and_update();
        let mut tools_hash = hash_of(&tools::list(&app));
        let mut prompts_hash = prompts_seen(&app);
        let mut feed: Option<crate::state::Watcher> = None;
        let mut p = Pending::default();
        loop {
            let (any, polled) = {
                let subs = self.subs.lock();
                (!subs.is_empty(), p.next_poll(&app, &subs))
            };
            if any != feed.is_some() {
                feed = any.then(|| app.states().watch());
            }
            let next = p.due.values().min().copied();
            let wake = match (next, polled) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.changed.notified() => {
                    let subs = self.subs.lock().clone();
                    p.follow(&app, &subs).await;
                }
                c = async { feed.as_mut().expect("guarded").next().await }, if feed.is_some() => match c {
                    Some(c) => p.mark(&app, &self.subs.lock(), &c),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    p.poll(&app, &self.subs.lock());
                    if !p.send_due(&app, &self.peer).await {
                        break;
                    }
                }
                r = self.lists.changed() => {
                    if r.is_err() {
                        break;
                    }
                    let (r, pr) = *self.lists.borrow_and_update();
                    if r != revision {
                        revision = r;
                        let t = hash_of(&tools::list(&app));
                        if t != tools_hash {
                            tools_hash = t;
                            if self.peer.notify_tool_list_changed().await.is_err() {
                                break;
                            }
                        }
                    }
                    if pr != prompts_revision {
                        prompts_revision = pr;
                        let h = prompts_seen(&app);
                        if h != prompts_hash {
                            prompts_hash = h;
                            if self.peer.notify_prompt_list_changed().await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Pending {
    /// Forgets what it kept for resources no longer subscribed, and takes
    /// the first result of each newly subscribed fetcher as its baseline, so
    /// the first change reported is one of its result: a change the caller
    /// cannot see (outside its scope) is never news.
    async fn follow(&mut self, app: &Engine, subs: &HashSet<String>) {
        self.due.retain(|u, _| subs.contains(u));
        self.sent.retain(|u, _| subs.contains(u));
        self.polled.retain(|u, _| subs.contains(u));
        self.results.retain(|u, _| subs.contains(u));
        for uri in subs {
            if let Ok(Target::Fetcher(name)) = Target::parse(uri) {
                if !self.results.contains_key(uri) {
                    self.result_changed(app, uri, name).await;
                }
            }
        }
    }

    /// Schedules every subscribed resource `c` may have changed.
    fn mark(&mut self, app: &Engine, subs: &HashSet<String>, c: &Changed) {
        let now = Instant::now();
        for uri in subs {
            let touched = match Target::parse(uri) {
                Ok(Target::Entity(id)) => c.touches(&id),
                // Through a scope, a change of an entity it does not see
                // touches nothing it follows.
                Ok(Target::Domain(d)) => c.touches_domain_where(&d, &|id| app.states().sees(id)),
                // Which entities a fetcher reads is known only by running it;
                // one that reads no states is polled instead.
                Ok(Target::Fetcher(name)) => app
                    .fetchers()
                    .get(&name)
                    .is_none_or(|d| d.source.follows_states()),
                Err(_) => false,
            };
            if touched && !self.due.contains_key(uri) {
                let at = self.sent.get(uri).map_or(now, |s| (*s + MIN_GAP).max(now));
                self.due.insert(uri.clone(), at);
            }
        }
    }

    /// Schedules the subscribed fetchers whose data changes unseen, each once
    /// per its TTL (at least [`UNSEEN_POLL`]); an unchanged result is not sent.
    fn poll(&mut self, app: &Engine, subs: &HashSet<String>) {
        let now = Instant::now();
        for uri in subs {
            let Ok(Target::Fetcher(name)) = Target::parse(uri) else {
                continue;
            };
            let Some(def) = app.fetcher(&name) else {
                continue;
            };
            if def.source.follows_states() || self.due.contains_key(uri) {
                continue;
            }
            // The first look is at once: against the baseline taken when
            // subscribed (see `follow`), it is news only if that moved since.
            let due = self
                .polled
                .get(uri)
                .is_none_or(|last| now.duration_since(*last) >= def.ttl.max(UNSEEN_POLL));
            if due {
                self.polled.insert(uri.clone(), now);
                self.due.insert(uri.clone(), now);
            }
        }
    }

    /// When the next polled fetcher resource is due a look, if any is subscribed.
    fn next_poll(&self, app: &Engine, subs: &HashSet<String>) -> Option<Instant> {
        let now = Instant::now();
        subs.iter()
            .filter(|uri| !self.due.contains_key(*uri))
            .filter_map(|uri| {
                let Ok(Target::Fetcher(name)) = Target::parse(uri) else {
                    return None;
                };
                let def = app.fetcher(&name)?;
                if def.source.follows_states() {
                    return None;
                }
                Some(
                    self.polled
                        .get(uri)
                        .map_or(now, |last| *last + def.ttl.max(UNSEEN_POLL)),
                )
            })
            .min()
    }

    /// Tells the client of every resource now due; `false` when it is gone.
    async fn send_due(&mut self, app: &Engine, peer: &Peer<RoleServer>) -> bool {
        let now = Instant::now();
        let ready: Vec<String> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(u, _)| u.clone())
            .collect();
        for uri in ready {
            self.due.remove(&uri);
            if let Ok(Target::Fetcher(name)) = Target::parse(&uri) {
                if !self.result_changed(app, &uri, name).await {
                    continue;
                }
            }
            self.sent.insert(uri.clone(), now);
            let note = ResourceUpdatedNotificationParam::new(uri);
            if peer.notify_resource_updated(note).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Reruns a fetcher (from its cache when nothing it read changed) and
    /// says whether its result differs from the last one seen.
    async fn result_changed(&mut self, app: &Engine, uri: &str, name: String) -> bool {
        let out = app
            .fetchers()
            .run(FetchRequest {
                name,
                params: Map::new(),
            })
            .await;
        let h = match &out.result {
            Ok(v) => hash_of(&**v),
            Err(e) => hash_of(e),
        };
        // The first result is the baseline (taken when subscribed).
        self.results
            .insert(uri.to_string(), h)
            .is_some_and(|before| before != h)
    }
}

/// A hash of the templates `app` may use, bodies and all: a changed body is
/// news to a client that listed it.
fn prompts_seen(app: &Engine) -> u64 {
    hash_of(&app.prompt_list())
}

/// A hash of a value's JSON form.
fn hash_of<T: serde::Serialize>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_string(v).unwrap_or_default().hash(&mut h);
    h.finish()
}
