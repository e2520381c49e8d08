//! Pre-login state for OIDC redirects: what a relying party must remember between sending a
//! browser to the identity provider and receiving it back (`state`, `nonce`, the PKCE verifier,
//! where to go afterwards), held server-side for ten minutes and handed back exactly once.
//!
//! The browser holds only a signed cookie naming the record (`SessionKeyRing::sign_prelogin`).
//! The PKCE verifier is the one secret here (RFC 7636: whoever has it can redeem the
//! authorization code), so it is stored sealed under the master key; `state` and `nonce` travel
//! through the browser anyway and are stored in clear.
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::input::{InputError, check_bytes};
use crate::random::random_id;
use crate::seal::{KeyError, MasterKey, SealedKind};
use crate::secret::{debug_fields, hash_secret, secret_matches};

/// Every pre-login id starts with this; the cookie layer refuses any other id in a pre-login
/// cookie.
pub const PRELOGIN_ID_PREFIX: &str = "pl-";

/// How long a pre-login record lives, absolutely (the contract's 10 minutes): a user who takes
/// longer at the identity provider starts over, and a leaked cookie is useless soon after.
pub const PRELOGIN_TTL: Duration = Duration::minutes(10);

pub const MAX_STATE_BYTES: usize = 512;
pub const MAX_REDIRECT_URI_BYTES: usize = 2048;

/// A fresh pre-login id: `pl-` + 128 random bits, base64url.
pub fn new_prelogin_id() -> String {
    random_id(PRELOGIN_ID_PREFIX)
}

/// What the caller asks to remember. Borrowed: the record copies what it keeps, and the verifier
/// is sealed without ever being copied into an unwiped buffer.
#[derive(Clone, Copy)]
pub struct NewPreLogin<'a> {
    /// 1 to 512 printable ASCII characters.
    pub state: &'a str,
    /// 1 to 512 printable ASCII characters.
    pub nonce: &'a str,
    /// 43 to 128 characters of `A-Z a-z 0-9 - . _ ~` (RFC 7636 §4.1).
    pub pkce_verifier: &'a str,
    /// An absolute `http` or `https` URL without fragment, at most 2048 bytes.
    pub redirect_uri: Option<&'a str>,
}

debug_fields!(NewPreLogin<'_> { redirect_uri });

/// A stored pre-login record.
#[derive(Clone, PartialEq, Eq)]
pub struct PreLoginRecord {
    pub id: String,
    pub tenant: String,
    pub state: String,
    pub nonce: String,
    /// AES-256-GCM under the master key, associated data `veto-prelogin-pkce-v1 NUL tenant NUL
    /// id`: a verifier opens only in the record it was sealed for, so swapping ciphertexts between
    /// records (or tenants) in the database yields an error, not another flow's verifier.
    pub encrypted_pkce_verifier: Vec<u8>,
    pub redirect_uri: Option<String>,
    pub created_at: OffsetDateTime,
    /// `created_at` + [`PRELOGIN_TTL`], exclusive.
    pub expires_at: OffsetDateTime,
}

// `state` and `nonce` are replay material for the flow in progress: kept out of logs too.
debug_fields!(PreLoginRecord {
    id,
    tenant,
    redirect_uri,
    expires_at
});

/// What `consume` hands back: everything the caller gave, verifier decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct PreLoginSecrets {
    pub state: String,
    pub nonce: String,
    /// Wiped from memory when dropped.
    pub pkce_verifier: Zeroizing<String>,
    pub redirect_uri: Option<String>,
}

debug_fields!(PreLoginSecrets { redirect_uri });

#[derive(Debug, thiserror::Error)]
pub enum PreLoginError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why `consume` refused. The contract maps `Expired` to 410 and `WrongState` to 400; `Sealed`
/// is a server fault (wrong master key, or a row altered or moved), not the caller's.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("the pre-login state has expired")]
    Expired,
    #[error("state does not match")]
    WrongState,
    #[error(transparent)]
    Sealed(#[from] KeyError),
}

fn printable_ascii(c: char) -> bool {
    matches!(c, ' '..='~')
}

fn pkce_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Shape of an absolute http(s) URL, checked by hand (the workspace has no URL parser, and this
/// is all that is needed): scheme `http` or `https`, a non-empty host, no userinfo (it makes
/// `https://good.example@evil.example/` look like the wrong host), no fragment (RFC 6749 §3.1.2),
/// visible ASCII only (anything else must be percent-encoded). Whether the URL is one the
/// relying party accepts is its own allow-list's business, not ours.
fn check_redirect_uri(uri: &str) -> Result<(), InputError> {
    const FIELD: &str = "redirect_uri";
    check_bytes(
        FIELD,
        uri,
        1,
        MAX_REDIRECT_URI_BYTES,
        |c| c.is_ascii_graphic(),
        "visible ASCII characters (percent-encode anything else)",
    )?;
    // Schemes are case-insensitive (RFC 3986 §3.1).
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            uri.get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .and_then(|_| uri.get(scheme.len()..))
        })
        .ok_or_else(|| InputError::new(FIELD, "must be an absolute http or https URL"))?;
    if uri.contains('#') {
        return Err(InputError::new(FIELD, "must not contain a fragment (#)"));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_ok = !authority.is_empty()
        && !authority.starts_with(':')
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(InputError::new(
            FIELD,
            "must name a host (letters, digits, '.', '-', an optional port or an IPv6 literal; no user info)",
        ));
    }
    Ok(())
}

impl PreLoginRecord {
    /// Validates the input and builds the record to store at `now`, the verifier sealed for this
    /// tenant and id. Sign its id with `SessionKeyRing::sign_prelogin` for the cookie.
    pub fn new(
        tenant: &str,
        input: &NewPreLogin<'_>,
        master: &MasterKey,
        now: OffsetDateTime,
    ) -> Result<PreLoginRecord, PreLoginError> {
        crate::tenant::validate_tenant_id(tenant).map_err(|m| InputError::new("tenant", m))?;
        let ascii = "printable ASCII characters";
        check_bytes(
            "state",
            input.state,
            1,
            MAX_STATE_BYTES,
            printable_ascii,
            ascii,
        )?;
        check_bytes(
            "nonce",
            input.nonce,
            1,
            MAX_STATE_BYTES,
            printable_ascii,
            ascii,
        )?;
        check_bytes(
            "pkce_verifier",
            input.pkce_verifier,
            43,
            128,
            pkce_unreserved,
            "A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636)",
        )?;
        if let Some(uri) = input.redirect_uri {
            check_redirect_uri(uri)?;
        }
        let id = new_prelogin_id();
        Ok(PreLoginRecord {
            encrypted_pkce_verifier: master.seal_for(
                SealedKind::PreloginVerifier,
                tenant,
                &id,
                input.pkce_verifier.as_bytes(),
            )?,
            id,
            tenant: tenant.to_owned(),
            state: input.state.to_owned(),
            nonce: input.nonce.to_owned(),
            redirect_uri: input.redirect_uri.map(str::to_owned),
            created_at: now,
            expires_at: now.saturating_add(PRELOGIN_TTL),
        })
    }

    /// Hands back the stored state once the presented `state` matches (in constant time).
    ///
    /// Takes the record by value: a record is consumed once. Making that true across requests
    /// is the store's job: it must remove the record atomically as it reads it (a `DELETE …
    /// RETURNING`), *whatever* this then answers, so that a wrong `state` cannot be retried
    /// against the same record and a second consume finds nothing (410).
    pub fn consume(
        self,
        presented_state: &str,
        master: &MasterKey,
        now: OffsetDateTime,
    ) -> Result<PreLoginSecrets, ConsumeError> {
        if now >= self.expires_at {
            return Err(ConsumeError::Expired);
        }
        // Hashes compared in constant time, so the time taken depends on neither side's content
        // nor length.
        if !secret_matches(presented_state, &hash_secret(&self.state)) {
            return Err(ConsumeError::WrongState);
        }
        let verifier = self.open_verifier(master)?;
        Ok(PreLoginSecrets {
            state: self.state,
            nonce: self.nonce,
            pkce_verifier: verifier,
            redirect_uri: self.redirect_uri,
        })
    }

    fn open_verifier(&self, master: &MasterKey) -> Result<Zeroizing<String>, KeyError> {
        let bytes = master.open_for(
            SealedKind::PreloginVerifier,
            &self.tenant,
            &self.id,
            &self.encrypted_pkce_verifier,
        )?;
        // The verifier went in as ASCII; anything else means the row is not what we sealed.
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Decrypt)?;
        Ok(Zeroizing::new(text.to_owned()))
    }
}
