//! API keys: how management callers authenticate. Only a SHA-256 of the secret is stored; the
//! secret is random (256 bits) so a fast hash is sufficient, and a lookup by hash followed by a
//! constant-time comparison never reveals the secret through timing.
use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: Option<String>,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub key_hash: [u8; 32],
    pub created_at: OffsetDateTime,
}

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
        self.key_hash.ct_eq(presented_hash).into()
    }
}

pub fn hash_secret(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new API key id (`ak_…`, public) and secret (`vk_…`, 256 random bits, shown once).
pub fn generate_api_key() -> (String, String) {
    let id = format!("ak_{}", uuid::Uuid::new_v4().simple());
    let mut secret = [0u8; 32];
    // A failing system RNG leaves us unable to mint any secret: refusing is the only safe answer,
    // and there is no caller input involved, so this is an invariant, not input handling.
    aws_lc_rs::rand::fill(&mut secret).expect("system random number generator failed");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret);
    (id, format!("vk_{b64}"))
}
