//! The change stream behind `GET /api/v1/events` (Server-Sent Events) and the
//! activity the console's status view draws.
//!
//! - [`event`]: one numbered event and its SSE text, rendered once and shared.
//! - [`hub`]: the recent-events buffer that `Last-Event-ID` resumes from, the
//!   fan-out to subscribers, and the pump that fills both from the state
//!   feed and the fetcher and template reloads.
//! - [`activity`]: events per second over the last minutes.
//!
//! Nothing is recorded while nobody subscribes: the first subscriber starts
//! the recording, and it stops [`hub::LINGER`] after the last one leaves, so
//! ingest with no stream client pays nothing for it.

mod activity;
mod event;
mod hub;

pub use activity::{Activity, ACTIVITY_SECONDS};
pub use event::{frame, Event, Kind};
pub use hub::{Chunk, Hub, Lagged, StreamStats, Subscription, CLIENT_QUEUE, LINGER, SEND_CHUNK};
