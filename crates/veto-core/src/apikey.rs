//! API keys: how management callers authenticate. Only a SHA-256 of the secret is stored; the
//! secret is random (256 bits) so a fast hash is sufficient, and a lookup by hash followed by a
//! constant-time comparison never reveals the secret through timing.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::encoding::b64url;
use crate::random;
use crate::secret::{debug_fields, hashes_match};

// Defined in `secret`, shared with CSRF tokens and pre-login state; this is the path the server
// imports.
pub use crate::secret::hash_secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "tenants:manage")]
    TenantsManage,
    #[serde(rename = "keys:manage")]
    KeysManage,
    #[serde(rename = "tokens:issue")]
    TokensIssue,
    #[serde(rename = "tokens:verify")]
    TokensVerify,
    #[serde(rename = "tokens:revoke")]
    TokensRevoke,
    #[serde(rename = "sessions:write")]
    SessionsWrite,
    #[serde(rename = "sessions:read")]
    SessionsRead,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::TenantsManage,
        Scope::KeysManage,
        Scope::TokensIssue,
        Scope::TokensVerify,
        Scope::TokensRevoke,
        Scope::SessionsWrite,
        Scope::SessionsRead,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TenantsManage => "tenants:manage",
            Scope::KeysManage => "keys:manage",
            Scope::TokensIssue => "tokens:issue",
            Scope::TokensVerify => "tokens:verify",
            Scope::TokensRevoke => "tokens:revoke",
            Scope::SessionsWrite => "sessions:write",
            Scope::SessionsRead => "sessions:read",
            Scope::AuditRead => "audit:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A stored API key. `tenant` is `None` for admin keys (every scope, every tenant).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: Option<String>,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub key_hash: [u8; 32],
    pub created_at: OffsetDateTime,
}

// Allow-listed like a session's CSRF hash: the hash is derived from the secret, and nothing
// derived from a secret goes to logs.
debug_fields!(ApiKeyRecord {
    id,
    tenant,
    name,
    scopes,
    created_at,
});

impl ApiKeyRecord {
    pub fn is_admin(&self) -> bool {
        self.tenant.is_none()
    }

    /// Admin keys hold every scope, in every tenant.
    pub fn allows(&self, tenant: &str, scope: Scope) -> bool {
        match &self.tenant {
            None => true,
            Some(t) => t == tenant && self.scopes.contains(&scope),
        }
    }

    pub fn belongs_to(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    pub fn secret_matches(&self, presented_hash: &[u8; 32]) -> bool {
        hashes_match(&self.key_hash, presented_hash)
    }
}

/// A new API key id (`ak_…`, public) and secret (`vk_…`, 256 random bits, shown once).
pub fn generate_api_key() -> (String, String) {
    let id = format!("ak_{}", uuid::Uuid::new_v4().simple());
    let secret = random::bytes::<32>();
    (id, format!("vk_{}", b64url(secret.as_ref())))
}
