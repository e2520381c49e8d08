//! Signing keys: their lifecycle (active → retired → gone, or revoked at any time), their stored
//! form (private material encrypted under the master key) and their loaded, ready-to-use form.
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Alg;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs new tokens and verifies.
    Active,
    /// Signs nothing more; verifies until `retain_until`.
    Retired,
    /// Every token it signed is rejected at once; out of the JWKS.
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Retired => "retired",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyStatus::Active),
            "retired" => Some(KeyStatus::Retired),
            "revoked" => Some(KeyStatus::Revoked),
            _ => None,
        }
    }
}

/// A signing key as the store keeps it. `encrypted_private` is AES-256-GCM under the master key
/// with tenant and kid bound as associated data (see `MasterKey`), so a row copied to another
/// tenant or kid fails to decrypt instead of becoming a valid key there.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub tenant: String,
    pub alg: Alg,
    pub status: KeyStatus,
    /// Tokens for this audience prefer this key (contract: "binds the key to tokens for that audience").
    pub audience: Option<String>,
    pub created_at: OffsetDateTime,
    /// Set when retired: the key keeps verifying until then.
    pub retain_until: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    /// nonce || ciphertext || tag.
    pub encrypted_private: Vec<u8>,
    /// The public JWK (absent for HMAC keys), kept in clear so the JWKS needs no decryption.
    pub public_jwk: Option<serde_json::Value>,
}

// Hand-written so that a `{:?}` anywhere can never print key material, even encrypted.
impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}
