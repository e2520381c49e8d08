//! Refresh-token families: rotation with reuse detection, in state that grows with families, not
//! with rotations (docs/architecture.md).
//!
//! The first refresh token of a login starts a family. Every refresh token is a JWT with
//! `token_use: "refresh"`, the family id in `fam` and a generation in `gen`. The family row keeps
//! one number, `current_gen`: the generation of the only token of the family that is still good.
//! Rotating bumps it, which by itself retires every older token of the family, so no per-token
//! ledger row is needed, however often a client refreshes.
//!
//! The rule, for a token of generation `g` presented at `now` ([`rotate`]):
//! - family revoked or expired: invalid;
//! - `g == current_gen`: the legitimate holder; issue generation `g + 1`;
//! - `g < current_gen`: a token that was already rotated is back. Either the client or a thief
//!   used it before; there is no telling which, so the whole family is revoked (RFC 9700 §4.14.2,
//!   reason `refresh_token_reuse`), logging out whoever holds the newest token too;
//! - `g > current_gen`: veto never issued it while the family was in this state; invalid.
//!
//! The race: two requests present the same current token at once. Both read `current_gen == g`
//! and both get `Rotate`. The store must therefore commit a rotation as a compare-and-swap,
//! `UPDATE … SET current_gen = g + 1 WHERE tenant = ? AND id = ? AND current_gen = g AND
//! revoked_at IS NULL`, so that exactly one wins. The loser finds no row updated, re-reads the
//! family, and asks again: now `g < current_gen`, a reuse, and the family is revoked. That is
//! deliberate: a client that refreshes the same token twice concurrently (two tabs without a
//! shared lock) is indistinguishable from a thief racing it, and failing closed is the rule.
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::random::{is_random_id, random_id};

/// Every family id starts with this.
pub const REFRESH_FAMILY_PREFIX: &str = "rf-";

/// The `token_use` claim of a refresh token. Access tokens are told apart by their JOSE `typ`
/// (`at+jwt`) as well, so neither kind passes for the other.
pub const TOKEN_USE_REFRESH: &str = "refresh";

/// The revoke reason recorded on a family revoked because one of its tokens came back, and the
/// `reason` of the 401 problem the reusing request gets.
pub const REUSE_REASON: &str = "refresh_token_reuse";

/// A fresh family id: `rf-` + 128 random bits, base64url.
pub fn new_family_id() -> String {
    random_id(REFRESH_FAMILY_PREFIX)
}

/// One family as the store keeps it: a single row, whatever the number of rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    pub tenant: String,
    pub id: String,
    pub sub: String,
    /// The generation of the one token of this family that may still be used.
    pub current_gen: u32,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    /// No token of the family is accepted at or after this; the row is purgeable then. Tokens
    /// issued in the family should expire by it too.
    pub expires_at: OffsetDateTime,
}

impl RefreshFamily {
    /// A new family at generation 0: the first refresh token carries `gen: 0`.
    pub fn new(tenant: &str, sub: &str, expires_at: OffsetDateTime) -> RefreshFamily {
        RefreshFamily {
            tenant: tenant.to_owned(),
            id: new_family_id(),
            sub: sub.to_owned(),
            current_gen: 0,
            revoked_at: None,
            revoke_reason: None,
            expires_at,
        }
    }

    /// The claims the family's current token carries.
    pub fn current_claims(&self) -> RefreshClaims {
        RefreshClaims {
            fam: self.id.clone(),
            generation: self.current_gen,
        }
    }
}

/// The family claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    pub fam: String,
    /// The `gen` claim (`gen` is a reserved word in Rust 2024).
    pub generation: u32,
}

impl RefreshClaims {
    /// Adds `token_use`, `fam` and `gen` to a token's claims (replacing any of the same name:
    /// these must be veto's, never a caller's).
    pub fn insert_into(&self, claims: &mut Map<String, Value>) {
        claims.insert("token_use".into(), TOKEN_USE_REFRESH.into());
        claims.insert("fam".into(), self.fam.clone().into());
        claims.insert("gen".into(), self.generation.into());
    }

    /// Reads the family claims of a token whose signature and standard claims already verified.
    /// `None` unless `token_use` is `refresh`, `fam` is a family id and `gen` a u32: an access
    /// token, or anything shaped otherwise, is not a refresh token.
    pub fn from_claims(claims: &Map<String, Value>) -> Option<RefreshClaims> {
        if claims.get("token_use")?.as_str()? != TOKEN_USE_REFRESH {
            return None;
        }
        let fam = claims.get("fam")?.as_str()?;
        if !is_random_id(fam, REFRESH_FAMILY_PREFIX) {
            return None;
        }
        let generation = u32::try_from(claims.get("gen")?.as_u64()?).ok()?;
        Some(RefreshClaims {
            fam: fam.to_owned(),
            generation,
        })
    }
}

/// What to do with a presented refresh token. See the module documentation for the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateDecision {
    /// Compare-and-swap `current_gen` from the presented generation to `next_gen`; on success
    /// issue a token of `next_gen`; on failure re-read the family and decide again.
    Rotate { next_gen: u32 },
    /// An already rotated token: revoke the whole family with [`REUSE_REASON`] and answer 401.
    Reuse,
    /// Reject (401) without touching the family: it is revoked or expired, or the generation
    /// was never current.
    Invalid,
}

/// The decision for a token of generation `presented_gen` of `family`, presented at `now`.
/// The caller has verified the token and matched `fam` (and tenant) to `family`.
pub fn rotate(family: &RefreshFamily, presented_gen: u32, now: OffsetDateTime) -> RotateDecision {
    if family.revoked_at.is_some() || now >= family.expires_at {
        return RotateDecision::Invalid;
    }
    match presented_gen.cmp(&family.current_gen) {
        std::cmp::Ordering::Less => RotateDecision::Reuse,
        std::cmp::Ordering::Greater => RotateDecision::Invalid,
        // After 2^32 − 1 rotations there is no next generation: the client logs in again rather
        // than the counter wrapping around and reviving generation 0.
        std::cmp::Ordering::Equal => match presented_gen.checked_add(1) {
            Some(next_gen) => RotateDecision::Rotate { next_gen },
            None => RotateDecision::Invalid,
        },
    }
}
