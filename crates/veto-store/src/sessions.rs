//! Persistence for server-side sessions, their signing keys, pre-login state and refresh-token
//! families: a trait of its own next to [`Store`](crate::Store), so that a backend can gain it
//! without the main trait changing under backends being written against it.
//!
//! The rules (what a session is, when it expires, what a rotation decides) live in `veto_core`
//! (`session`, `cookie`, `prelogin`, `refresh`); a `SessionStore` only keeps their records, with
//! the two guarantees those modules ask of it:
//! - consuming a pre-login record is exactly-once: the row is deleted as it is read
//!   (`DELETE … RETURNING` inside the write transaction), so of two concurrent consumes one gets
//!   the record and the other nothing;
//! - a refresh rotation is a compare-and-swap on `current_gen`, so of two concurrent rotations
//!   of the same token one wins and the other sees the generation moved (a reuse).
//!
//! As in `Store`, every mutating method commits its rows, its audit events and its change-log
//! entries in one transaction, and returns once that is durable.
//!
//! Audit granularity: session revocations (one event per session, also when an actor's sessions
//! are revoked together, so each session's history can be found by its id), session key
//! creation and rotation, and refresh family revocations are audited. Session creation, touches,
//! pre-login records and refresh rotations are not: they are the traffic of ordinary logins,
//! not decisions anybody made, and would bury those in the trail.
use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::SessionKeyRecord;
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::session::SessionRecord;

use crate::{Page, PageRequest, Result, Written};

/// A session as stored: the record plus the idle timeout it was opened with, which a touch
/// slides the idle expiry by (the contract's JSON does not show it, so it is not in the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub record: SessionRecord,
    pub idle_timeout_seconds: i64,
}

/// How a new session key goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKeyInsert {
    /// Only when the tenant has no active key (its first session or pre-login): two nodes
    /// racing to create the first key end up with one.
    IfNoneActive,
    /// Rotation: every other active key of the tenant is retired with this `retain_until`.
    Rotate { retain_until: OffsetDateTime },
}

/// A revoked session or family, and whether this call revoked it (`false`: it already was, and
/// the first revocation's time and reason stand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked<T> {
    pub record: T,
    pub newly: bool,
}

/// What one purge pass deleted. The (tenant, id) lists let the caller drop the same entries
/// from memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPurge {
    pub sessions: Vec<(String, String)>,
    pub prelogin: u64,
    pub refresh_families: Vec<(String, String)>,
    pub session_keys: Vec<(String, String)>,
}

impl SessionPurge {
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.prelogin == 0
            && self.refresh_families.is_empty()
            && self.session_keys.is_empty()
    }
}

/// Everything the in-memory session state is built from at start-up.
#[derive(Debug, Clone, Default)]
pub struct SessionSnapshot {
    /// Every revoked session still stored: tokens with its `sid` are rejected.
    pub revoked_sessions: Vec<(String, String)>,
    /// Every other stored session, expired ones included (their tokens may outlive them):
    /// (tenant, id, last_seen_at, idle_expires_at), unix seconds. The idle expiry never passes
    /// the absolute one, so it alone says when the session ends.
    pub sessions: Vec<(String, String, i64, i64)>,
    /// Every stored session key; retired ones past retention verify nothing but are harmless.
    pub session_keys: Vec<SessionKeyRecord>,
    /// Every revoked refresh family still stored.
    pub revoked_families: Vec<(String, String)>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    // ---- sessions ----
    /// Stores a new session and appends a `session.create` change (value: its idle expiry).
    /// `NotFound` for an unknown tenant, `Conflict` for a taken id.
    async fn create_session(&self, s: &StoredSession) -> Result<Written<()>>;
    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<StoredSession>>;
    /// The actor's sessions that are neither revoked nor expired at `now` (by their stored
    /// expiries), newest `created_at` first (ties by id).
    async fn list_active_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        now: OffsetDateTime,
        page: &PageRequest,
    ) -> Result<Page<SessionRecord>>;
    /// Writes a touch back (see `veto_core::session::TOUCH_COALESCE` for how often): both times
    /// rise to the given ones, never fall. Nothing happens to a revoked or unknown session
    /// (`false`). Appends a `session.touch` change (value: the stored idle expiry after it).
    async fn touch_session(
        &self,
        tenant: &str,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<Written<bool>>;
    /// Revokes one session at `audit.at` with `audit.reason`. `None` for an unknown session.
    /// The first revocation stands: a repeat returns the stored record with `newly: false` and
    /// writes nothing. A new revocation writes `audit` and a `session.revoke` change (key: the
    /// session id, value: NULL) in its transaction.
    async fn revoke_session(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Option<Revoked<SessionRecord>>>>;
    /// Revokes every session of the actor not yet revoked (expired ones too: the revocation is
    /// the record of the decision), in one transaction. One audit event per session, made from
    /// `audit` (same actor, action, time, reason and metadata; the session id as target and a
    /// fresh event id), and one `session.revoke` change each. Returns the ids revoked.
    async fn revoke_actor_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Vec<String>>>;

    // ---- session signing keys ----
    /// Inserts an active key (see [`SessionKeyInsert`]) with `audit` and a `session_key.insert`
    /// change (key: the kid). Returns whether it was inserted (`IfNoneActive` on a tenant that
    /// already has an active key inserts nothing and writes nothing).
    async fn insert_session_key(
        &self,
        key: &SessionKeyRecord,
        mode: SessionKeyInsert,
        audit: &AuditEvent,
    ) -> Result<Written<bool>>;
    /// All keys of a tenant, newest first.
    async fn list_session_keys(&self, tenant: &str) -> Result<Vec<SessionKeyRecord>>;

    // ---- pre-login state ----
    async fn insert_prelogin(&self, rec: &PreLoginRecord) -> Result<()>;
    /// Deletes the record and returns it, atomically: exactly one of any number of concurrent
    /// calls gets it. Expired records are returned too (the caller answers "expired").
    async fn take_prelogin(&self, tenant: &str, id: &str) -> Result<Option<PreLoginRecord>>;

    // ---- refresh-token families ----
    async fn create_refresh_family(&self, f: &RefreshFamily) -> Result<()>;
    async fn get_refresh_family(&self, tenant: &str, id: &str) -> Result<Option<RefreshFamily>>;
    /// Compare-and-swap: `current_gen` becomes `to` only if it is `from` and the family is not
    /// revoked. Returns whether it did.
    async fn rotate_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        from: u32,
        to: u32,
    ) -> Result<bool>;
    /// Revokes a family at `audit.at` with `audit.reason`, like [`revoke_session`]
    /// (first revocation stands; `refresh.revoke` change, key: the family id).
    ///
    /// [`revoke_session`]: SessionStore::revoke_session
    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Option<Revoked<RefreshFamily>>>>;

    // ---- purge and start-up ----
    /// One bounded pass: at most `batch` rows of each kind.
    /// - sessions whose absolute expiry is before `before - linger`;
    /// - pre-login records that expired before `before`;
    /// - refresh families that expired before `before - linger`;
    /// - retired session keys whose retention ended before `before`.
    ///
    /// `linger` is the longest token lifetime: a token carrying a `sid` or `fam` may have been
    /// issued just before its session or family ended, and must keep failing until it has
    /// expired itself, which needs the row (or rather its revocation or expiry) until then.
    /// Sessions go by their absolute expiry, not the idle one: it never moves, and no token is
    /// issued for a session after it, whereas the stored idle expiry may trail a touch that a
    /// node has not written back yet.
    /// Deleted sessions and families append `session.purge` / `refresh.purge` changes.
    async fn purge_sessions_batch(
        &self,
        before: OffsetDateTime,
        linger: Duration,
        batch: u32,
    ) -> Result<Written<SessionPurge>>;
    /// Reads everything the in-memory session state is built from. Read it after
    /// `Store::load_state`: the change feed is then followed from that snapshot's cursor, and
    /// replaying a session change already contained here is harmless (every apply is idempotent).
    async fn load_sessions(&self) -> Result<SessionSnapshot>;
}
