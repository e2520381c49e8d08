//! veto's storage: one `Store` trait, two backends (SQLite embedded by default, PostgreSQL for
//! many nodes), one conformance suite (`tests/conformance`) that every backend passes.
//!
//! The change feed (`changes_after`) tells every node of every write. Within one key (a jti, a
//! tenant, a tenant's signing keys, an API key, a cutoff) changes come in commit order, in both
//! backends; across keys only the feed order itself is promised (PostgreSQL orders by
//! transaction id, not commit time).
//!
//! Every mutating method commits its change, its audit event and its change-log entry in one
//! transaction, and returns only once that transaction is durable: callers acknowledge a write to
//! their client only after this returns `Ok`.
#![forbid(unsafe_code)]
// A panic on a request path is a 500 and a dropped connection: outside tests, failures are
// values. Where a panic is the right answer, an `#[allow]` says why.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;
use veto_core::apikey::ApiKeyRecord;
use veto_core::audit::AuditEvent;
use veto_core::keys::SigningKeyRecord;
use veto_core::revocation::{Cutoff, Revocation, RevocationFilter, RevocationStats};
use veto_core::tenant::Tenant;

mod backend;
pub mod change;
mod cursor;
pub mod postgres;
mod rows;
pub mod sessions;
mod sql;
pub mod sqlite;
pub mod status_list;

pub use change::{Change, ChangeKind, Entity, Written};
pub use postgres::{PG_NOTIFY_CHANNEL, PgStore};
pub use veto_core::keys::SealedKind;

/// One blob sealed under the master key, and the row it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub tenant: String,
    /// The kid (signing and session keys) or the pre-login id.
    pub id: String,
    pub sealed: Vec<u8>,
}

/// A blob re-sealed under a new master key, replacing `old` (see `Store::reseal`).
#[derive(Debug, Clone)]
pub struct Resealed {
    pub tenant: String,
    pub id: String,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}
pub use sessions::SessionStore;
pub use sqlite::SqliteStore;
pub use status_list::{EntryFacts, NewStatusEntry, NewStatusList, StatusEntry, StatusListInfo};

#[derive(Debug)]
pub enum StoreError {
    /// The thing already exists (e.g. a tenant id); carries a description for the client.
    Conflict(String),
    NotFound(String),
    /// A pagination cursor this store did not issue (or from another list). Maps to 400.
    BadCursor,
    /// The backend failed (I/O, connection, constraint we did not expect). Never caused by input
    /// that the HTTP layer validated; maps to 503, because retrying later may work. The
    /// [`Unavailable`] says what failed and keeps the backend's own error as its source.
    Unavailable(Unavailable),
}

// Display and Error by hand, here and for `Unavailable`: the source is the backend's error itself
// (so that it can be downcast), not the `Unavailable` or the `Arc` around it, whose text this
// error's `Display` already shows.
impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(d) => write!(f, "conflict: {d}"),
            StoreError::NotFound(d) => write!(f, "not found: {d}"),
            StoreError::BadCursor => f.write_str("malformed cursor"),
            StoreError::Unavailable(d) => write!(f, "store unavailable: {d}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Unavailable(d) => d.source(),
            _ => None,
        }
    }
}

impl From<Unavailable> for StoreError {
    fn from(d: Unavailable) -> Self {
        StoreError::Unavailable(d)
    }
}

/// Why the store was unavailable: what failed, and the error the backend reported for it, if
/// any, kept as this error's `source`. Displays as the description, then the source's message
/// (`migration failed: …`); either alone when the other is missing.
///
/// Cheap to clone (the source is shared), so that one failed commit can answer every caller
/// whose write it carried.
#[derive(Debug, Clone)]
pub struct Unavailable {
    context: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            None => f.write_str(&self.context),
            Some(s) if self.context.is_empty() => write!(f, "{s}"),
            Some(s) => write!(f, "{}: {s}", self.context),
        }
    }
}

impl std::error::Error for Unavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source: &(dyn std::error::Error + Send + Sync) = self.source.as_deref()?;
        Some(source)
    }
}

impl Unavailable {
    /// A failure without an underlying error (a stored row that does not decode, a row that
    /// vanished mid-transaction).
    pub fn new(context: impl Into<String>) -> Self {
        Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// A failure the backend reported as `source`, while doing `context` (which may be empty
    /// when the source says it all).
    pub fn caused_by(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Unavailable {
            context: context.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// What failed, without the source's message (empty when only the source tells).
    pub fn context(&self) -> &str {
        &self.context
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Keyset pagination: items newest first; `cursor` is opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// 1..=1000.
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Outcome of an idempotent revocation insert.
#[derive(Debug, Clone, PartialEq)]
pub struct RevokeOutcome {
    /// The stored record: the new one, the unchanged original on a repeat, or the suspension
    /// made permanent.
    pub record: Revocation,
    pub created: bool,
    /// A permanent revocation of a suspended jti: the suspension became permanent.
    pub made_permanent: bool,
}

/// Outcome of lifting a temporary suspension.
#[derive(Debug, Clone, PartialEq)]
pub enum LiftOutcome {
    Lifted(Revocation),
    NotFound,
    /// Permanent revocations cannot be lifted.
    Permanent(Revocation),
}

/// Rows deleted by one purge pass, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub revocations: u64,
    pub cutoffs: u64,
    pub signing_keys: u64,
    /// Status list entries whose token expired before `before`: their indexes are free again.
    pub status_entries: u64,
    /// Change-log rows older than [`CHANGE_RETENTION_SECS`]. Counted so that a caller looping
    /// "until a pass deletes nothing" also drains an old change log.
    pub changes: u64,
}

/// A place in the change log, ordered by (xid, position). SQLite: xid is always 0.
///
/// PostgreSQL orders by the writing transaction's id first, because positions (a sequence) can
/// commit out of order; see `postgres/mod.rs`. `FeedCursor::default()` is before every change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedCursor {
    pub xid: i64,
    pub position: i64,
}

/// The text form clients see (`Veto-Position`, `min_position`, the stream's event ids):
/// `<xid>:<position>` in decimal. Documented as opaque (docs/stream.md), so that it may change.
/// A snapshot's cursor on PostgreSQL has position -1 ("before every change of that xid").
impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.xid, self.position)
    }
}

/// A text that is not a position veto wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPosition;

impl std::str::FromStr for FeedCursor {
    type Err = BadPosition;

    /// Only what `Display` writes: decimals without `+` or padding beyond what an i64 holds;
    /// the xid is never negative, the position at least -1.
    fn from_str(s: &str) -> std::result::Result<FeedCursor, BadPosition> {
        let (xid, position) = s.split_once(':').ok_or(BadPosition)?;
        let number = |t: &str| -> std::result::Result<i64, BadPosition> {
            let digits = t.strip_prefix('-').unwrap_or(t);
            if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(BadPosition);
            }
            t.parse().map_err(|_| BadPosition)
        };
        let c = FeedCursor {
            xid: number(xid)?,
            position: number(position)?,
        };
        if c.xid < 0 || c.position < -1 {
            return Err(BadPosition);
        }
        Ok(c)
    }
}

/// How long change rows are kept; `purge_batch` deletes change rows with
/// `at < before - CHANGE_RETENTION_SECS`. A node whose cursor is older than this may have missed
/// changes that are gone from the log: it must reload its state (`load_state`) instead of
/// catching up, so the server's follower stops trusting the feed an hour before (see
/// `veto_server::feed`) and the node stays failed closed until restarted. A day is far longer
/// than any staleness bound a node keeps serving under.
pub const CHANGE_RETENTION_SECS: i64 = 86_400;

/// What the index keeps of a revocation: whose, which, and until when (None = permanent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRevocation {
    pub tenant: String,
    pub jti: String,
    pub until: Option<i64>,
}

/// One tenant's whole revocation state, consistent with one feed cursor: the first event of a
/// revocation stream (docs/stream.md, "snapshot").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRevocationState {
    pub suspended: bool,
    /// The tenant-wide cutoff: tokens with an earlier `iat` are rejected.
    pub tenant_cutoff: Option<i64>,
    /// (subject, not_before_iat).
    pub subject_cutoffs: Vec<(String, i64)>,
    /// (jti, until): `None` is permanent. Suspensions already lifted by time are left out.
    pub revocations: Vec<(String, Option<i64>)>,
    pub revoked_keys: Vec<String>,
    /// Sessions not revoked, expired ones included: (id, idle expiry in unix seconds).
    pub sessions: Vec<(String, i64)>,
    pub revoked_sessions: Vec<String>,
    pub revoked_families: Vec<String>,
    /// Applying `changes_after(cursor, ..)` of this tenant on top yields the current state.
    pub cursor: FeedCursor,
    /// Changes of this tenant after `cursor` that the state already reflects (PostgreSQL: they
    /// committed while a transaction the cursor waits for was still open), in log order.
    /// [`fold`](Self::fold) the others up to the last of these to get a state exact at one
    /// cursor. Always empty on SQLite.
    pub included_after: Vec<FeedCursor>,
}

impl TenantRevocationState {
    /// Applies `changes` of `tenant` (in log order, after `cursor`) up to `to`, except those in
    /// `included_after`, and moves `cursor` to `to`: the state is then exactly the one at `to`,
    /// provided `changes` hold every change of the tenant in (`cursor`, `to`]. Per entity,
    /// cursor order is commit order (`change`), so a change folded here is newer than anything
    /// the snapshot holds of its entity. Suspensions that have lifted by `now` are left out,
    /// as the store leaves them out.
    pub fn fold(&mut self, tenant: &str, changes: &[Change], to: FeedCursor, now: i64) {
        use ChangeKind::*;
        for c in changes {
            if c.tenant != tenant || c.cursor > to || self.included_after.contains(&c.cursor) {
                continue;
            }
            match &c.kind {
                TenantSuspended => self.suspended = true,
                TenantResumed => self.suspended = false,
                TenantCutoff { not_before_iat } => self.tenant_cutoff = Some(*not_before_iat),
                SubjectCutoff {
                    sub,
                    not_before_iat,
                } => {
                    self.subject_cutoffs.retain(|(s, _)| s != sub);
                    self.subject_cutoffs.push((sub.clone(), *not_before_iat));
                }
                CutoffPurged { sub } if sub.is_empty() => self.tenant_cutoff = None,
                CutoffPurged { sub } => self.subject_cutoffs.retain(|(s, _)| s != sub),
                Revoked { jti, until } => {
                    self.revocations.retain(|(j, _)| j != jti);
                    if until.is_none_or(|u| u > now) {
                        self.revocations.push((jti.clone(), *until));
                    }
                }
                Lifted { jti } | RevocationPurged { jti } => {
                    self.revocations.retain(|(j, _)| j != jti)
                }
                SigningKeyRevoked { kid } => {
                    if !self.revoked_keys.contains(kid) {
                        self.revoked_keys.push(kid.clone());
                    }
                }
                SessionCreated {
                    id,
                    idle_expires_at,
                }
                | SessionTouched {
                    id,
                    idle_expires_at,
                } => {
                    if !self.revoked_sessions.contains(id) {
                        match self.sessions.iter_mut().find(|(s, _)| s == id) {
                            Some((_, e)) => *e = (*e).max(*idle_expires_at),
                            None => self.sessions.push((id.clone(), *idle_expires_at)),
                        }
                    }
                }
                SessionRevoked { id } => {
                    self.sessions.retain(|(s, _)| s != id);
                    if !self.revoked_sessions.contains(id) {
                        self.revoked_sessions.push(id.clone());
                    }
                }
                SessionPurged { id } => {
                    self.sessions.retain(|(s, _)| s != id);
                    self.revoked_sessions.retain(|s| s != id);
                }
                RefreshFamilyRevoked { family } => {
                    if !self.revoked_families.contains(family) {
                        self.revoked_families.push(family.clone());
                    }
                }
                RefreshFamilyPurged { family } => self.revoked_families.retain(|f| f != family),
                // Status lists are not part of a revocation stream's state.
                TenantCreated
                | StatusListCreated { .. }
                | StatusEntryAllocated { .. }
                | StatusEntryPurged { .. }
                | TenantStatusList { .. }
                | SigningKeyInserted { .. }
                | SigningKeyRetired { .. }
                | ApiKeyInserted { .. }
                | ApiKeyDeleted { .. }
                | SessionKeyInserted { .. }
                | Unreadable { .. } => {}
            }
        }
        self.cursor = to;
        self.included_after.clear();
    }
}

/// Everything the revocation index and key ring are built from at start-up.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    pub tenants: Vec<(Tenant, Option<i64>)>,
    pub subject_cutoffs: Vec<Cutoff>,
    /// Every revocation row still in the ledger, in the lean form the index needs (a full
    /// record per row would make start-up with millions of rows needlessly slow), except
    /// suspensions whose `until` is not after `now` (they reject nothing any more). Rows whose
    /// `expires_at` has passed are included: they leave the index when the purge deletes them,
    /// as on a node that never restarted (an `expires_at` given by a caller may be too early).
    pub revocations: Vec<IndexedRevocation>,
    pub signing_keys: Vec<SigningKeyRecord>,
    pub api_keys: Vec<ApiKeyRecord>,
    /// Every tenant's status lists, each tenant's newest (its current list) last.
    pub status_lists: Vec<StatusListInfo>,
    /// Every status list entry still stored (the purge has not deleted it yet).
    pub status_entries: Vec<StatusEntry>,
    /// The tenants whose `status_list` setting is on; it is off for every other tenant.
    pub status_list_tenants: Vec<String>,
    /// Change-log place the snapshot is consistent with: applying `changes_after(cursor, ..)`
    /// on top of the snapshot yields the current state, once the changes in `included_after`
    /// are left out.
    pub cursor: FeedCursor,
    /// Changes after `cursor` that the snapshot already reflects (PostgreSQL: they committed
    /// while a transaction the cursor waits for was still open), in log order; `changes_after`
    /// returns them again, and an applier that counts (the revocation index counts holders of
    /// a fingerprint) must skip them. Always empty on SQLite.
    pub included_after: Vec<Change>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations. Idempotent.
    async fn migrate(&self) -> Result<()>;

    /// Cheap liveness probe of the backend (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    // ---- tenants ----
    /// `Conflict` if the id exists.
    async fn create_tenant(&self, tenant: &Tenant, audit: &AuditEvent) -> Result<Written<()>>;
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>>;
    /// Sets `suspended`; `NotFound` for an unknown tenant. Returns the updated tenant.
    async fn set_tenant_suspended(
        &self,
        id: &str,
        suspended: bool,
        audit: &AuditEvent,
    ) -> Result<Written<Tenant>>;
    /// Tenant-wide (`sub: None`) or subject cutoff. A later cutoff replaces an earlier one; an
    /// earlier one never lowers it (max wins).
    async fn set_cutoff(&self, cutoff: &Cutoff, audit: &AuditEvent) -> Result<Written<()>>;

    // ---- API keys ----
    async fn insert_api_key(&self, key: &ApiKeyRecord, audit: &AuditEvent) -> Result<Written<()>>;
    /// Tenant keys of one tenant, newest first.
    async fn list_api_keys(&self, tenant: &str, page: &PageRequest) -> Result<Page<ApiKeyRecord>>;
    /// `NotFound` when no key of that id belongs to that tenant.
    async fn delete_api_key(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<()>>;
    async fn find_api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>>;
    /// One API key by id (any tenant), for nodes applying an `api_key.insert` change.
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// True when at least one admin key (tenant NULL) exists.
    async fn has_admin_key(&self) -> Result<bool>;

    // ---- signing keys ----
    /// Inserts a new key. When `retire_others_until` is `Some`, every other active key of the
    /// same tenant and alg (and the same audience binding) becomes `retired` with that
    /// `retain_until`, in the same transaction (rotation).
    async fn insert_signing_key(
        &self,
        key: &SigningKeyRecord,
        retire_others_until: Option<OffsetDateTime>,
        audit: &AuditEvent,
    ) -> Result<Written<Vec<SigningKeyRecord>>>;
    /// All keys of a tenant, newest first, every status.
    async fn list_signing_keys(&self, tenant: &str) -> Result<Vec<SigningKeyRecord>>;
    /// Marks the key revoked. `NotFound` for an unknown kid of that tenant. Idempotent: revoking a
    /// revoked key returns it unchanged and writes no audit event.
    async fn revoke_signing_key(
        &self,
        tenant: &str,
        kid: &str,
        reason: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<Written<SigningKeyRecord>>;

    // ---- revocations ----
    /// Idempotent on (tenant, jti): a repeat returns the unchanged original with `created: false`
    /// and writes no audit event, except that a permanent revocation of a suspended jti makes the
    /// suspension permanent (`made_permanent`, audited as `revocation.make_permanent`).
    async fn insert_revocation(
        &self,
        rec: &Revocation,
        audit: &AuditEvent,
    ) -> Result<Written<RevokeOutcome>>;
    /// All in one transaction; existing jtis are left unchanged, except suspended ones that an
    /// item revokes permanently (made permanent, as by `insert_revocation`; counted as existing).
    /// Returns (created, existing) and the records written: the created ones, then those made
    /// permanent. Each record's audit event is written only if it was written.
    async fn insert_revocations(
        &self,
        recs: &[(Revocation, AuditEvent)],
    ) -> Result<Written<(u64, u64, Vec<Revocation>)>>;
    async fn get_revocation(&self, tenant: &str, jti: &str) -> Result<Option<Revocation>>;
    /// Newest `revoked_at` first (ties broken by jti), filtered.
    async fn list_revocations(
        &self,
        tenant: &str,
        filter: &RevocationFilter,
        page: &PageRequest,
    ) -> Result<Page<Revocation>>;
    async fn revocation_stats(&self, tenant: &str, now: OffsetDateTime) -> Result<RevocationStats>;
    /// Deletes a temporary suspension (lifting it early). Permanent records are left alone.
    async fn lift_suspension(
        &self,
        tenant: &str,
        jti: &str,
        audit: &AuditEvent,
    ) -> Result<Written<LiftOutcome>>;

    // ---- status lists (draft-ietf-oauth-status-list, issue 14) ----
    /// Gives the token an index in the tenant's current (newest) list. `candidates` are random
    /// numbers the caller drew (at least one); the store tries `c % size` for each in turn in
    /// the current list and takes the first free one. If none is free, or the tenant has no
    /// list yet, it creates `new_list` as the tenant's current list and takes
    /// `candidates[0] % new_list.size` there. One transaction: the list row if created, the
    /// entry, and their changes (`status_list.create`, `status_entry.allocate`). `NotFound` for
    /// an unknown tenant, writing nothing; `Conflict` when `new_list` is needed and its id is
    /// taken in the tenant. Not audited: it is part of issuing a token.
    async fn allocate_status_entry(
        &self,
        entry: &NewStatusEntry<'_>,
        candidates: &[u32],
        new_list: &NewStatusList<'_>,
    ) -> Result<Written<StatusEntry>>;
    async fn status_entry(&self, tenant: &str, list: &str, idx: u32)
    -> Result<Option<StatusEntry>>;
    /// The tenant's lists, newest (the current one) first; empty for an unknown tenant.
    async fn status_lists(&self, tenant: &str) -> Result<Vec<StatusListInfo>>;
    /// Whether the tenant's tokens get status list entries; `None` for an unknown tenant.
    async fn tenant_status_list(&self, tenant: &str) -> Result<Option<bool>>;
    /// Sets the tenant's `status_list` setting, audited, with a `tenant.status_list` change;
    /// `NotFound` for an unknown tenant.
    async fn set_tenant_status_list(
        &self,
        tenant: &str,
        on: bool,
        audit: &AuditEvent,
    ) -> Result<Written<()>>;

    // ---- audit ----
    /// Newest first, optionally filtered by action.
    async fn list_audit(
        &self,
        tenant: &str,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>>;

    // ---- purge ----
    /// Deletes at most `batch` revocation rows with `expires_at < before` and suspensions whose
    /// `until < before`, plus at most `batch` cutoffs (subject or tenant-wide) with
    /// `expires_at < before` and at most `batch` retired keys whose retention ended before
    /// `before` (active and revoked keys are kept), at most `batch` status list entries with
    /// `exp < before` (their indexes become free), and at most `batch` change-log rows with
    /// `at < before - CHANGE_RETENTION_SECS`. Every deleted revocation appends a
    /// `revocation.purge` change in the same transaction, so other nodes drop it too, and every
    /// deleted status list entry a `status_entry.purge` change. Returns
    /// what it deleted and the (tenant, jti) pairs of deleted revocations, so the index can drop
    /// them. Callers loop until a pass deletes nothing.
    async fn purge_batch(
        &self,
        before: OffsetDateTime,
        batch: u32,
    ) -> Result<Written<(PurgeCounts, Vec<(String, String)>)>>;

    // ---- master key rotation ----
    /// Up to `limit` blobs of `kind` sealed under the master key, in (tenant, id) order, strictly
    /// after `after` (from the start when `None`).
    async fn sealed_page(
        &self,
        kind: SealedKind,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<SealedBlob>>;
    /// Replaces blobs in one transaction, each only where the row still holds the blob it was
    /// read with (`old`): a row changed or deleted meanwhile is left alone. Returns how many
    /// were replaced.
    async fn reseal(&self, kind: SealedKind, blobs: &[Resealed]) -> Result<u64>;

    // ---- start-up and the change feed ----
    /// Reads everything the in-memory state is built from, consistent with one feed cursor.
    async fn load_state(&self, now: OffsetDateTime) -> Result<StateSnapshot>;
    /// Changes strictly after `after` in cursor order, at most `limit`. Only *final* changes:
    /// no change may ever appear later with a cursor <= the last one returned, so a reader
    /// that continues from the last cursor it got never skips one.
    async fn changes_after(&self, after: FeedCursor, limit: u32) -> Result<Vec<Change>>;
    /// One tenant's revocation state in one snapshot, with the cursor it is consistent with.
    /// `None` for a tenant that does not exist.
    async fn tenant_revocation_state(
        &self,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TenantRevocationState>>;
    /// The cursor of the oldest change the log still holds (`None`: the log is empty). A reader
    /// at a cursor before it may have missed changes the purge deleted.
    async fn oldest_change(&self) -> Result<Option<FeedCursor>>;

    /// Unix milliseconds of the oldest change after `after` that is committed but not yet final
    /// (held back by an older transaction still running), or `None` when there is none. A node
    /// that has read everything final is fresh only up to that instant: a long transaction
    /// that holds the feed back must make the node stale, not silently hide a committed
    /// revocation. Backends whose positions commit in order (SQLite) never hold anything back.
    async fn feed_pending_since(&self, _after: FeedCursor) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// Wakes a change-feed follower: called whenever another writer may have appended changes.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// The task that delivers a backend's change signals (see [`Database::change_signals`]).
pub type SignalTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One database: everything veto keeps ([`Store`] and [`SessionStore`] are the same database
/// seen by topic), and how it tells a node that someone else wrote. The server holds one
/// `Arc<dyn Database>`; each backend implements it once.
pub trait Database: Store + SessionStore {
    /// A task that calls `wake` whenever another writer may have appended changes, for as long
    /// as it runs (the caller owns it and stops it with the server), or `None` when the backend
    /// has no such signal. A signal only says "read the feed now": a lost one delays a change
    /// until the follower's next timed read, never loses it. PostgreSQL: `LISTEN/NOTIFY`,
    /// listening again after a lost connection. SQLite: none (other writers are other processes
    /// on the same file; the follower's timer finds their changes).
    fn change_signals(&self, wake: Wake) -> Option<crate::SignalTask>;
}

impl Database for SqliteStore {
    fn change_signals(&self, _wake: Wake) -> Option<crate::SignalTask> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn unavailable_shows_what_failed_and_keeps_the_backend_error_as_source() {
        let backend = || std::io::Error::other("disk on fire");
        let cases = [
            (Unavailable::new("a row vanished"), "a row vanished", false),
            (Unavailable::caused_by("", backend()), "disk on fire", true),
            (
                Unavailable::caused_by("migration failed", backend()),
                "migration failed: disk on fire",
                true,
            ),
        ];
        for (detail, text, has_source) in cases {
            assert_eq!(detail.to_string(), text);
            let e = StoreError::from(detail.clone());
            assert_eq!(e.to_string(), format!("store unavailable: {text}"));
            // The store error's source is the backend's error itself, not the detail around it.
            let source = e.source().map(|s| s.to_string());
            assert_eq!(source, has_source.then(|| "disk on fire".to_owned()));
            assert_eq!(detail.source().map(|s| s.to_string()), source);
            if has_source {
                let backend = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
                assert!(
                    backend.is_some(),
                    "the backend's error itself, downcastable"
                );
            }
        }
        assert!(StoreError::NotFound("x".into()).source().is_none());
    }
}

#[cfg(test)]
mod fold_tests {
    use super::*;

    fn change(position: i64, tenant: &str, kind: ChangeKind) -> Change {
        Change {
            cursor: FeedCursor { xid: 0, position },
            tenant: tenant.into(),
            kind,
            at: 0,
        }
    }

    #[test]
    fn folding_brings_a_tenant_state_to_a_later_cursor_without_what_it_held() {
        use ChangeKind::*;
        let mut s = TenantRevocationState {
            revocations: vec![("held".into(), None), ("lifted".into(), Some(500))],
            sessions: vec![("ses-1".into(), 100)],
            cursor: FeedCursor {
                xid: 0,
                position: 10,
            },
            included_after: vec![FeedCursor {
                xid: 0,
                position: 12,
            }],
            ..Default::default()
        };
        let changes = [
            change(
                11,
                "acme",
                Lifted {
                    jti: "lifted".into(),
                },
            ),
            // Held already: applying it again would change nothing here, but it is skipped.
            change(
                12,
                "acme",
                Revoked {
                    jti: "held".into(),
                    until: None,
                },
            ),
            change(
                13,
                "other",
                Revoked {
                    jti: "theirs".into(),
                    until: None,
                },
            ),
            change(
                13,
                "acme",
                Revoked {
                    jti: "new".into(),
                    until: Some(900),
                },
            ),
            change(
                14,
                "acme",
                Revoked {
                    jti: "over".into(),
                    until: Some(5),
                },
            ),
            change(
                15,
                "acme",
                SessionTouched {
                    id: "ses-1".into(),
                    idle_expires_at: 200,
                },
            ),
            change(16, "acme", SessionRevoked { id: "ses-2".into() }),
            change(
                17,
                "acme",
                SubjectCutoff {
                    sub: "alice".into(),
                    not_before_iat: 7,
                },
            ),
            change(18, "acme", TenantSuspended),
            change(19, "acme", SigningKeyRevoked { kid: "k1".into() }),
            change(
                20,
                "acme",
                RefreshFamilyRevoked {
                    family: "f1".into(),
                },
            ),
            // After `to`: not folded.
            change(21, "acme", TenantResumed),
        ];
        let to = FeedCursor {
            xid: 0,
            position: 20,
        };
        s.fold("acme", &changes, to, 10);
        assert_eq!(s.cursor, to);
        assert!(s.included_after.is_empty());
        assert_eq!(
            s.revocations,
            [("held".to_owned(), None), ("new".to_owned(), Some(900))],
            "lifted gone, the one already over left out, another tenant's ignored"
        );
        assert_eq!(s.sessions, [("ses-1".to_owned(), 200)]);
        assert_eq!(s.revoked_sessions, ["ses-2"]);
        assert_eq!(s.subject_cutoffs, [("alice".to_owned(), 7)]);
        assert!(s.suspended);
        assert_eq!(s.revoked_keys, ["k1"]);
        assert_eq!(s.revoked_families, ["f1"]);
    }
}
