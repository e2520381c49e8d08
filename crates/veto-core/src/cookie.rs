//! Signed cookie values for sessions and pre-login state, and the per-tenant keys that sign them.
//!
//! A cookie is `v1.<kid>.<id>.<sig>`, where
//! `sig = base64url(HMAC-SHA256(key, domain || "v1." || kid || "." || id || NUL || tenant))`
//! and `domain` is empty for session cookies and `prelogin NUL` for pre-login cookies.
//!
//! Why each part of the MAC input is there:
//! - `kid` and `id`: what the cookie claims; altering either breaks the MAC.
//! - `tenant`: not in the cookie, but in the MAC, so a cookie made for tenant A never validates in
//!   tenant B, even if both held a key with the same kid and secret (a restored backup, a copied
//!   row) and ids collided.
//! - `domain`: a session cookie is never accepted as a pre-login cookie or the reverse, even
//!   though both are signed by the same keys. (The id prefixes, `ses-` and `pl-`, are checked
//!   too, but the MAC must not depend on that check being made.)
//!
//! The input is unambiguous: kids and ids are base64url-alphabet strings (checked on both sign
//! and verify), so the first `.` after `v1.` ends the kid and the NUL ends the id; the tenant is
//! the rest. Two different (domain, kid, id, tenant) never share a MAC input.
//!
//! The id in a cookie is not itself secret (ids are in admin listings and in the `sid` claim);
//! what makes a cookie unforgeable is the MAC. The id's 128 random bits make it unguessable as
//! well, a second line should a key ever leak.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::encoding::{b64url, b64url_decode, is_b64url_byte};
use crate::prelogin::PRELOGIN_ID_PREFIX;
use crate::random::{self, is_random_id, new_kid};
use crate::seal::{KeyError, MasterKey, SealedKind};
use crate::secret::debug_fields;
use crate::session::{SESSION_ID_PREFIX, SessionReason};

/// Longer cookies are refused before any parsing. Ours are about 110 bytes; the bound is there to
/// keep an attacker from making us split or hash large inputs, and to leave room for longer kids.
pub const MAX_COOKIE_BYTES: usize = 512;

/// How long a retired session key keeps verifying, by default (the contract's 24 h): long enough
/// for every browser holding a cookie signed under it to come back and be re-issued one.
pub const DEFAULT_KEY_RETENTION: Duration = Duration::hours(24);

const VERSION: &str = "v1";

/// Session key ids are this long at most. `new_kid()` makes 34 characters; the bound only keeps
/// a stored row from producing cookies over [`MAX_COOKIE_BYTES`].
const MAX_KID_BYTES: usize = 64;

/// HMAC-SHA256 keys as long as the hash output (RFC 2104 §3: longer adds nothing, shorter weakens).
const SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKeyStatus {
    /// Signs new cookies (the newest active key does) and verifies.
    Active,
    /// Signs nothing more; verifies until `retain_until`.
    Retired,
}

impl SessionKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKeyStatus::Active => "active",
            SessionKeyStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SessionKeyStatus::Active),
            "retired" => Some(SessionKeyStatus::Retired),
            _ => None,
        }
    }
}

/// A session signing key as the store keeps it. `encrypted_secret` is AES-256-GCM under the
/// master key with associated data `veto-session-key-v1 NUL tenant NUL kid`: distinct from the
/// token signing keys' (`veto-signing-key-v1 …`), so a row can be moved neither to another tenant
/// or kid nor between the two tables and still open.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeyRecord {
    pub tenant: String,
    pub kid: String,
    pub status: SessionKeyStatus,
    pub created_at: OffsetDateTime,
    /// Set when retired: the key keeps verifying until then (exclusive).
    pub retain_until: Option<OffsetDateTime>,
    /// nonce || ciphertext || tag.
    pub encrypted_secret: Vec<u8>,
}

// A `{:?}` never prints key material, even encrypted.
debug_fields!(SessionKeyRecord {
    tenant,
    kid,
    status,
    retain_until
});

impl SessionKeyRecord {
    /// A new active key for `tenant`: 256 random bits, sealed under the master key. The plaintext
    /// exists only in a buffer wiped on drop.
    pub fn generate(
        tenant: &str,
        master: &MasterKey,
        now: OffsetDateTime,
    ) -> Result<SessionKeyRecord, KeyError> {
        let kid = new_kid();
        let secret = random::bytes::<SECRET_BYTES>();
        Ok(SessionKeyRecord {
            encrypted_secret: master.seal_for(
                SealedKind::SessionKey,
                tenant,
                &kid,
                secret.as_ref(),
            )?,
            tenant: tenant.to_owned(),
            kid,
            status: SessionKeyStatus::Active,
            created_at: now,
            retain_until: None,
        })
    }

    /// Retires the key at `now`: it stops signing and verifies until `now + retention`. Retiring
    /// an already retired key changes nothing, so a repeated rotation can never stretch a
    /// retention window that is already running.
    pub fn retire(&mut self, now: OffsetDateTime, retention: Duration) {
        if self.status == SessionKeyStatus::Active {
            self.status = SessionKeyStatus::Retired;
            self.retain_until = Some(now.saturating_add(retention));
        }
    }

    /// Whether a cookie under this key still verifies at `now`. A retired key without
    /// `retain_until` verifies nothing: the safe reading of an incomplete row.
    pub fn verifies_at(&self, now: OffsetDateTime) -> bool {
        verifies(self.status, self.retain_until, now)
    }
}

fn verifies(
    status: SessionKeyStatus,
    retain_until: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    match status {
        SessionKeyStatus::Active => true,
        SessionKeyStatus::Retired => retain_until.is_some_and(|r| now < r),
    }
}

/// A session key ready to use: decrypted once when loaded, then shared by every request. The
/// secret lives only inside the aws-lc HMAC context, which aws-lc wipes (`HMAC_CTX_cleanup`,
/// `OPENSSL_cleanse`) when the key is dropped.
pub struct SessionKey {
    tenant: String,
    kid: String,
    status: SessionKeyStatus,
    created_at: OffsetDateTime,
    retain_until: Option<OffsetDateTime>,
    key: hmac::Key,
}

debug_fields!(SessionKey {
    tenant,
    kid,
    status,
    retain_until
});

impl SessionKey {
    /// Decrypts a stored key. Fails on a wrong master key, a row moved to another tenant or kid,
    /// a secret of the wrong length, or a kid that could not appear in a cookie.
    pub fn load(rec: &SessionKeyRecord, master: &MasterKey) -> Result<SessionKey, KeyError> {
        if !is_kid(&rec.kid) {
            return Err(KeyError::BadMaterial(crate::Alg::HS256));
        }
        let secret = master.open_for(
            SealedKind::SessionKey,
            &rec.tenant,
            &rec.kid,
            &rec.encrypted_secret,
        )?;
        if secret.len() != SECRET_BYTES {
            return Err(KeyError::BadMaterial(crate::Alg::HS256));
        }
        Ok(SessionKey {
            tenant: rec.tenant.clone(),
            kid: rec.kid.clone(),
            status: rec.status,
            created_at: rec.created_at,
            retain_until: rec.retain_until,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn status(&self) -> SessionKeyStatus {
        self.status
    }

    fn newer_than(&self, other: &SessionKey) -> bool {
        // kids from `new_kid` are UUID v7 and sort by creation time, which breaks ties between
        // keys created in the same (stored) second.
        (self.created_at, &self.kid) > (other.created_at, &other.kid)
    }
}

fn is_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_BYTES && kid.bytes().all(is_b64url_byte)
}

/// What a cookie is for. Part of the MAC input, so one kind can never pass for the other.
#[derive(Clone, Copy)]
enum Domain {
    Session,
    PreLogin,
}

impl Domain {
    fn mac_prefix(self) -> &'static [u8] {
        match self {
            // Empty: session cookies carry exactly the MAC input of the contract's v1 format.
            Domain::Session => b"",
            Domain::PreLogin => b"prelogin\0",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Domain::Session => SESSION_ID_PREFIX,
            Domain::PreLogin => PRELOGIN_ID_PREFIX,
        }
    }
}

fn mac_input(domain: Domain, kid: &str, id: &str, tenant: &str) -> Vec<u8> {
    let prefix = domain.mac_prefix();
    let mut m = Vec::with_capacity(prefix.len() + 5 + kid.len() + id.len() + tenant.len());
    m.extend_from_slice(prefix);
    m.extend_from_slice(VERSION.as_bytes());
    m.push(b'.');
    m.extend_from_slice(kid.as_bytes());
    m.push(b'.');
    m.extend_from_slice(id.as_bytes());
    m.push(0);
    m.extend_from_slice(tenant.as_bytes());
    m
}

/// The session keys of every tenant, read on every session validation.
#[derive(Default)]
pub struct SessionKeyRing {
    // tenant → keys, newest first: the signing key is the first active one, and a lookup by kid
    // scans a handful of keys (one active, a few retired within retention), which is cheaper than
    // hashing the kid. A std RwLock: readers hold it for a scan and an Arc clone, writers (rotation,
    // load at start-up) are rare, and no guard is ever held across an await.
    tenants: RwLock<HashMap<String, Vec<Arc<SessionKey>>>>,
}

debug_fields!(SessionKeyRing { keys: len() });

impl SessionKeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    // Writers replace whole entries and re-sort before releasing the lock; a panicked writer
    // leaves a consistent (at worst unsorted, which only changes which active key signs) state.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vec<Arc<SessionKey>>>> {
        self.tenants.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<Arc<SessionKey>>>> {
        self.tenants.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts a key, or replaces the one with the same tenant and kid (after a status change).
    pub fn upsert(&self, key: SessionKey) {
        let mut tenants = self.write();
        let keys = tenants.entry(key.tenant.clone()).or_default();
        keys.retain(|k| k.kid != key.kid);
        let at = keys
            .iter()
            .position(|k| key.newer_than(k))
            .unwrap_or(keys.len());
        keys.insert(at, Arc::new(key));
    }

    /// Forgets a key (purged after its retention): cookies under it become `unknown_key`.
    pub fn remove(&self, tenant: &str, kid: &str) {
        if let Some(keys) = self.write().get_mut(tenant) {
            keys.retain(|k| k.kid != kid);
        }
    }

    /// Number of keys held, all tenants together.
    pub fn len(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys of one tenant, every status.
    pub fn count(&self, tenant: &str) -> usize {
        self.read().get(tenant).map_or(0, Vec::len)
    }

    /// Whether `tenant` has an active key to sign new cookies with.
    pub fn has_signing_key(&self, tenant: &str) -> bool {
        self.signing_key(tenant).is_some()
    }

    fn signing_key(&self, tenant: &str) -> Option<Arc<SessionKey>> {
        self.read()
            .get(tenant)?
            .iter()
            .find(|k| k.status == SessionKeyStatus::Active)
            .cloned()
    }

    fn verifying_key(
        &self,
        tenant: &str,
        kid: &str,
        now: OffsetDateTime,
    ) -> Option<Arc<SessionKey>> {
        self.read()
            .get(tenant)?
            .iter()
            .find(|k| k.kid == kid)
            .filter(|k| verifies(k.status, k.retain_until, now))
            .cloned()
    }

    /// The cookie value for `session_id` (as made by `new_session_id`) in `tenant`, signed under
    /// the tenant's newest active key. `None` when the tenant has no active key, or when
    /// `session_id` is not a session id (which would be a bug in the caller, and signing it
    /// would only produce a cookie that never verifies).
    pub fn sign(&self, tenant: &str, session_id: &str) -> Option<String> {
        self.sign_in(Domain::Session, tenant, session_id)
    }

    /// The session id a cookie names, once its MAC checks out under a key of `tenant` that still
    /// verifies at `now`. Says nothing about the session itself: look it up and `check` it.
    pub fn verify(
        &self,
        tenant: &str,
        cookie: &str,
        now: OffsetDateTime,
    ) -> Result<String, SessionReason> {
        self.verify_in(Domain::Session, tenant, cookie, now)
    }

    /// [`sign`](Self::sign) for a pre-login id (`pl-…`): same keys, different MAC domain.
    pub fn sign_prelogin(&self, tenant: &str, prelogin_id: &str) -> Option<String> {
        self.sign_in(Domain::PreLogin, tenant, prelogin_id)
    }

    /// [`verify`](Self::verify) for pre-login cookies; a session cookie never passes.
    pub fn verify_prelogin(
        &self,
        tenant: &str,
        cookie: &str,
        now: OffsetDateTime,
    ) -> Result<String, SessionReason> {
        self.verify_in(Domain::PreLogin, tenant, cookie, now)
    }

    fn sign_in(&self, domain: Domain, tenant: &str, id: &str) -> Option<String> {
        if !is_random_id(id, domain.id_prefix()) {
            return None;
        }
        let key = self.signing_key(tenant)?;
        let tag = hmac::sign(&key.key, &mac_input(domain, &key.kid, id, tenant));
        Some(format!(
            "{VERSION}.{}.{id}.{}",
            key.kid,
            b64url(tag.as_ref())
        ))
    }

    fn verify_in(
        &self,
        domain: Domain,
        tenant: &str,
        cookie: &str,
        now: OffsetDateTime,
    ) -> Result<String, SessionReason> {
        if cookie.len() > MAX_COOKIE_BYTES {
            return Err(SessionReason::Malformed);
        }
        let mut parts = cookie.split('.');
        let (Some(version), Some(kid), Some(id), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SessionReason::Malformed);
        };
        // Syntax first, so that `malformed` means "not something veto could have made" whatever
        // the key state. The signature's alphabet is syntax; its length and canonical encoding
        // are not: a truncated or altered signature is a `bad_signature`, whichever way the
        // alteration happens to break the base64.
        if version != VERSION
            || !is_kid(kid)
            || !is_random_id(id, domain.id_prefix())
            || sig.is_empty()
            || !sig.bytes().all(is_b64url_byte)
        {
            return Err(SessionReason::Malformed);
        }
        let key = self
            .verifying_key(tenant, kid, now)
            .ok_or(SessionReason::UnknownKey)?;
        // Strict decoding: every tag has exactly one encoding, so no second spelling of a valid
        // cookie exists.
        let tag = b64url_decode(sig).ok_or(SessionReason::BadSignature)?;
        // Constant time in aws-lc-rs.
        hmac::verify(&key.key, &mac_input(domain, kid, id, tenant), &tag)
            .map_err(|_| SessionReason::BadSignature)?;
        Ok(id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::new_session_id;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    /// The same kid and secret in two tenants (a row copied with its plaintext, say): only the
    /// tenant inside the MAC keeps tenant A's cookie out of tenant B.
    #[test]
    fn same_key_in_two_tenants_still_separates_them() {
        let secret = [7u8; SECRET_BYTES];
        let ring = SessionKeyRing::new();
        for tenant in ["acme", "globex"] {
            ring.upsert(SessionKey {
                tenant: tenant.into(),
                kid: "k_shared".into(),
                status: SessionKeyStatus::Active,
                created_at: at(0),
                retain_until: None,
                key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            });
        }
        let id = new_session_id();
        let cookie = ring.sign("acme", &id).unwrap();
        assert_eq!(ring.verify("acme", &cookie, at(1)), Ok(id));
        assert_eq!(
            ring.verify("globex", &cookie, at(1)),
            Err(SessionReason::BadSignature)
        );
    }

    #[test]
    fn mac_inputs_are_distinct_across_domains_and_fields() {
        let a = mac_input(Domain::Session, "k", "ses-x", "t");
        let b = mac_input(Domain::PreLogin, "k", "ses-x", "t");
        let c = mac_input(Domain::Session, "k", "ses-x", "t2");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, b"v1.k.ses-x\0t");
    }
}
