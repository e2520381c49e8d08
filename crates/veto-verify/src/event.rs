//! The JSON carried by the revocation stream's events, as docs/stream.md writes it.
//!
//! Positions are taken from each event's SSE `id` (docs/stream.md: every event has one, equal to
//! its `"position"`), so a change of a kind this crate does not know still moves the resume
//! position past it without being understood.
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Snapshot {
    pub part: u32,
    pub last: bool,
    /// In part 0 only.
    #[serde(default)]
    pub tenant_suspended: bool,
    #[serde(default)]
    pub tenant_cutoff: Option<i64>,
    #[serde(default)]
    pub subject_cutoffs: Vec<SubjectCutoff>,
    #[serde(default)]
    pub revocations: Vec<Revocation>,
    #[serde(default)]
    pub revoked_keys: Vec<String>,
    #[serde(default)]
    pub sessions: Vec<Session>,
    #[serde(default)]
    pub revoked_sessions: Vec<String>,
    #[serde(default)]
    pub revoked_families: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct SubjectCutoff {
    pub sub: String,
    pub not_before_iat: i64,
}

#[derive(Debug, Deserialize)]
pub struct Revocation {
    pub jti: String,
    #[serde(default)]
    pub until: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Session {
    pub session: String,
    pub expires: i64,
}

#[derive(Debug, Deserialize)]
pub struct Heartbeat {
    pub age_ms: u64,
}

/// One `change` event. A kind not in docs/stream.md's table is `Unknown` and changes nothing:
/// kinds may be added, and one this crate does not know carries no revocation of a token it can
/// check.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
pub enum Change {
    #[serde(rename = "revocation")]
    Revocation {
        jti: String,
        #[serde(default)]
        until: Option<i64>,
    },
    #[serde(rename = "revocation.lift")]
    RevocationLift { jti: String },
    #[serde(rename = "revocation.purge")]
    RevocationPurge { jti: String },
    #[serde(rename = "subject.cutoff")]
    SubjectCutoff { sub: String, not_before_iat: i64 },
    #[serde(rename = "tenant.cutoff")]
    TenantCutoff { not_before_iat: i64 },
    #[serde(rename = "cutoff.purge")]
    CutoffPurge {
        /// `None`: the tenant's cutoff.
        #[serde(default)]
        sub: Option<String>,
    },
    #[serde(rename = "tenant.suspend")]
    TenantSuspend,
    #[serde(rename = "tenant.resume")]
    TenantResume,
    #[serde(rename = "key.revoke")]
    KeyRevoke { kid: String },
    #[serde(rename = "key.insert", alias = "key.retire")]
    KeyChanged,
    #[serde(rename = "session.create", alias = "session.touch")]
    SessionExpires { session: String, expires: i64 },
    #[serde(rename = "session.revoke")]
    SessionRevoke { session: String },
    #[serde(rename = "session.purge")]
    SessionPurge { session: String },
    #[serde(rename = "refresh.revoke")]
    RefreshRevoke { family: String },
    #[serde(rename = "refresh.purge")]
    RefreshPurge { family: String },
    #[serde(other)]
    Unknown,
}
