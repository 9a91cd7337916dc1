//! The hub: numbers events, keeps the recent ones for resumes, and fans them
//! out to subscribers, each through its own bounded queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::{Activity, Event, Kind};
use crate::fetchers::Runner;
use crate::prompt::Prompts;
use crate::state::{now_secs, Changed, Feed, Watcher, WriterStats};

/// Events one subscriber may fall behind by (a stalled reader, a slow link)
/// before it is sent `resync` and continues from now. Each waiting event is a
/// shared pointer: a stalled client holds this many at most, never copies.
pub const CLIENT_QUEUE: usize = 4096;
/// Events sent to subscribers as one message at most: a burst wakes each
/// subscriber once per this many events, not once per event (a hundred
/// subscribers woken per event cost more than the ingest itself).
pub const SEND_CHUNK: usize = 256;

/// Events sent together, in order.
pub type Chunk = Arc<[Arc<Event>]>;
/// How long recording goes on after the last subscriber leaves, so a client
/// that reconnects (a laptop waking, a proxy's idle cut) resumes with no gap.
pub const LINGER: Duration = Duration::from_secs(300);
/// How often the pump samples activity and ends a linger (reloads are pushed).
const TICK: Duration = Duration::from_secs(1);

/// The change stream's shared end; cloned into the router.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// Recent events and the recording state; the lock also orders a new
    /// subscriber's starting point against the events being sent.
    recent: Mutex<Recent>,
    /// Live fan-out: each subscriber's receiver is its bounded queue, and a
    /// send never waits for any of them.
    tx: broadcast::Sender<Chunk>,
    /// Where state changes come from.
    feed: Feed,
    /// Wakes the pump when the first subscriber starts a recording.
    started: Notify,
    /// Subscribers connected now.
    subscribers: AtomicUsize,
    /// Times a subscriber overflowed its queue.
    overflows: AtomicU64,
    /// Cancelled when the pump stops (shutdown): every stream ends with it.
    closing: CancellationToken,
    /// Events per second, for the status view.
    activity: Mutex<Activity>,
}

struct Recent {
    /// Oldest first, at most `capacity`.
    events: VecDeque<Arc<Event>>,
    /// `EVENTS_BUFFER`.
    capacity: usize,
    /// The id the next event gets. Starts at the start time in microseconds,
    /// so ids keep growing across restarts and an old id never matches.
    next_id: u64,
    /// The first id of the current recording: a resume from before it would
    /// miss what happened while nothing was recorded.
    since: u64,
    /// Whether events are being recorded.
    recording: bool,
    /// A new feed watcher for the pump, made when a recording starts.
    pending: Option<Watcher>,
    /// When the last subscriber left.
    idle_since: Option<Instant>,
}

/// A subscriber fell about [`CLIENT_QUEUE`] events behind.
#[derive(Debug)]
pub struct Lagged;

/// The stream's figures, for the status view.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamStats {
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Times a subscriber overflowed its queue and was sent `resync`.
    pub overflows: u64,
    /// Events kept for resumes.
    pub buffered: usize,
    /// The last event's id (as text: ids exceed JavaScript's exact integers).
    pub last_id: String,
}

impl Hub {
    /// A hub keeping `capacity` events for resumes; it records nothing until
    /// [`spawn`](Self::spawn)ed and subscribed to.
    pub fn new(feed: Feed, capacity: usize) -> Self {
        let start = (now_secs() * 1e6) as u64;
        Self {
            inner: Arc::new(Inner {
                recent: Mutex::new(Recent {
                    events: VecDeque::new(),
                    capacity: capacity.max(1),
                    next_id: start,
                    since: start,
                    recording: false,
                    pending: None,
                    idle_since: None,
                }),
                tx: broadcast::channel(CLIENT_QUEUE / SEND_CHUNK).0,
                feed,
                started: Notify::new(),
                subscribers: AtomicUsize::new(0),
                overflows: AtomicU64::new(0),
                closing: CancellationToken::new(),
                activity: Mutex::new(Activity::default()),
            }),
        }
    }

    /// A new subscriber. `last_event_id` (the `Last-Event-ID` header) resumes
    /// after that event when it is still buffered; otherwise the subscription
    /// says `expired` and the client must re-read everything.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let mut r = self.inner.recent.lock();
        if !r.recording {
            r.recording = true;
            r.events.clear();
            // Skip one id: nothing from before this recording resumes.
            r.next_id += 1;
            r.since = r.next_id;
            r.pending = Some(self.inner.feed.watch());
            self.inner.started.notify_one();
        }
        r.idle_since = None;
        self.inner.subscribers.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("events_stream_subscribers").increment(1.0);
        let rx = self.inner.tx.subscribe();
        let mut backlog = Vec::new();
        let mut expired = None;
        if let Some(last) = last_event_id {
            let floor = r.events.front().map_or(r.next_id, |e| e.id).max(r.since);
            match last.trim().parse::<u64>() {
                Ok(l) if l.saturating_add(1) >= floor && l < r.next_id => {
                    backlog.extend(r.events.iter().filter(|e| e.id > l).cloned());
                }
                _ => expired = Some(r.next_id - 1),
            }
        }
        drop(r);
        Subscription {
            hub: self.clone(),
            rx,
            backlog,
            expired,
        }
    }

    /// Numbers, keeps and sends events; nothing while not recording.
    fn publish(&self, kinds: impl IntoIterator<Item = Kind>) {
        let mut r = self.inner.recent.lock();
        if !r.recording {
            return;
        }
        let mut chunk = Vec::new();
        for kind in kinds {
            let e = Arc::new(Event::new(r.next_id, kind));
            r.next_id += 1;
            if r.events.len() == r.capacity {
                r.events.pop_front();
            }
            r.events.push_back(e.clone());
            chunk.push(e);
            if chunk.len() == SEND_CHUNK {
                // No receiver is fine: nobody is connected right now.
                let _ = self.inner.tx.send(std::mem::take(&mut chunk).into());
            }
        }
        if !chunk.is_empty() {
            let _ = self.inner.tx.send(chunk.into());
        }
    }

    /// Ends the recording once nobody has subscribed for [`LINGER`].
    fn linger_over(&self) -> bool {
        let mut r = self.inner.recent.lock();
        let over = r.recording
            && self.inner.subscribers.load(Ordering::Relaxed) == 0
            && r.idle_since.is_some_and(|t| t.elapsed() >= LINGER);
        if over {
            r.recording = false;
            r.events = VecDeque::new();
            r.pending = None;
        }
        over
    }

    /// Cancelled at shutdown, so open streams end and their connections close.
    pub fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.inner.subscribers.load(Ordering::Relaxed)
    }

    /// The stream's figures.
    pub fn stats(&self) -> StreamStats {
        let r = self.inner.recent.lock();
        StreamStats {
            subscribers: self.inner.subscribers.load(Ordering::Relaxed),
            overflows: self.inner.overflows.load(Ordering::Relaxed),
            buffered: r.events.len(),
            last_id: (r.next_id - 1).to_string(),
        }
    }

    /// Events per second, oldest first.
    pub fn events_per_second(&self) -> Vec<u32> {
        self.inner.activity.lock().per_second()
    }

    /// Starts the pump: state changes from the feed, fetcher and template
    /// reloads, and a sample of the writer's counters every second.
    pub fn spawn(
        &self,
        stats: Arc<WriterStats>,
        fetchers: Runner,
        prompts: Arc<Prompts>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let mut fetcher_revision = fetchers.watch();
        let mut prompt_revision = prompts.watch();
        let revisions = (
            *fetcher_revision.borrow_and_update(),
            *prompt_revision.borrow_and_update(),
        );
        let pump = Pump {
            hub: self.clone(),
            stats,
            revisions,
            fetcher_revision,
            prompt_revision,
            fetchers,
            prompts,
        };
        tokio::spawn(pump.run(shutdown))
    }
}

/// One subscriber's end.
pub struct Subscription {
    /// For its counters and a restart.
    hub: Hub,
    /// Its bounded queue of live events.
    rx: broadcast::Receiver<Chunk>,
    /// Buffered events to send first (a resume).
    pub backlog: Vec<Arc<Event>>,
    /// Set when a resume came too late: the id to give the `resync` sent first.
    pub expired: Option<u64>,
}

impl Subscription {
    /// The next live event.
    pub async fn recv(&mut self) -> Result<Chunk, Lagged> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Ok(e),
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(Lagged),
                // The hub outlives every subscription it hands out.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }

    /// An event already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Result<Chunk, Lagged>> {
        match self.rx.try_recv() {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Err(Lagged)),
            Err(_) => None,
        }
    }

    /// After [`Lagged`]: drops what is queued and continues from now. Returns
    /// the id to give the `resync` event, so a later resume starts after it.
    pub fn restart(&mut self) -> u64 {
        let inner = &self.hub.inner;
        inner.overflows.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("events_stream_overflows_total").increment(1);
        let r = inner.recent.lock();
        self.rx = inner.tx.subscribe();
        r.next_id - 1
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let inner = &self.hub.inner;
        metrics::gauge!("events_stream_subscribers").decrement(1.0);
        let mut r = inner.recent.lock();
        if inner.subscribers.fetch_sub(1, Ordering::Relaxed) == 1 {
            r.idle_since = Some(Instant::now());
        }
    }
}

/// The task that fills the hub.
struct Pump {
    hub: Hub,
    /// The writer's counters, sampled for activity.
    stats: Arc<WriterStats>,
    /// For reload events: the registry's revision and its definitions.
    fetchers: Runner,
    /// For reload events: the templates' revision.
    prompts: Arc<Prompts>,
    /// The revisions last seen.
    revisions: (u64, u64),
    /// Wakes the pump when the registry swaps in a new set.
    fetcher_revision: watch::Receiver<u64>,
    /// Wakes the pump when the templates change.
    prompt_revision: watch::Receiver<u64>,
}

impl Pump {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut watcher: Option<Watcher> = None;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let _close = self.hub.inner.closing.clone().drop_guard();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.hub.inner.started.notified() => {
                    if let Some(w) = self.hub.inner.recent.lock().pending.take() {
                        watcher = Some(w);
                    }
                }
                c = next(&mut watcher) => match c {
                    Some(Changed::Entities(us)) => self.hub.publish(us.iter().map(|u| match &u.new {
                        Some(_) => Kind::State(u.clone()),
                        None => Kind::Removed(u.entity_id.clone()),
                    })),
                    Some(Changed::Everything) => self.hub.publish([Kind::Resync("snapshot")]),
                    None => watcher = None,
                },
                // Both senders live as long as the engine and templates this
                // pump holds, so `changed` fails only at shutdown.
                Ok(()) = self.fetcher_revision.changed() => self.reloads(),
                Ok(()) = self.prompt_revision.changed() => self.reloads(),
                _ = tick.tick() => {
                    self.sample();
                    if self.hub.linger_over() {
                        watcher = None;
                    }
                }
            }
        }
    }

    fn sample(&self) {
        let events = self.stats.events.load(Ordering::Relaxed);
        self.hub.inner.activity.lock().sample(events);
    }

    /// A `reload` event when the fetchers or the templates changed.
    fn reloads(&mut self) {
        let loaded = self.fetchers.loaded();
        let now = (
            *self.fetcher_revision.borrow_and_update(),
            *self.prompt_revision.borrow_and_update(),
        );
        if now == self.revisions {
            return;
        }
        self.revisions = now;
        self.hub.publish([Kind::Reload {
            fetchers: loaded.defs.len(),
            templates: self.prompts.list().len(),
            problems: loaded.problems.clone(),
        }]);
    }
}

/// The watcher's next change; never, while there is none.
async fn next(w: &mut Option<Watcher>) -> Option<Changed> {
    match w {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}
