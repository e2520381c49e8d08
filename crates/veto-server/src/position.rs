//! Positions: read-your-writes across nodes (docs/stream.md, "Positions").
//!
//! A write's answer carries `Veto-Position`, the newest change-log position this node knows
//! after it; a later verify or session validation on any node may name it as `min_position` and
//! is then answered only from a state that holds every change up to it.
//!
//! The position of a write is recorded where its changes reach memory, the mirror, rather than
//! by every handler: the middleware below runs the request inside `mirror::recording_writes`,
//! which notes the newest cursor the mirror applied for it. A request that appended nothing (a
//! repeat, a verify) gets the node's feed position: everything this node has read. A repeat that
//! found a row another node wrote moments ago may precede that row's position; finding out would
//! take a database query per answer, which the check paths never make.
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use veto_store::FeedCursor;

use crate::error::ApiError;
use crate::feed::Feed;

/// The response header of every successful write.
pub const HEADER: HeaderName = HeaderName::from_static("veto-position");

/// Middleware: `Veto-Position` on every successful answer to a request that may write, and a
/// wake-up for the feed follower when the write appended changes and someone is waiting for
/// them (a stream subscriber, a `min_position` on this node), so that they see it now rather
/// than at the next poll.
pub async fn stamp(State(feed): State<Arc<Feed>>, req: Request, next: Next) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !writes {
        return next.run(req).await;
    }
    let (mut response, written) = crate::mirror::recording_writes(next.run(req)).await;
    if written.is_some() {
        feed.wake_if_followed();
    }
    if response.status().is_success() {
        let position = written.map_or(feed.cursor(), |w| w.max(feed.cursor()));
        if let Ok(v) = HeaderValue::from_str(&position.to_string()) {
            response.headers_mut().insert(HEADER, v);
        }
    }
    response
}

/// A `min_position` from a request body: a position veto wrote, or the 400 that says so.
pub fn parse(field: &str, text: &str) -> Result<FeedCursor, ApiError> {
    text.parse().map_err(|_| {
        ApiError::field(
            field,
            "not a position veto wrote: pass the value of a Veto-Position header (or of a stream event's id) unchanged",
        )
    })
}

/// Waits (bounded) until this node has applied every change up to `min`, when given.
pub async fn reach(feed: &Feed, min: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = min else {
        return Ok(());
    };
    let min = parse("min_position", text)?;
    if feed.wait_for(min, MIN_POSITION_WAIT).await {
        Ok(())
    } else {
        Err(ApiError::NotCaughtUp(format!(
            "this node has not yet applied every change up to position {min} (it is at {}); retry, or ask another node",
            feed.cursor()
        )))
    }
}

/// How long a request with `min_position` waits for the feed (the contract's bound).
pub const MIN_POSITION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
