//! Tenants: the unit of isolation. Every key, token, revocation and session belongs to one.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The tenant that exists from the first start.
pub const DEFAULT_TENANT: &str = "default";

/// Checks a tenant id against the contract's `[a-z0-9][a-z0-9-]{0,62}`.
pub fn validate_tenant_id(id: &str) -> Result<(), String> {
    let bytes = id.as_bytes();
    let ok_first = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok_first && ok_rest && bytes.len() <= 63 {
        Ok(())
    } else {
        Err("tenant ids are 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub suspended: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Revocation state kept per tenant in the index and in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantState {
    pub suspended: bool,
    /// Tokens with `iat` before this (unix seconds) are rejected (`tenant_revoked`): a revoke-all
    /// made at second `t` stores `t + 1`, so every token issued up to and including `t` goes.
    pub cutoff: Option<i64>,
}
