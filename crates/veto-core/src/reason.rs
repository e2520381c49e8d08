//! Why a token is not active. The strings are part of the HTTP contract.
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    Malformed,
    BadSignature,
    UnknownKey,
    KeyRevoked,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// `typ` is not `at+jwt` (token-type confusion, e.g. a refresh or ID token presented as an
    /// access token). The contract's closed list of reasons has no entry for it, so on the wire
    /// it is `malformed`; inside veto (logs, metrics) it stays distinct.
    WrongType,
    Revoked,
    Suspended,
    SubjectRevoked,
    TenantRevoked,
    TenantSuspended,
    SessionRevoked,
    /// The node's revocation state is older than the staleness bound: fail closed.
    IndexStale,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed | Reason::WrongType => "malformed",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::KeyRevoked => "key_revoked",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::Revoked => "revoked",
            Reason::Suspended => "suspended",
            Reason::SubjectRevoked => "subject_revoked",
            Reason::TenantRevoked => "tenant_revoked",
            Reason::TenantSuspended => "tenant_suspended",
            Reason::SessionRevoked => "session_revoked",
            Reason::IndexStale => "index_stale",
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
