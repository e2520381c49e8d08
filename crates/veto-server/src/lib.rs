//! veto's HTTP layer. Handlers are thin: `extract` turns requests into typed values (every
//! rejection a problem+json 4xx), `auth` identifies and authorises the caller, `service`
//! performs the operation against the store and the in-memory state, and `error` maps every
//! failure to RFC 9457 problem details in one place.
#![forbid(unsafe_code)]
// A panic on a request path is a 500 and a dropped connection: outside tests, failures are
// values. Where a panic is the right answer, an `#[allow]` says why.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod config;
pub mod conn;
pub mod documents;
pub mod error;
pub mod extract;
pub mod feed;
pub(crate) mod locks;
pub mod memory;
pub mod metrics;
pub mod mirror;
pub mod openapi;
pub mod position;
pub mod ratelimit;
pub mod redis;
pub mod routes;
pub mod service;
pub mod session_cache;
pub mod signing;
pub mod state;
pub mod status_lists;
pub mod stream;

pub use config::Config;
pub use state::AppState;

/// The whole HTTP application: the contract's routes and `/openapi.json`, which describes them.
pub fn app(state: AppState) -> axum::Router {
    let docs = axum::Router::new().route("/openapi.json", axum::routing::get(openapi::serve));
    routes::router(state, docs)
}
