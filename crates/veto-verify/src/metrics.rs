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

use std::sync::atomic::{AtomicU64, Ordering};

use veto_core::Reason;

/// The outcomes a check is counted under, in slot order (see [`slot`]).
const OUTCOMES: [&str; 17] = [
    "active",
    "hmac_unsupported",
    "malformed",
    "bad_signature",
    "unknown_key",
    "key_revoked",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "revoked",
    "suspended",
    "subject_revoked",
    "tenant_revoked",
    "tenant_suspended",
    "session_revoked",
    "index_stale",
];

/// The slot of an outcome in [`OUTCOMES`]; `None` is `active`, `Some(None)` an HMAC token. An
/// exhaustive match, so that a new reason does not compile until it has a slot.
fn slot(outcome: Option<Option<Reason>>) -> usize {
    match outcome {
        None => 0,
        Some(None) => 1,
        Some(Some(r)) => match r {
            Reason::Malformed | Reason::WrongType => 2,
            Reason::BadSignature => 3,
            Reason::UnknownKey => 4,
            Reason::KeyRevoked => 5,
            Reason::Expired => 6,
            Reason::NotYetValid => 7,
            Reason::WrongIssuer => 8,
            Reason::WrongAudience => 9,
            Reason::Revoked => 10,
            Reason::Suspended => 11,
            Reason::SubjectRevoked => 12,
            Reason::TenantRevoked => 13,
            Reason::TenantSuspended => 14,
            Reason::SessionRevoked => 15,
            Reason::IndexStale => 16,
        },
    }
}

/// Checks by outcome, counted in the verifier and handed to the facade once a second.
///
/// A check is the hot path of every request of the service. Through the facade each one built a
/// labelled key (an allocation and a clone of the tenant label) and, with a real recorder, looked
/// it up in the recorder's registry: a tenth of a check's own cost and a shared lock on every
/// request. Here a check is one relaxed `fetch_add`; [`CheckCounts::publish`] adds what
/// accumulated since its last call to the recorder installed at that time (so a recorder
/// installed after the verifier started still sees every check), at the price of the counter
/// lagging by up to a second.
#[derive(Default)]
pub struct CheckCounts {
    counts: [AtomicU64; OUTCOMES.len()],
    /// What `publish` handed over so far; only its caller touches it.
    published: std::sync::Mutex<[u64; OUTCOMES.len()]>,
}

impl CheckCounts {
    /// `outcome`: `None` when active, else the reason (`None` inside for an HMAC token).
    pub fn count(&self, outcome: Option<Option<Reason>>) {
        if let Some(c) = self.counts.get(slot(outcome)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds the checks counted since the last call to the facade's counters.
    pub fn publish(&self, tenant: &Arc<str>) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for ((count, done), outcome) in self.counts.iter().zip(published.iter_mut()).zip(OUTCOMES) {
            let now = count.load(Ordering::Relaxed);
            if now > *done {
                metrics::counter!(CHECKS, "tenant" => Arc::clone(tenant), "outcome" => outcome)
                    .increment(now - *done);
                *done = now;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each slot is counted under the code the verifier answers with.
    #[test]
    fn slots_carry_the_codes_of_their_reasons() {
        let reasons = [
            Reason::Malformed,
            Reason::WrongType,
            Reason::BadSignature,
            Reason::UnknownKey,
            Reason::KeyRevoked,
            Reason::Expired,
            Reason::NotYetValid,
            Reason::WrongIssuer,
            Reason::WrongAudience,
            Reason::Revoked,
            Reason::Suspended,
            Reason::SubjectRevoked,
            Reason::TenantRevoked,
            Reason::TenantSuspended,
            Reason::SessionRevoked,
            Reason::IndexStale,
        ];
        for r in reasons {
            assert_eq!(OUTCOMES[slot(Some(Some(r)))], r.as_str(), "{r:?}");
        }
        assert_eq!(OUTCOMES[slot(None)], "active");
        assert_eq!(OUTCOMES[slot(Some(None))], "hmac_unsupported");
    }
}
