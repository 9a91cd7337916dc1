//! What the HTTP doors (REST, `/mcp`, the console) share, so none of them
//! reaches into another: the one error contract, `{"error": {"code",
//! "message"}}`, with a 500's details logged and never sent.

mod error;

pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail, RETRY_AFTER_SECS};

/// The largest answer a door sends (a fetcher route's JSON, a tool's reply,
/// a resource); a bigger one is refused before it is fully built, rather
/// than buffered whatever its size.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
