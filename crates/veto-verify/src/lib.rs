//! Verify veto's access tokens inside your own service, for one tenant, with no call to veto
//! per request.
//!
//! A [`Verifier`] keeps in memory what it needs to judge a token exactly as veto would:
//!
//! - the tenant's **JWKS** (`GET {base}/t/{tenant}/.well-known/jwks.json`), fetched at start,
//!   every few minutes, when veto's stream says a key was created or retired, and for a token
//!   whose `kid` it does not know (rate-limited: at most once per `jwks_min_interval`, 1 s by
//!   default). Retired keys keep verifying while they are in the JWKS;
//! - the tenant's **revocation state** (revoked and suspended jtis, subject and tenant cutoffs,
//!   suspension, revoked keys, sessions, refresh families), from veto's revocation stream
//!   (`GET {base}/v1/tenants/{tenant}/revocations/stream`, Server-Sent Events, format in the
//!   repository's `docs/stream.md`). It reconnects by itself, with capped exponential backoff
//!   and jitter, resuming after the last change it applied.
//!
//! The check is veto's own (`veto_core::check::Checker`): signature, header rules, claims,
//! then the revocation state, in the same order and with the same reasons.
//!
//! **It fails closed.** The state is as old as the time since the last heartbeat or change
//! plus the age veto reported for its own state; past the bound (`max_staleness`, 5 s by
//! default), and before the first complete snapshot, every token whose signature and claims
//! hold is refused as `index_stale`, as a veto node refuses it.
//!
//! **Asymmetric algorithms only** (RS256/384/512, PS256, ES256/384, EdDSA). An HMAC secret
//! never leaves veto, so a token signed `HS256`/`HS384`/`HS512` is refused with
//! [`VerifyError::Symmetric`]: such tokens can only be checked by veto itself, through its
//! introspection endpoint (`POST /t/{tenant}/oauth2/introspect`) or
//! `POST /v1/tenants/{tenant}/tokens/verify`.
//!
//! The API key the verifier is given needs the scope `tokens:verify` (it reads the stream).
//! The issuer is read from veto's RFC 8414 metadata unless [`Config::issuer`] sets it.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use veto_verify::{Config, Verifier, VerifyError};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::start(
//!     Config::new("http://veto.internal:8080", "acme", "vk_...")
//!         .max_staleness(Duration::from_secs(5)),
//! )?;
//! verifier.ready(Duration::from_secs(10)).await;
//!
//! # let token = "";
//! match verifier.verify(token, Some("orders-api")).await {
//!     Ok(claims) => println!("hello {:?}", claims.sub),
//!     Err(VerifyError::Rejected(reason)) => println!("refused: {}", reason.as_str()),
//!     Err(e @ VerifyError::Symmetric(_)) => println!("{e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! In an axum (or any tower) service, [`VerifyLayer`] answers `401` with the RFC 6750 challenge
//! for a missing or refused token and puts the verified token in the request's extensions:
//!
//! ```no_run
//! use axum::{Extension, Router, routing::get};
//! use veto_verify::{Config, VerifiedToken, Verifier, VerifyLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::start(Config::new("http://veto.internal:8080", "acme", "vk_..."))?;
//! let app: Router = Router::new()
//!     .route("/me", get(|Extension(t): Extension<VerifiedToken>| async move {
//!         t.sub.map(String::from).unwrap_or_default()
//!     }))
//!     .layer(VerifyLayer::new(verifier).audience("orders-api"));
//! # Ok(()) }
//! ```
//!
//! # Freshness
//!
//! [`Verifier::freshness`] tells the stream position the state stands at, its age, whether the
//! stream is connected and whether checks may answer active; [`Verifier::ready`] waits for the
//! first current state.
//!
//! # Metrics
//!
//! Through the `metrics` facade: install any recorder (e.g. `metrics-exporter-prometheus`) and
//! they appear in the service's own scrape. Every one carries the `tenant` label. Checks are
//! counted inside the verifier (one atomic add per check, no lookup in the recorder on the
//! request path) and handed to the recorder once a second, and when the verifier is dropped, so
//! `veto_verify_checks_total` lags by up to a second.
//!
//! | name | kind | more labels | meaning |
//! |---|---|---|---|
//! | `veto_verify_checks_total` | counter | `outcome` | checks by outcome: `active`, a veto reason (`revoked`, `index_stale`, ...) or `hmac_unsupported` |
//! | `veto_verify_stream_reconnects_total` | counter | | stream connections that ended and were opened again |
//! | `veto_verify_jwks_fetches_total` | counter | `result` (`ok`, `error`) | JWKS fetches |
//! | `veto_verify_state_age_seconds` | gauge | | age of the revocation state (+Inf before the first snapshot) |
//! | `veto_verify_revocations` | gauge | | revoked or suspended jtis held |
//! | `veto_verify_stream_connected` | gauge | | 1 while the stream is connected |
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod config;
mod event;
mod keys;
mod layer;
mod metrics;
mod sse;
mod state;
mod verifier;

pub use config::Config;
pub use layer::{VerifyLayer, VerifyService};
pub use verifier::{Freshness, StartError, Verifier, VerifyError};
pub use veto_core::verify::VerifiedToken;
pub use veto_core::{Alg, Reason};
