//! The revocation ledger's record: one row per revoked jti, the durable source of truth.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revocation {
    pub jti: String,
    pub tenant: String,
    pub sub: Option<String>,
    /// When the revoked token would have expired anyway; the row is purged some time after.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    pub reason: Option<String>,
    pub revoked_by: String,
    pub metadata: serde_json::Value,
    /// Set for a temporary suspension that lifts by itself at that time.
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    pub status: RevocationStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationStatus {
    Revoked,
    Suspended,
}

impl RevocationStatus {
    pub fn of(until: Option<OffsetDateTime>) -> Self {
        if until.is_some() {
            RevocationStatus::Suspended
        } else {
            RevocationStatus::Revoked
        }
    }
}

/// The classes a revocation's reason is counted under where everyone may read the count
/// (`/metrics`): a closed vocabulary, so that free text chosen by a tenant never becomes a label
/// value (unbounded series; one tenant's words shown to anyone). A reason falls in a class when
/// its first word, lowercased, is the class's name (`"compromised: laptop stolen"` is
/// `compromised`); any other reason is `other`, none at all is `unspecified`.
pub const REASON_CLASSES: [&str; 8] = [
    "logout",
    "compromised",
    "password_change",
    "admin",
    "policy",
    "fraud",
    "other",
    "unspecified",
];

/// The class of a reason (see [`REASON_CLASSES`]).
pub fn reason_class(reason: Option<&str>) -> &'static str {
    let Some(reason) = reason else {
        return "unspecified";
    };
    let first = reason
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .find(|w| !w.is_empty())
        .unwrap_or("");
    REASON_CLASSES[..6]
        .iter()
        .find(|class| class.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("other")
}

/// Filters for listing revocations (all optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationFilter {
    pub sub: Option<String>,
    pub reason: Option<String>,
    pub revoked_by: Option<String>,
}

/// Aggregates for `GET /revocations/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationStats {
    /// Permanent records.
    pub revoked: u64,
    /// Temporary suspensions still in force.
    pub suspended: u64,
    pub by_reason: std::collections::BTreeMap<String, u64>,
    /// Records revoked in the last 24 hours.
    pub last_24h: u64,
}

/// A cutoff for a whole subject or tenant: tokens with `iat < not_before_iat` are rejected.
///
/// Why `iat < C` with `C = floor(revoke time) + 1` rather than `iat <= revoke time`: `iat` has
/// one-second precision, so a token issued in the same second *after* a revoke-all would look
/// revoked. Issuance right after a cutoff waits for second `C` to begin (at most a second), so
/// tokens issued after the cutoff carry `iat >= C` without an `iat` in the future (which strict
/// verifiers refuse), and tokens issued before always carry `iat < C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoff {
    pub tenant: String,
    /// `None` for a tenant-wide cutoff.
    pub sub: Option<String>,
    pub not_before_iat: i64,
    /// Every token this cutoff can reject has expired by then (cutoff + maximum token
    /// lifetime): after it the row is purgeable.
    pub expires_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reasons_fall_in_their_class_by_first_word() {
        assert_eq!(reason_class(None), "unspecified");
        assert_eq!(reason_class(Some("logout")), "logout");
        assert_eq!(
            reason_class(Some("Compromised: laptop stolen")),
            "compromised"
        );
        assert_eq!(
            reason_class(Some("  password_change by user")),
            "password_change"
        );
        assert_eq!(reason_class(Some("logouts")), "other");
        assert_eq!(reason_class(Some("")), "other");
        assert_eq!(reason_class(Some("acme incident 42")), "other");
    }

    proptest! {
        #[test]
        fn every_reason_has_a_class_from_the_closed_set(reason in ".{0,64}") {
            prop_assert!(REASON_CLASSES.contains(&reason_class(Some(&reason))));
        }
    }
}
