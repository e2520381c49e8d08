//! What both backends share: error mapping, time conversion and record decoding.
//!
//! The two schemas store the same columns under the same names with the same meaning (unix
//! seconds, JSON as text, scopes as space-separated names), so a record is decoded by one
//! function whichever backend read it; only the column accessors differ (`Cols`).
use std::time::Duration;

use sqlx::Row;
use time::OffsetDateTime;
use veto_core::apikey::{ApiKeyRecord, Scope};
use veto_core::audit::AuditEvent;
use veto_core::cookie::{SessionKeyRecord, SessionKeyStatus};
use veto_core::keys::{KeyStatus, SigningKeyRecord};
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::revocation::{Revocation, RevocationStatus};
use veto_core::session::SessionRecord;
use veto_core::tenant::Tenant;

use crate::sessions::StoredSession;
use crate::status_list::{EntryFacts, StatusEntry, StatusListInfo};
use crate::{PurgeCounts, Result, StoreError, Unavailable};

/// How long a write may take before it is worth a log line (slow disk, lock waits).
pub(crate) const SLOW: Duration = Duration::from_secs(1);

pub(crate) const REVOCATION_COLUMNS: &str =
    "tenant, jti, sub, expires_at, revoked_at, reason, revoked_by, metadata, until";
pub(crate) const TENANT_COLUMNS: &str = "id, display_name, suspended, created_at";
pub(crate) const API_KEY_COLUMNS: &str = "id, tenant, name, scopes, key_hash, created_at";
pub(crate) const SIGNING_KEY_COLUMNS: &str = "tenant, kid, alg, status, audience, created_at, \
     retain_until, revoked_at, revoke_reason, encrypted_private, public_jwk";
pub(crate) const AUDIT_COLUMNS: &str = "id, tenant, at, actor, action, target, reason, metadata";
pub(crate) const SESSION_COLUMNS: &str = "tenant, id, actor_type, actor_id, created_at, \
     last_seen_at, idle_expires_at, absolute_expires_at, idle_timeout_seconds, ip_address, \
     user_agent, revoked_at, revoke_reason, csrf_hash";
pub(crate) const SESSION_KEY_COLUMNS: &str =
    "tenant, kid, status, created_at, retain_until, encrypted_secret";
pub(crate) const PRELOGIN_COLUMNS: &str =
    "tenant, id, state, nonce, encrypted_pkce_verifier, redirect_uri, created_at, expires_at";
pub(crate) const FAMILY_COLUMNS: &str =
    "tenant, id, sub, current_gen, revoked_at, revoke_reason, expires_at";
/// In this order: `status_entry_from_row` reads them by position (start-up reads every row).
pub(crate) const STATUS_ENTRY_COLUMNS: &str =
    "tenant, list, idx, jti, sub, sid, kid, fam, iat, exp";
pub(crate) const STATUS_LIST_COLUMNS: &str = "tenant, id, size, created_at";

// ---- errors -----------------------------------------------------------------------------------

/// Anything the backend reports that is not the caller's mistake: I/O, lost connections, pool
/// timeouts, PostgreSQL serialization failures and deadlocks. All of them may succeed on retry,
/// which is what `Unavailable` (503) tells the client.
pub(crate) fn unavailable(e: sqlx::Error) -> StoreError {
    Unavailable::caused_by("", e).into()
}

/// Unique violations become `Conflict(what)`, everything else `Unavailable`.
pub(crate) fn conflict_or_unavailable(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what()),
        _ => unavailable(e),
    }
}

/// Every tenant-owned row references `tenants`: a foreign-key violation means the tenant named
/// by the caller does not exist.
pub(crate) fn missing_tenant_or_unavailable(e: sqlx::Error, tenant: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound(format!("tenant {tenant:?}"))
        }
        _ => unavailable(e),
    }
}

/// An API key insert: which of id or secret collided is deliberately left vague (nobody's
/// business), a missing tenant is `NotFound`.
pub(crate) fn api_key_insert_error(e: sqlx::Error, tenant: Option<&str>) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict("an API key with this id or secret already exists".into())
        }
        _ => missing_tenant_or_unavailable(e, tenant.unwrap_or("")),
    }
}

/// A signing key insert: a taken kid is `Conflict`, a missing tenant `NotFound`.
pub(crate) fn signing_key_insert_error(e: sqlx::Error, k: &SigningKeyRecord) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("key {:?} already exists", k.kid))
        }
        _ => missing_tenant_or_unavailable(e, &k.tenant),
    }
}

/// A batch insert that names an unknown tenant fails as a whole.
pub(crate) fn batch_insert_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            StoreError::NotFound("the tenant of a revocation in the batch does not exist".into())
        }
        _ => unavailable(e),
    }
}

pub(crate) fn audit_conflict(e: sqlx::Error) -> StoreError {
    conflict_or_unavailable(e, || "an audit event with this id exists".into())
}

pub(crate) fn vanished() -> StoreError {
    Unavailable::new("a conflicting revocation vanished mid-transaction").into()
}

// ---- times and records --------------------------------------------------------------------------

pub(crate) fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn now_ts() -> i64 {
    ts(veto_core::timeutil::now())
}

pub(crate) fn from_ts(secs: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| Unavailable::new(format!("stored time {secs} is out of range")).into())
}

pub(crate) fn opt_from_ts(secs: Option<i64>) -> Result<Option<OffsetDateTime>> {
    secs.map(from_ts).transpose()
}

/// A time as it reads back from the store: whole seconds.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// A revocation as it reads back from the store, so that the record returned by an insert equals
/// the one every later read returns.
pub(crate) fn as_stored(rec: &Revocation) -> Revocation {
    let until = rec.until.map(whole_seconds);
    Revocation {
        expires_at: whole_seconds(rec.expires_at),
        revoked_at: whole_seconds(rec.revoked_at),
        until,
        status: RevocationStatus::of(until),
        ..rec.clone()
    }
}

/// Scopes are stored as their names separated by spaces (the OAuth `scope` convention).
pub(crate) fn scopes_to_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stored JSON that no longer parses (it always parses when written by veto) is shown as null
/// rather than failing the whole list it appears in.
fn json_or_null(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// Typed column access, the one thing that differs between the backends' rows: by name, or
/// by position (`*_at`, cheaper where millions of rows are read). A column that does not decode
/// is `Unavailable`: the schema is ours, so it means a broken database.
pub(crate) trait Cols {
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>>;
    /// SQLite stores booleans as 0/1 integers, PostgreSQL as `boolean`.
    fn flag(&self, col: &str) -> Result<bool>;
    fn int_at(&self, col: usize) -> Result<i64>;
    fn opt_int_at(&self, col: usize) -> Result<Option<i64>>;
    fn text_at(&self, col: usize) -> Result<String>;
    fn opt_text_at(&self, col: usize) -> Result<Option<String>>;
    fn flag_at(&self, col: usize) -> Result<bool>;
}

macro_rules! cols_for {
    ($row:ty, $flag:ty) => {
        impl Cols for $row {
            fn int(&self, col: &str) -> Result<i64> {
                self.try_get(col).map_err(unavailable)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>> {
                self.try_get(col).map_err(unavailable)
            }
            fn text(&self, col: &str) -> Result<String> {
                self.try_get(col).map_err(unavailable)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                self.try_get(col).map_err(unavailable)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>> {
                self.try_get(col).map_err(unavailable)
            }
            fn flag(&self, col: &str) -> Result<bool> {
                let v: $flag = self.try_get(col).map_err(unavailable)?;
                Ok(FlagValue::into_flag(v))
            }
            fn int_at(&self, col: usize) -> Result<i64> {
                self.try_get(col).map_err(unavailable)
            }
            fn opt_int_at(&self, col: usize) -> Result<Option<i64>> {
                self.try_get(col).map_err(unavailable)
            }
            fn text_at(&self, col: usize) -> Result<String> {
                self.try_get(col).map_err(unavailable)
            }
            fn opt_text_at(&self, col: usize) -> Result<Option<String>> {
                self.try_get(col).map_err(unavailable)
            }
            fn flag_at(&self, col: usize) -> Result<bool> {
                let v: $flag = self.try_get(col).map_err(unavailable)?;
                Ok(FlagValue::into_flag(v))
            }
        }
    };
}

/// How each backend stores a boolean: SQLite as a 0/1 integer, PostgreSQL as `boolean`.
trait FlagValue {
    fn into_flag(self) -> bool;
}

impl FlagValue for i64 {
    fn into_flag(self) -> bool {
        self != 0
    }
}

impl FlagValue for bool {
    fn into_flag(self) -> bool {
        self
    }
}

cols_for!(sqlx::sqlite::SqliteRow, i64);
cols_for!(sqlx::postgres::PgRow, bool);

pub(crate) fn tenant_from_row(r: &impl Cols) -> Result<Tenant> {
    Ok(Tenant {
        id: r.text("id")?,
        display_name: r.text("display_name")?,
        suspended: r.flag("suspended")?,
        created_at: from_ts(r.int("created_at")?)?,
    })
}

pub(crate) fn revocation_from_row(r: &impl Cols) -> Result<Revocation> {
    let until = opt_from_ts(r.opt_int("until")?)?;
    Ok(Revocation {
        jti: r.text("jti")?,
        tenant: r.text("tenant")?,
        sub: r.opt_text("sub")?,
        expires_at: from_ts(r.int("expires_at")?)?,
        revoked_at: from_ts(r.int("revoked_at")?)?,
        reason: r.opt_text("reason")?,
        revoked_by: r.text("revoked_by")?,
        metadata: json_or_null(&r.text("metadata")?),
        until,
        status: RevocationStatus::of(until),
    })
}

pub(crate) fn api_key_from_row(r: &impl Cols) -> Result<ApiKeyRecord> {
    let scopes = r.text("scopes")?;
    let hash = r.bytes("key_hash")?;
    Ok(ApiKeyRecord {
        id: r.text("id")?,
        tenant: r.opt_text("tenant")?,
        name: r.text("name")?,
        // Unknown scope names (from a newer version) are dropped: a key never gains a scope
        // it was not given.
        scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
        key_hash: hash
            .as_slice()
            .try_into()
            .map_err(|_| Unavailable::new("stored API key hash has the wrong length"))?,
        created_at: from_ts(r.int("created_at")?)?,
    })
}

pub(crate) fn signing_key_from_row(r: &impl Cols) -> Result<SigningKeyRecord> {
    let alg = r.text("alg")?;
    let status = r.text("status")?;
    let public_jwk = match r.opt_text("public_jwk")? {
        None => None,
        // A public key that no longer parses would make verification silently fail: refuse.
        Some(j) => Some(
            serde_json::from_str(&j)
                .map_err(|e| Unavailable::caused_by("a stored public JWK is not valid JSON", e))?,
        ),
    };
    Ok(SigningKeyRecord {
        kid: r.text("kid")?,
        tenant: r.text("tenant")?,
        alg: alg
            .parse()
            .map_err(|_| Unavailable::new(format!("stored key has unknown alg {alg:?}")))?,
        status: KeyStatus::parse(&status)
            .ok_or_else(|| Unavailable::new(format!("stored key has unknown status {status:?}")))?,
        audience: r.opt_text("audience")?,
        created_at: from_ts(r.int("created_at")?)?,
        retain_until: opt_from_ts(r.opt_int("retain_until")?)?,
        revoked_at: opt_from_ts(r.opt_int("revoked_at")?)?,
        revoke_reason: r.opt_text("revoke_reason")?,
        encrypted_private: r.bytes("encrypted_private")?,
        public_jwk,
    })
}

pub(crate) fn audit_from_row(r: &impl Cols) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.text("id")?,
        tenant: r.text("tenant")?,
        at: from_ts(r.int("at")?)?,
        actor: r.text("actor")?,
        action: r.text("action")?,
        target: r.text("target")?,
        reason: r.opt_text("reason")?,
        metadata: json_or_null(&r.text("metadata")?),
    })
}

fn broken(what: &str) -> StoreError {
    Unavailable::new(format!("a stored {what} is malformed")).into()
}

pub(crate) fn session_from_row(r: &impl Cols) -> Result<StoredSession> {
    let csrf = r.bytes("csrf_hash")?;
    Ok(StoredSession {
        record: SessionRecord {
            id: r.text("id")?,
            tenant: r.text("tenant")?,
            actor_id: r.text("actor_id")?,
            actor_type: r.text("actor_type")?,
            created_at: from_ts(r.int("created_at")?)?,
            last_seen_at: from_ts(r.int("last_seen_at")?)?,
            idle_expires_at: from_ts(r.int("idle_expires_at")?)?,
            absolute_expires_at: from_ts(r.int("absolute_expires_at")?)?,
            ip_address: r.opt_text("ip_address")?,
            user_agent: r.opt_text("user_agent")?,
            revoked_at: opt_from_ts(r.opt_int("revoked_at")?)?,
            revoke_reason: r.opt_text("revoke_reason")?,
            csrf_hash: csrf
                .as_slice()
                .try_into()
                .map_err(|_| broken("session CSRF hash"))?,
        },
        idle_timeout_seconds: r.int("idle_timeout_seconds")?,
    })
}

pub(crate) fn session_key_from_row(r: &impl Cols) -> Result<SessionKeyRecord> {
    let status = r.text("status")?;
    Ok(SessionKeyRecord {
        tenant: r.text("tenant")?,
        kid: r.text("kid")?,
        status: SessionKeyStatus::parse(&status).ok_or_else(|| broken("session key status"))?,
        created_at: from_ts(r.int("created_at")?)?,
        retain_until: opt_from_ts(r.opt_int("retain_until")?)?,
        encrypted_secret: r.bytes("encrypted_secret")?,
    })
}

pub(crate) fn prelogin_from_row(r: &impl Cols) -> Result<PreLoginRecord> {
    Ok(PreLoginRecord {
        id: r.text("id")?,
        tenant: r.text("tenant")?,
        state: r.text("state")?,
        nonce: r.text("nonce")?,
        encrypted_pkce_verifier: r.bytes("encrypted_pkce_verifier")?,
        redirect_uri: r.opt_text("redirect_uri")?,
        created_at: from_ts(r.int("created_at")?)?,
        expires_at: from_ts(r.int("expires_at")?)?,
    })
}

pub(crate) fn family_from_row(r: &impl Cols) -> Result<RefreshFamily> {
    Ok(RefreshFamily {
        tenant: r.text("tenant")?,
        id: r.text("id")?,
        sub: r.text("sub")?,
        current_gen: u32::try_from(r.int("current_gen")?)
            .map_err(|_| broken("refresh family generation"))?,
        revoked_at: opt_from_ts(r.opt_int("revoked_at")?)?,
        revoke_reason: r.opt_text("revoke_reason")?,
        expires_at: from_ts(r.int("expires_at")?)?,
    })
}

/// A stored status list index or size, which is a u32 when veto wrote it.
fn stored_u32(v: i64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| broken(what))
}

/// A row of [`STATUS_ENTRY_COLUMNS`], by position.
pub(crate) fn status_entry_from_row(r: &impl Cols) -> Result<StatusEntry> {
    Ok(StatusEntry {
        tenant: r.text_at(0)?,
        list: r.text_at(1)?,
        idx: stored_u32(r.int_at(2)?, "status list index")?,
        facts: EntryFacts {
            jti: r.text_at(3)?.into(),
            sub: r.opt_text_at(4)?.map(Into::into),
            sid: r.opt_text_at(5)?.map(Into::into),
            kid: r.text_at(6)?.into(),
            fam: r.opt_text_at(7)?.map(Into::into),
            iat: r.int_at(8)?,
            exp: r.int_at(9)?,
        },
    })
}

/// A row of [`STATUS_LIST_COLUMNS`].
pub(crate) fn status_list_from_row(r: &impl Cols) -> Result<StatusListInfo> {
    Ok(StatusListInfo {
        tenant: r.text("tenant")?,
        id: r.text("id")?,
        size: stored_u32(r.int("size")?, "status list size")?,
        created_at: from_ts(r.int("created_at")?)?,
    })
}

/// Of `items`, the indexes whose (tenant, jti) the database reports as inserted (RETURNING
/// order is unspecified: matched by key). `remove` makes a jti repeated within `items` count as
/// created once, at its first occurrence, the one the database inserted.
pub(crate) fn first_occurrences(
    items: &[(Revocation, AuditEvent)],
    inserted: Vec<(String, String)>,
) -> Vec<usize> {
    let mut inserted: std::collections::HashSet<(String, String)> = inserted.into_iter().collect();
    items
        .iter()
        .enumerate()
        .filter(|(_, (r, _))| inserted.remove(&(r.tenant.clone(), r.jti.clone())))
        .map(|(i, _)| i)
        .collect()
}

// ---- slow-write logs ----------------------------------------------------------------------------

/// The answer of `insert_revocations`, after logging the batch if it was slow.
pub(crate) fn batch_done(
    started: std::time::Instant,
    rows: usize,
    created: usize,
    written: Vec<Revocation>,
) -> (u64, u64, Vec<Revocation>) {
    let elapsed = started.elapsed();
    if elapsed > SLOW {
        tracing::warn!(
            rows,
            created,
            elapsed_ms = elapsed.as_millis() as u64,
            "slow revocation batch"
        );
    }
    let n = created as u64;
    (n, rows as u64 - n, written)
}

/// The answer of `purge_batch`, after logging the pass if it was slow.
pub(crate) fn purge_done(
    started: std::time::Instant,
    counts: PurgeCounts,
    jtis: Vec<(String, String)>,
) -> (PurgeCounts, Vec<(String, String)>) {
    let elapsed = started.elapsed();
    if elapsed > SLOW {
        tracing::warn!(
            revocations = counts.revocations,
            cutoffs = counts.cutoffs,
            signing_keys = counts.signing_keys,
            status_entries = counts.status_entries,
            changes = counts.changes,
            elapsed_ms = elapsed.as_millis() as u64,
            "slow purge batch"
        );
    }
    (counts, jtis)
}
