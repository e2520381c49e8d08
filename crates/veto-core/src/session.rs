//! Server-side sessions: the record, its two expiries, sliding touch, and CSRF.
//!
//! A session is valid while it is not revoked and `now` is before both expiries. Every expiry in
//! this module is exclusive, like a JWT `exp`: at the very instant `idle_expires_at` (or
//! `absolute_expires_at`) the session is already expired.
//!
//! Everything here is pure: the store persists what these functions return and the HTTP layer
//! maps [`SessionReason`] to a 401 problem. What the cookie looks like lives in `cookie`.
use serde::{Serialize, Serializer};
use time::{Duration, OffsetDateTime};

use crate::encoding::b64url;
use crate::input::{check_bytes, check_text};
use crate::limits;
use crate::random::{self, is_random_id, random_id};
use crate::secret::{debug_fields, hash_secret, secret_matches};

// Defined in `input`, shared with pre-login state; this is the path the server imports.
pub use crate::input::InputError;

/// Every session id starts with this, so an id is recognisable in logs and cannot be confused with
/// a pre-login id (`pl-`) or a refresh family (`rf-`).
pub const SESSION_ID_PREFIX: &str = "ses-";

/// Caller-given identifiers and texts (actor id and type, revoke reasons) are at most this long.
pub const MAX_ACTOR_BYTES: usize = limits::IDENTIFIER;

/// `user_agent` is informational: it is cut to this length rather than refused (see
/// [`NewSession::user_agent`]).
pub const MAX_USER_AGENT_BYTES: usize = limits::USER_AGENT;

/// The shortest idle timeout accepted. Below a minute, [`TOUCH_COALESCE`] would make the idle
/// expiry meaningless: a session in constant use could still expire between two write-backs.
pub const MIN_IDLE: Duration = Duration::seconds(60);

/// The longest absolute lifetime accepted. A session is a bearer credential; one that outlives a
/// month outlives most password rotations and device losses it should not survive.
pub const MAX_ABSOLUTE: Duration = Duration::days(30);

/// How stale the persisted `last_seen_at` may get before a validation writes the touch back.
///
/// The idle expiry is a bound measured in tens of minutes. Persisting `last_seen_at` (and the slid
/// `idle_expires_at`) at most once a minute per session costs at most one minute of idle lifetime,
/// whether because a node crashed holding a newer touch or because the stored idle expiry trails
/// the true one by up to this much, and it keeps validation, the hot path, from writing to the
/// database on every request. The cost is always in the safe direction: a session may end up to
/// a minute *early*, never late.
pub const TOUCH_COALESCE: Duration = Duration::seconds(60);

/// A fresh session id: `ses-` + 128 random bits, base64url without padding (26 characters).
pub fn new_session_id() -> String {
    random_id(SESSION_ID_PREFIX)
}

/// Whether `id` has the shape of an id made by [`new_session_id`]. The HTTP layer uses it to
/// tell a veto session id in a token's `sid` (which must then name a live session) from a
/// caller's own session identifier (which veto does not track).
pub fn is_session_id(id: &str) -> bool {
    is_random_id(id, SESSION_ID_PREFIX)
}

// ---------------------------------------------------------------------------------------------
// Caller input.
// ---------------------------------------------------------------------------------------------

/// Names that show up in admin screens and logs: anything but control characters, which could
/// forge log lines or hide text in a terminal.
fn check_name(field: &'static str, value: &str) -> Result<(), InputError> {
    check_bytes(
        field,
        value,
        1,
        MAX_ACTOR_BYTES,
        |c| !c.is_control(),
        "printable characters (no control characters)",
    )
}

/// How long sessions live. Fields are private so that every policy in existence has passed the
/// checks in [`SessionPolicy::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    idle: Duration,
    absolute: Duration,
}

impl Default for SessionPolicy {
    /// The contract's defaults: 1 h idle (sliding), 8 h absolute.
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::hours(1),
            absolute: Duration::hours(8),
        }
    }
}

impl SessionPolicy {
    /// idle ≥ [`MIN_IDLE`], idle ≤ absolute ≤ [`MAX_ABSOLUTE`]. Errors name the contract's fields
    /// `idle_timeout_seconds` and `absolute_timeout_seconds`.
    pub fn new(idle: Duration, absolute: Duration) -> Result<Self, InputError> {
        const IDLE: &str = "idle_timeout_seconds";
        const ABSOLUTE: &str = "absolute_timeout_seconds";
        if idle < MIN_IDLE {
            return Err(InputError::new(
                IDLE,
                format!("must be at least {}", MIN_IDLE.whole_seconds()),
            ));
        }
        if absolute > MAX_ABSOLUTE {
            return Err(InputError::new(
                ABSOLUTE,
                format!("must be at most {} (30 days)", MAX_ABSOLUTE.whole_seconds()),
            ));
        }
        if absolute < idle {
            return Err(InputError::new(
                ABSOLUTE,
                format!(
                    "must be at least idle_timeout_seconds ({}); got {}",
                    idle.whole_seconds(),
                    absolute.whole_seconds()
                ),
            ));
        }
        Ok(SessionPolicy { idle, absolute })
    }

    /// The request body's optional `idle_timeout_seconds` / `absolute_timeout_seconds`, each
    /// falling back to its default. An idle timeout above the default absolute one therefore
    /// needs an absolute timeout too; the error says so rather than silently raising it.
    pub fn from_seconds(idle: Option<i64>, absolute: Option<i64>) -> Result<Self, InputError> {
        let d = SessionPolicy::default();
        SessionPolicy::new(
            idle.map_or(d.idle, Duration::seconds),
            absolute.map_or(d.absolute, Duration::seconds),
        )
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    pub fn absolute(&self) -> Duration {
        self.absolute
    }
}

/// What a caller gives to open a session.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub tenant: &'a str,
    /// 1 to [`MAX_ACTOR_BYTES`] bytes, no control characters.
    pub actor_id: &'a str,
    /// 1 to [`MAX_ACTOR_BYTES`] bytes, no control characters.
    pub actor_type: &'a str,
    /// Must parse as an IPv4 or IPv6 address; stored in canonical form. Refused otherwise,
    /// because a wrong value here is a bug in the calling application, not in its user's browser.
    pub ip_address: Option<&'a str>,
    /// Stored with control characters replaced and cut to [`MAX_USER_AGENT_BYTES`], never
    /// refused: it is whatever header a browser sent, and a login must not fail over it.
    pub user_agent: Option<&'a str>,
}

fn sanitize_user_agent(ua: &str) -> String {
    let mut out = String::with_capacity(ua.len().min(MAX_USER_AGENT_BYTES));
    for c in ua.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_USER_AGENT_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The record.
// ---------------------------------------------------------------------------------------------

/// One server-side session as the store keeps it. Serialises to the contract's session JSON
/// (times in RFC 3339; absent values as `null`); `csrf_hash` is never serialised.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct SessionRecord {
    pub id: String,
    pub tenant: String,
    pub actor_id: String,
    pub actor_type: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// Slides forward on touch, never past `absolute_expires_at`.
    #[serde(with = "time::serde::rfc3339")]
    pub idle_expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoke_reason: Option<String>,
    /// SHA-256 of the CSRF token handed to the client once. Only the hash is kept, so a leaked
    /// database row cannot be turned into a working CSRF token.
    #[serde(skip)]
    pub csrf_hash: [u8; 32],
}

// Allow-listed: the CSRF hash is secret-derived, and IP address and user agent are personal data
// that do not belong in logs; what remains identifies the session for debugging.
debug_fields!(SessionRecord {
    id,
    tenant,
    actor_type,
    actor_id,
    idle_expires_at,
    absolute_expires_at,
    revoked_at,
});

impl SessionRecord {
    /// Opens a session at `now`: a fresh id, both expiries from `policy`, and a fresh CSRF token.
    /// Returns the record to store and the CSRF token to hand to the client (once; only its hash
    /// is in the record).
    pub fn new(
        input: &NewSession<'_>,
        policy: &SessionPolicy,
        now: OffsetDateTime,
    ) -> Result<(SessionRecord, String), InputError> {
        crate::tenant::validate_tenant_id(input.tenant)
            .map_err(|msg| InputError::new("tenant", msg))?;
        check_name("actor_id", input.actor_id)?;
        check_name("actor_type", input.actor_type)?;
        let ip_address = input
            .ip_address
            .map(|ip| {
                ip.parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_string())
                    .map_err(|_| InputError::new("ip_address", "must be an IPv4 or IPv6 address"))
            })
            .transpose()?;
        let (csrf_token, csrf_hash) = new_csrf_token();
        // Saturating: a `now` near the end of time must not panic; such a session is merely
        // shorter than asked, which errs on the safe side.
        let absolute_expires_at = now.saturating_add(policy.absolute);
        let record = SessionRecord {
            id: new_session_id(),
            tenant: input.tenant.to_owned(),
            actor_id: input.actor_id.to_owned(),
            actor_type: input.actor_type.to_owned(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now.saturating_add(policy.idle).min(absolute_expires_at),
            absolute_expires_at,
            ip_address,
            user_agent: input.user_agent.map(sanitize_user_agent),
            revoked_at: None,
            revoke_reason: None,
            csrf_hash,
        };
        Ok((record, csrf_token))
    }

    /// Why the session is not valid at `now`, if it is not. Order: revoked (an explicit decision
    /// is the most useful thing to report), then absolute expiry (it wins over idle when both
    /// have passed: it is the one no activity could have prevented), then idle expiry.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), SessionReason> {
        if self.revoked_at.is_some() {
            Err(SessionReason::Revoked)
        } else if now >= self.absolute_expires_at {
            Err(SessionReason::AbsoluteExpired)
        } else if now >= self.idle_expires_at {
            Err(SessionReason::IdleExpired)
        } else {
            Ok(())
        }
    }

    /// [`check`](Self::check), then the CSRF token when the request carries one. A session that
    /// is no longer valid reports that, whatever the token: that is the answer the client can act
    /// on (log in again).
    pub fn validate(
        &self,
        now: OffsetDateTime,
        csrf_token: Option<&str>,
    ) -> Result<(), SessionReason> {
        self.check(now)?;
        match csrf_token {
            Some(t) if !csrf_matches(t, &self.csrf_hash) => Err(SessionReason::CsrfMismatch),
            _ => Ok(()),
        }
    }

    /// Records activity at `now`: `last_seen_at = now` and
    /// `idle_expires_at = min(now + idle, absolute_expires_at)`. Returns whether anything changed.
    ///
    /// Does nothing to a session that is not valid at `now`: touching must never bring an
    /// idle-expired session back. Neither time ever moves backwards, so a node whose clock lags
    /// another's cannot shorten a session the other just extended.
    ///
    /// `policy` must be the one the session was opened with: its idle timeout is not part of the
    /// record (the contract's JSON does not show it), so the store keeps it alongside.
    /// Whatever policy is passed, the idle expiry never passes the absolute one.
    pub fn touch(&mut self, now: OffsetDateTime, policy: &SessionPolicy) -> bool {
        if self.check(now).is_err() {
            return false;
        }
        let idle = now
            .saturating_add(policy.idle)
            .min(self.absolute_expires_at)
            .max(self.idle_expires_at);
        let seen = now.max(self.last_seen_at);
        let changed = idle != self.idle_expires_at || seen != self.last_seen_at;
        self.idle_expires_at = idle;
        self.last_seen_at = seen;
        changed
    }

    /// Whether a touch at `now` should be written to the store, given the `last_seen_at` the
    /// store holds: only once [`TOUCH_COALESCE`] has passed since it (see there for why), and
    /// only for a session still valid at `now` (an expired one gains nothing from a write).
    pub fn needs_write_back(
        &self,
        persisted_last_seen: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        self.check(now).is_ok() && now - persisted_last_seen >= TOUCH_COALESCE
    }

    /// Marks the session revoked. The first revocation stands: revoking again changes nothing
    /// and returns `false`, so the recorded time and reason are those of the decision that
    /// actually ended the session.
    pub fn revoke(
        &mut self,
        now: OffsetDateTime,
        reason: Option<&str>,
    ) -> Result<bool, InputError> {
        if let Some(r) = reason {
            check_text("reason", r, limits::REASON)?;
        }
        if self.revoked_at.is_some() {
            return Ok(false);
        }
        self.revoked_at = Some(now);
        self.revoke_reason = reason.map(str::to_owned);
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Reasons.
// ---------------------------------------------------------------------------------------------

/// Why a session cookie does not validate. The strings are the contract's `reason` values of the
/// validate endpoint's 401 problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SessionReason {
    /// Not a cookie veto made: wrong shape, version, size or alphabet.
    #[error("malformed")]
    Malformed,
    /// Shaped right, names a key that verifies, but the MAC does not match: altered, truncated,
    /// or made for another tenant.
    #[error("bad_signature")]
    BadSignature,
    /// Names a key the tenant does not have, or a retired key past its retention.
    #[error("unknown_key")]
    UnknownKey,
    #[error("revoked")]
    Revoked,
    #[error("idle_expired")]
    IdleExpired,
    #[error("absolute_expired")]
    AbsoluteExpired,
    #[error("csrf_mismatch")]
    CsrfMismatch,
}

impl SessionReason {
    pub const ALL: [SessionReason; 7] = [
        SessionReason::Malformed,
        SessionReason::BadSignature,
        SessionReason::UnknownKey,
        SessionReason::Revoked,
        SessionReason::IdleExpired,
        SessionReason::AbsoluteExpired,
        SessionReason::CsrfMismatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionReason::Malformed => "malformed",
            SessionReason::BadSignature => "bad_signature",
            SessionReason::UnknownKey => "unknown_key",
            SessionReason::Revoked => "revoked",
            SessionReason::IdleExpired => "idle_expired",
            SessionReason::AbsoluteExpired => "absolute_expired",
            SessionReason::CsrfMismatch => "csrf_mismatch",
        }
    }
}

impl Serialize for SessionReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// CSRF.
// ---------------------------------------------------------------------------------------------

/// A fresh CSRF token: the secret for the client (256 random bits, base64url) and the SHA-256 to
/// store. The secret is random, so a fast unsalted hash is enough (as for API keys).
pub fn new_csrf_token() -> (String, [u8; 32]) {
    let bytes = random::bytes::<32>();
    let secret = b64url(bytes.as_ref());
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// Whether `presented` is the token whose hash is `stored`. Compares the hashes, in constant
/// time, so neither the content nor the length of the stored token leaks through timing.
pub fn csrf_matches(presented: &str, stored: &[u8; 32]) -> bool {
    secret_matches(presented, stored)
}
