//! The `SessionStore` statements both backends run word for word: a child module of `sql`, on
//! the same [`Conn`] and with the same rules (PostgreSQL's `$n` placeholders, SQL both dialects
//! share, `CASE` instead of `max`/`GREATEST`). The methods of `backend/sessions.rs` begin the
//! transaction through the backend (with the keys it locks), call in here, and commit; what
//! differs (how a bounded delete is written, how locks are taken, how a commit is announced)
//! stays in the backends.
use std::time::Instant;

use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::SessionKeyRecord;
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::session::SessionRecord;

use super::{Arg, BoundedDelete, Conn, insert_audit, insert_change, one};
use crate::change::ChangeKind;
use crate::rows::{
    Cols, FAMILY_COLUMNS, PRELOGIN_COLUMNS, SESSION_COLUMNS, SESSION_KEY_COLUMNS, SLOW,
    family_from_row, missing_tenant_or_unavailable, prelogin_from_row, session_from_row,
    session_key_from_row, ts, unavailable,
};
use crate::sessions::{Revoked, SessionKeyInsert, SessionPurge, SessionSnapshot, StoredSession};
use crate::{Result, StoreError, Unavailable};

use Arg::{Bytes, Int, OptInt, OptText, Text};

/// Inserts a tenant-owned row: a taken primary key is `Conflict(what)`, an unknown tenant
/// `NotFound`.
fn insert_error(e: sqlx::Error, tenant: &str, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("{what} already exists"))
        }
        _ => missing_tenant_or_unavailable(e, tenant),
    }
}

/// Decodes every row with `from_row`.
fn decode_all<R, T>(rows: Vec<R>, from_row: impl Fn(&R) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(from_row).collect()
}

// ---- sessions ---------------------------------------------------------------------------------

/// Stores a new session and appends its `session.create` change.
pub(crate) async fn insert_session<C: Conn>(c: &mut C, s: &StoredSession) -> Result<()> {
    let r = &s.record;
    let sql = format!(
        "INSERT INTO sessions ({SESSION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    let args = vec![
        Text(&r.tenant),
        Text(&r.id),
        Text(&r.actor_type),
        Text(&r.actor_id),
        Int(ts(r.created_at)),
        Int(ts(r.last_seen_at)),
        Int(ts(r.idle_expires_at)),
        Int(ts(r.absolute_expires_at)),
        Int(s.idle_timeout_seconds),
        OptText(r.ip_address.as_deref()),
        OptText(r.user_agent.as_deref()),
        OptInt(r.revoked_at.map(ts)),
        OptText(r.revoke_reason.as_deref()),
        Bytes(r.csrf_hash.as_slice()),
    ];
    c.exec(&sql, args)
        .await
        .map_err(|e| insert_error(e, &r.tenant, &format!("session {:?}", r.id)))?;
    let kind = ChangeKind::SessionCreated {
        id: r.id.clone(),
        idle_expires_at: ts(r.idle_expires_at),
    };
    insert_change(c, &r.tenant, kind).await
}

/// The row `sql` (with `tenant = $1 AND id = $2`) returns, if any, decoded.
async fn by_key<C: Conn, T>(
    c: &mut C,
    sql: &str,
    (tenant, id): (&str, &str),
    from_row: impl Fn(&C::Row) -> Result<T>,
) -> Result<Option<T>> {
    one(c, sql, vec![Text(tenant), Text(id)])
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// One row by (tenant, id) of `table` (sessions, prelogin or refresh_families).
async fn row_by_id<C: Conn, T>(
    c: &mut C,
    (columns, table): (&str, &str),
    tenant: &str,
    id: &str,
    from_row: impl Fn(&C::Row) -> Result<T>,
) -> Result<Option<T>> {
    let sql = format!("SELECT {columns} FROM {table} WHERE tenant = $1 AND id = $2");
    by_key(c, &sql, (tenant, id), from_row).await
}

pub(crate) async fn get_session<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
) -> Result<Option<StoredSession>> {
    let table = (SESSION_COLUMNS, "sessions");
    row_by_id(c, table, tenant, id, session_from_row).await
}

pub(crate) async fn get_refresh_family<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
) -> Result<Option<RefreshFamily>> {
    let table = (FAMILY_COLUMNS, "refresh_families");
    row_by_id(c, table, tenant, id, family_from_row).await
}

/// Writes a touch back: both times rise, never fall, and the idle expiry never passes the
/// absolute one (`min(max(idle, $2), absolute)`, as `CASE`). `false` for a revoked or unknown
/// session, which is left alone; otherwise a `session.touch` change with the stored expiry.
pub(crate) async fn touch_session<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
    last_seen_at: OffsetDateTime,
    idle_expires_at: OffsetDateTime,
) -> Result<bool> {
    let row = one(
        c,
        "UPDATE sessions SET \
           last_seen_at = CASE WHEN $1 > last_seen_at THEN $1 ELSE last_seen_at END, \
           idle_expires_at = CASE \
             WHEN idle_expires_at >= absolute_expires_at OR $2 >= absolute_expires_at \
               THEN absolute_expires_at \
             WHEN $2 > idle_expires_at THEN $2 \
             ELSE idle_expires_at END \
         WHERE tenant = $3 AND id = $4 AND revoked_at IS NULL RETURNING idle_expires_at",
        vec![
            Int(ts(last_seen_at)),
            Int(ts(idle_expires_at)),
            Text(tenant),
            Text(id),
        ],
    )
    .await
    .map_err(unavailable)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let stored = row.int_at(0)?;
    let kind = ChangeKind::SessionTouched {
        id: id.to_owned(),
        idle_expires_at: stored,
    };
    insert_change(c, tenant, kind).await?;
    Ok(true)
}

/// What `revoke_row` revokes: (columns, table, the change it appends given the row's id).
type RevokeWhat = (&'static str, &'static str, fn(String) -> ChangeKind);

const REVOKE_SESSION: RevokeWhat = (SESSION_COLUMNS, "sessions", |id| {
    ChangeKind::SessionRevoked { id }
});

const REVOKE_FAMILY: RevokeWhat = (FAMILY_COLUMNS, "refresh_families", |family| {
    ChangeKind::RefreshFamilyRevoked { family }
});

/// Sets `revoked_at` / `revoke_reason` of one row of `table` (sessions or refresh_families)
/// unless it is already revoked, writing the audit event and a `kind` change with it. Returns
/// the row after the call, and whether this call revoked it; when it did not, nothing was
/// written and the caller need not commit.
async fn revoke_row<C: Conn, T>(
    c: &mut C,
    (columns, table, kind): RevokeWhat,
    tenant: &str,
    id: &str,
    audit: &AuditEvent,
    from_row: impl Fn(&C::Row) -> Result<T>,
) -> Result<Option<Revoked<T>>> {
    let sql = format!(
        "UPDATE {table} SET revoked_at = $1, revoke_reason = $2 \
         WHERE tenant = $3 AND id = $4 AND revoked_at IS NULL RETURNING {columns}"
    );
    let args = vec![
        Int(ts(audit.at)),
        OptText(audit.reason.as_deref()),
        Text(tenant),
        Text(id),
    ];
    if let Some(row) = one(c, &sql, args).await.map_err(unavailable)? {
        let record = from_row(&row)?;
        insert_audit(c, audit).await?;
        insert_change(c, tenant, kind(id.to_owned())).await?;
        return Ok(Some(Revoked {
            record,
            newly: true,
        }));
    }
    // Already revoked, or unknown: read it inside the same transaction (in PostgreSQL's READ
    // COMMITTED a new statement, so it sees the revocation that made the update a no-op).
    let record = row_by_id(c, (columns, table), tenant, id, from_row).await?;
    Ok(record.map(|record| Revoked {
        record,
        newly: false,
    }))
}

/// Revokes one session (see `SessionStore::revoke_session`); commit only if [`newly`].
pub(crate) async fn revoke_session<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
    audit: &AuditEvent,
) -> Result<Option<Revoked<SessionRecord>>> {
    let from_row = |r: &C::Row| session_from_row(r).map(|s| s.record);
    revoke_row(c, REVOKE_SESSION, tenant, id, audit, from_row).await
}

/// Revokes one refresh family (see `SessionStore::revoke_refresh_family`); commit only if
/// [`newly`].
pub(crate) async fn revoke_refresh_family<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
    audit: &AuditEvent,
) -> Result<Option<Revoked<RefreshFamily>>> {
    revoke_row(c, REVOKE_FAMILY, tenant, id, audit, family_from_row).await
}

/// Whether a revocation wrote anything: only a row not revoked before is.
pub(crate) fn newly<T>(revoked: &Option<Revoked<T>>) -> bool {
    revoked.as_ref().is_some_and(|r| r.newly)
}

/// The ids of the actor's sessions not yet revoked.
pub(crate) async fn unrevoked_session_ids<C: Conn>(
    c: &mut C,
    tenant: &str,
    actor_type: &str,
    actor_id: &str,
) -> Result<Vec<String>> {
    let rows = c
        .rows(
            "SELECT id FROM sessions \
             WHERE tenant = $1 AND actor_type = $2 AND actor_id = $3 AND revoked_at IS NULL",
            vec![Text(tenant), Text(actor_type), Text(actor_id)],
        )
        .await
        .map_err(unavailable)?;
    decode_all(rows, |r| r.text_at(0))
}

/// The per-session audit event of a bulk revocation, made from the caller's template.
fn audit_for(template: &AuditEvent, target: &str) -> AuditEvent {
    AuditEvent {
        at: template.at,
        metadata: template.metadata.clone(),
        ..AuditEvent::new(&template.tenant, &template.actor, &template.action, target)
            .with_reason(template.reason.as_deref())
    }
}

/// Revokes every session of the actor not yet revoked, with one audit event (from `audit`) and
/// one `session.revoke` change each. Returns the ids revoked, sorted.
pub(crate) async fn revoke_actor_sessions<C: Conn>(
    c: &mut C,
    tenant: &str,
    actor_type: &str,
    actor_id: &str,
    audit: &AuditEvent,
) -> Result<Vec<String>> {
    let rows = c
        .rows(
            "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 \
             WHERE tenant = $3 AND actor_type = $4 AND actor_id = $5 AND revoked_at IS NULL \
             RETURNING id",
            vec![
                Int(ts(audit.at)),
                OptText(audit.reason.as_deref()),
                Text(tenant),
                Text(actor_type),
                Text(actor_id),
            ],
        )
        .await
        .map_err(unavailable)?;
    let mut ids = decode_all(rows, |r| r.text_at(0))?;
    // RETURNING order is unspecified; a sorted answer is stable for callers and tests.
    ids.sort_unstable();
    for id in &ids {
        insert_audit(c, &audit_for(audit, id)).await?;
        let id = id.clone();
        insert_change(c, tenant, ChangeKind::SessionRevoked { id }).await?;
    }
    Ok(ids)
}

// ---- session signing keys ---------------------------------------------------------------------

/// Inserts an active key (see [`SessionKeyInsert`]) with its audit event and change. The caller
/// must keep other writers of the tenant's keys out until it commits (SQLite's write lock,
/// PostgreSQL's key lock): the `IfNoneActive` check and the insert are two statements.
pub(crate) async fn insert_session_key<C: Conn>(
    c: &mut C,
    key: &SessionKeyRecord,
    mode: SessionKeyInsert,
    audit: &AuditEvent,
) -> Result<bool> {
    match mode {
        SessionKeyInsert::IfNoneActive => {
            let active = one(
                c,
                "SELECT EXISTS (SELECT 1 FROM session_keys \
                   WHERE tenant = $1 AND status = 'active')",
                vec![Text(&key.tenant)],
            )
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Unavailable::new("EXISTS returned no row"))?;
            if active.flag_at(0)? {
                return Ok(false);
            }
        }
        SessionKeyInsert::Rotate { retain_until } => {
            c.exec(
                "UPDATE session_keys SET status = 'retired', retain_until = $1 \
                 WHERE tenant = $2 AND status = 'active'",
                vec![Int(ts(retain_until)), Text(&key.tenant)],
            )
            .await
            .map_err(unavailable)?;
        }
    }
    let sql =
        format!("INSERT INTO session_keys ({SESSION_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)");
    let args = vec![
        Text(&key.tenant),
        Text(&key.kid),
        Text(key.status.as_str()),
        Int(ts(key.created_at)),
        OptInt(key.retain_until.map(ts)),
        Bytes(&key.encrypted_secret),
    ];
    c.exec(&sql, args)
        .await
        .map_err(|e| insert_error(e, &key.tenant, &format!("session key {:?}", key.kid)))?;
    insert_audit(c, audit).await?;
    let kid = key.kid.clone();
    insert_change(c, &key.tenant, ChangeKind::SessionKeyInserted { kid }).await?;
    Ok(true)
}

/// All keys of a tenant, newest first.
pub(crate) async fn list_session_keys<C: Conn>(
    c: &mut C,
    tenant: &str,
) -> Result<Vec<SessionKeyRecord>> {
    let sql = format!(
        "SELECT {SESSION_KEY_COLUMNS} FROM session_keys WHERE tenant = $1 \
         ORDER BY created_at DESC, kid DESC"
    );
    let rows = c
        .rows(&sql, vec![Text(tenant)])
        .await
        .map_err(unavailable)?;
    decode_all(rows, session_key_from_row)
}

// ---- pre-login state and refresh families -----------------------------------------------------

pub(crate) async fn insert_prelogin<C: Conn>(c: &mut C, rec: &PreLoginRecord) -> Result<()> {
    let sql = format!(
        "INSERT INTO prelogin ({PRELOGIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    );
    let args = vec![
        Text(&rec.tenant),
        Text(&rec.id),
        Text(&rec.state),
        Text(&rec.nonce),
        Bytes(&rec.encrypted_pkce_verifier),
        OptText(rec.redirect_uri.as_deref()),
        Int(ts(rec.created_at)),
        Int(ts(rec.expires_at)),
    ];
    c.exec(&sql, args)
        .await
        .map_err(|e| insert_error(e, &rec.tenant, &format!("pre-login {:?}", rec.id)))?;
    Ok(())
}

/// Deletes the record and returns it: one statement, so of concurrent consumes exactly one gets
/// the row (the others find it gone: SQLite runs them one after another, PostgreSQL makes each
/// wait for the deleting transaction and then skips the deleted row).
pub(crate) async fn take_prelogin<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
) -> Result<Option<PreLoginRecord>> {
    let sql =
        format!("DELETE FROM prelogin WHERE tenant = $1 AND id = $2 RETURNING {PRELOGIN_COLUMNS}");
    by_key(c, &sql, (tenant, id), prelogin_from_row).await
}

pub(crate) async fn insert_refresh_family<C: Conn>(c: &mut C, f: &RefreshFamily) -> Result<()> {
    let sql = format!(
        "INSERT INTO refresh_families ({FAMILY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    );
    let args = vec![
        Text(&f.tenant),
        Text(&f.id),
        Text(&f.sub),
        Int(i64::from(f.current_gen)),
        OptInt(f.revoked_at.map(ts)),
        OptText(f.revoke_reason.as_deref()),
        Int(ts(f.expires_at)),
    ];
    c.exec(&sql, args)
        .await
        .map_err(|e| insert_error(e, &f.tenant, &format!("refresh family {:?}", f.id)))?;
    Ok(())
}

/// The compare-and-swap of a rotation: one `UPDATE` whose condition is the expected state.
/// In PostgreSQL's READ COMMITTED a concurrent rotation of the same family waits for this row's
/// lock and then re-evaluates the condition against the committed row (`current_gen` moved: no
/// match); SQLite runs them one after another.
pub(crate) async fn rotate_refresh_family<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
    from: u32,
    to: u32,
) -> Result<bool> {
    let done = c
        .exec(
            "UPDATE refresh_families SET current_gen = $1 \
             WHERE tenant = $2 AND id = $3 AND current_gen = $4 AND revoked_at IS NULL",
            vec![
                Int(i64::from(to)),
                Text(tenant),
                Text(id),
                Int(i64::from(from)),
            ],
        )
        .await
        .map_err(unavailable)?;
    Ok(done == 1)
}

// ---- purge and start-up -----------------------------------------------------------------------

/// Deletes at most `limit` rows of `table` matching `condition` (on `time`), found through the
/// expiry indexes; returns the tenant and key (id, or kid for keys) of each.
async fn delete_bounded<C: Conn>(
    c: &mut C,
    bounded: BoundedDelete,
    table: &str,
    condition: &str,
    time: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let key = if table == "session_keys" { "kid" } else { "id" };
    let sql = bounded(table, condition, &format!("RETURNING tenant, {key}"));
    let rows = c
        .rows(&sql, vec![Int(time), Int(limit)])
        .await
        .map_err(unavailable)?;
    decode_all(rows, |r| Ok((r.text_at(0)?, r.text_at(1)?)))
}

/// One bounded purge pass (see `SessionStore::purge_sessions_batch`), with the `session.purge`
/// and `refresh.purge` changes of what it deleted. The caller holds whatever keeps other writers
/// off the victims (SQLite's write lock, PostgreSQL's whole-store lock).
pub(crate) async fn purge_sessions<C: Conn>(
    c: &mut C,
    bounded: BoundedDelete,
    before: OffsetDateTime,
    linger: Duration,
    batch: u32,
) -> Result<SessionPurge> {
    let started = Instant::now();
    let limit = i64::from(batch.max(1));
    let before_rows = ts(before.saturating_sub(linger));
    let before = ts(before);
    let sessions = delete_bounded(
        c,
        bounded,
        "sessions",
        "absolute_expires_at < $1",
        before_rows,
        limit,
    )
    .await?;
    let refresh_families = delete_bounded(
        c,
        bounded,
        "refresh_families",
        "expires_at < $1",
        before_rows,
        limit,
    )
    .await?;
    let prelogin = delete_bounded(c, bounded, "prelogin", "expires_at < $1", before, limit).await?;
    // Active keys are never purged: the partial index holds retired ones only.
    let retired = "status = 'retired' AND retain_until < $1";
    let session_keys = delete_bounded(c, bounded, "session_keys", retired, before, limit).await?;
    for (tenant, id) in &sessions {
        let id = id.clone();
        insert_change(c, tenant, ChangeKind::SessionPurged { id }).await?;
    }
    for (tenant, family) in &refresh_families {
        let family = family.clone();
        insert_change(c, tenant, ChangeKind::RefreshFamilyPurged { family }).await?;
    }
    let purge = SessionPurge {
        sessions,
        prelogin: prelogin.len() as u64,
        refresh_families,
        session_keys,
    };
    if started.elapsed() > SLOW {
        tracing::warn!(
            sessions = purge.sessions.len(),
            refresh_families = purge.refresh_families.len(),
            prelogin = purge.prelogin,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "slow session purge batch"
        );
    }
    Ok(purge)
}

/// Everything `load_sessions` returns. Call inside one read transaction (one snapshot for all
/// three tables).
pub(crate) async fn read_sessions<C: Conn>(c: &mut C) -> Result<SessionSnapshot> {
    let rows = c
        .rows(
            "SELECT tenant, id, last_seen_at, idle_expires_at, revoked_at FROM sessions",
            vec![],
        )
        .await
        .map_err(unavailable)?;
    let mut snap = SessionSnapshot::default();
    for r in &rows {
        let (tenant, id) = (r.text_at(0)?, r.text_at(1)?);
        match r.opt_int_at(4)? {
            Some(_) => snap.revoked_sessions.push((tenant, id)),
            None => snap.sessions.push((tenant, id, r.int_at(2)?, r.int_at(3)?)),
        }
    }
    let sql = format!("SELECT {SESSION_KEY_COLUMNS} FROM session_keys");
    let rows = c.rows(&sql, vec![]).await.map_err(unavailable)?;
    snap.session_keys = decode_all(rows, session_key_from_row)?;
    let rows = c
        .rows(
            "SELECT tenant, id FROM refresh_families WHERE revoked_at IS NOT NULL",
            vec![],
        )
        .await
        .map_err(unavailable)?;
    snap.revoked_families = decode_all(rows, |r| Ok((r.text_at(0)?, r.text_at(1)?)))?;
    Ok(snap)
}

/// The start-up log line of `load_sessions`.
pub(crate) fn log_loaded(snap: &SessionSnapshot, started: Instant, from: &str) {
    tracing::info!(
        sessions = snap.sessions.len(),
        revoked_sessions = snap.revoked_sessions.len(),
        session_keys = snap.session_keys.len(),
        revoked_families = snap.revoked_families.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded session state from {from}"
    );
}
