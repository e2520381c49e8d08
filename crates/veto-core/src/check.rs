//! The whole token check, steps 1–4 of docs/architecture.md ("Is this token good?") in one call: what the authority runs for every
//! verify, introspection and refresh, and what a verifier inside a resource server is to run as
//! well, so that the two can never judge one token differently.
//!
//! Steps 1–3 (shape, key and signature, claims) are [`verify::verify`](crate::verify::verify)
//! against the tenant's keys in a [`KeyRing`]; step 4 is the [`RevocationIndex`], its
//! [`check`](RevocationIndex::check) and then the refresh family. Whether that revocation state is
//! current is known only to whoever keeps it up to date (the server follows a change feed), so the
//! caller brings that answer as a gate, and this module decides where in the order it is asked.
use crate::index::{RevocationIndex, TokenFacts};
use crate::keyring::KeyRing;
use crate::reason::Reason;
use crate::verify::{Expect, VerifiedToken, verify};

/// What the tokens of one tenant are checked against: the node's keys and revocation state, and
/// the tenant's rules. Cheap to build (references and a number), so build one per check.
#[derive(Clone, Copy)]
pub struct Checker<'a> {
    pub keys: &'a KeyRing,
    pub index: &'a RevocationIndex,
    pub tenant: &'a str,
    /// The tenant's issuer: `iss` must equal it.
    pub issuer: &'a str,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: i64,
}

impl Checker<'_> {
    /// Steps 1–4 for a token of JOSE type `typ` (e.g. `at+jwt`) at `now` (unix seconds): the
    /// verified claims if the token is active, else the first reason it is not.
    ///
    /// `audience`, when given, must be among the token's `aud`. `state_current` answers whether
    /// the revocation state (keys, index) may be relied on right now; `false` makes a token that
    /// passed steps 1–3 `index_stale`.
    pub fn check(
        &self,
        token: &str,
        typ: &str,
        audience: Option<&str>,
        now: i64,
        state_current: impl FnOnce() -> bool,
    ) -> Result<VerifiedToken, Reason> {
        let verified = self.verify(token, typ, audience, now, true)?;
        // The gate is asked only once steps 1–3 hold. A token that fails them is inactive
        // whatever the state, and its own reason (expired, bad signature) tells its holder more
        // than `index_stale`; only an *active* answer depends on the state being current, and a
        // holder that cannot vouch for it rejects rather than risk accepting a token another
        // node has revoked.
        if !state_current() {
            return Err(Reason::IndexStale);
        }
        let facts = TokenFacts {
            jti: &verified.jti,
            sub: verified.sub.as_deref(),
            iat: verified.iat,
            sid: verified.sid.as_deref(),
        };
        self.index.check(self.tenant, &facts, now)?;
        // Last in the documented order: the refresh family, carried only by refresh tokens and by
        // the access tokens minted from them, so every other token skips the probe.
        if verified
            .fam
            .as_deref()
            .is_some_and(|fam| self.index.family_revoked(self.tenant, fam))
        {
            return Err(Reason::Revoked);
        }
        Ok(verified)
    }

    /// Steps 1–3 without the time checks and without the revocation state: signature, key and
    /// issuer, to take jti, sub, expiry or family from a token being revoked (an expired or
    /// already revoked token may still be revoked). `now` still decides whether a retired key
    /// verifies.
    pub fn verify_signed(&self, token: &str, typ: &str, now: i64) -> Result<VerifiedToken, Reason> {
        self.verify(token, typ, None, now, false)
    }

    fn verify(
        &self,
        token: &str,
        typ: &str,
        audience: Option<&str>,
        now: i64,
        check_time: bool,
    ) -> Result<VerifiedToken, Reason> {
        let expect = Expect {
            issuer: self.issuer,
            audience,
            typ,
            now,
            leeway: self.leeway,
            check_time,
        };
        verify(token, |kid| self.keys.get(self.tenant, kid), &expect)
    }
}
