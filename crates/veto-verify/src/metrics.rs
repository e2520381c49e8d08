//! The verifier's metrics, through the `metrics` facade: the service installs its own recorder
//! (e.g. `metrics-exporter-prometheus`) and these appear in its scrape. Every name starts with
//! `veto_verify_` and carries the tenant as a label.
//!
//! The names and their meaning are listed in the crate documentation (lib.rs).

pub const CHECKS: &str = "veto_verify_checks_total";
pub const RECONNECTS: &str = "veto_verify_stream_reconnects_total";
pub const JWKS_FETCHES: &str = "veto_verify_jwks_fetches_total";
pub const STATE_AGE: &str = "veto_verify_state_age_seconds";
pub const REVOCATIONS: &str = "veto_verify_revocations";
pub const CONNECTED: &str = "veto_verify_stream_connected";

// The tenant label is an `Arc<str>` the verifier keeps: a check counts itself without
// allocating a copy of the tenant id.
use std::sync::Arc;

pub fn check(tenant: &Arc<str>, outcome: &'static str) {
    metrics::counter!(CHECKS, "tenant" => Arc::clone(tenant), "outcome" => outcome).increment(1);
}

pub fn reconnect(tenant: &Arc<str>) {
    metrics::counter!(RECONNECTS, "tenant" => Arc::clone(tenant)).increment(1);
}

pub fn jwks_fetch(tenant: &Arc<str>, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::counter!(JWKS_FETCHES, "tenant" => Arc::clone(tenant), "result" => result)
        .increment(1);
}

pub fn state(tenant: &Arc<str>, age_seconds: f64, revocations: usize, connected: bool) {
    metrics::gauge!(STATE_AGE, "tenant" => Arc::clone(tenant)).set(age_seconds);
    metrics::gauge!(REVOCATIONS, "tenant" => Arc::clone(tenant)).set(revocations as f64);
    metrics::gauge!(CONNECTED, "tenant" => Arc::clone(tenant)).set(f64::from(u8::from(connected)));
}
