//! [`SessionStore`] for the embedded store. A child module of `sqlite` (declared there with
//! `#[path]`), so that it shares the store's private writer and reader pools, its `BEGIN
//! IMMEDIATE` write transactions and its audit and change-log helpers without widening their
//! visibility.
//!
//! The two atomicity guarantees of `SessionStore` come from SQLite's single writer: every write
//! transaction holds the write lock from its first statement (`BEGIN IMMEDIATE`), so the
//! `DELETE … RETURNING` of a pre-login consume and the `UPDATE … WHERE current_gen = ?` of a
//! refresh rotation run strictly one after another; the second of two concurrent calls finds
//! the row gone or the generation moved.
use std::time::Instant;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::SessionKeyRecord;
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::session::SessionRecord;

use super::{SqliteStore, insert_audit, insert_change};
use crate::cursor::Cursor;
use crate::rows::{self, SLOW, missing_tenant_or_unavailable, ts};
use crate::sessions::{
    FAMILY_COLUMNS, PRELOGIN_COLUMNS, Revoked, SESSION_COLUMNS, SESSION_KEY_COLUMNS,
    SessionKeyInsert, SessionPurge, SessionSnapshot, SessionStore, StoredSession, audit_for,
    family_from_row, prelogin_from_row, session_from_row, session_key_from_row,
};
use crate::{Page, PageRequest, Result, StoreError, change};

fn unavailable(e: sqlx::Error) -> StoreError {
    rows::unavailable(e)
}

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

/// Deletes at most `limit` rows of `table` matching `condition` (whose one parameter is `time`),
/// returning the tenant and key (id, or kid for keys) of each. Bounded and rowid-limited like
/// `purge_batch`, for the same reasons; the victims are found through the expiry indexes.
async fn delete_bounded(
    tx: &mut sqlx::SqliteConnection,
    table: &str,
    condition: &str,
    time: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    let key = if table == "session_keys" { "kid" } else { "id" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE rowid IN \
           (SELECT rowid FROM {table} WHERE {condition} LIMIT ?) RETURNING tenant, {key}"
    )))
    .bind(time)
    .bind(limit)
    .fetch_all(tx)
    .await
    .map_err(unavailable)
}

impl SqliteStore {
    /// One row by (tenant, id) of `table`, on a reader connection.
    async fn row_by_id<T>(
        &self,
        columns: &str,
        table: &str,
        tenant: &str,
        id: &str,
        from_row: fn(&SqliteRow) -> Result<T>,
    ) -> Result<Option<T>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} WHERE tenant = ? AND id = ?"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(from_row)
        .transpose()
    }

    /// Sets `revoked_at` / `revoke_reason` of one row of `table` (sessions or refresh_families)
    /// unless it is already revoked, writing the audit event and a `kind` change with it. Returns
    /// the row after the call, and whether this call revoked it.
    async fn revoke_row<T>(
        &self,
        (columns, table, kind): (&str, &str, &str),
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
        from_row: fn(&SqliteRow) -> Result<T>,
    ) -> Result<Option<Revoked<T>>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET revoked_at = ?, revoke_reason = ? \
             WHERE tenant = ? AND id = ? AND revoked_at IS NULL RETURNING {columns}"
        )))
        .bind(ts(audit.at))
        .bind(&audit.reason)
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        if let Some(row) = row {
            let record = from_row(&row)?;
            insert_audit(&mut tx, audit).await?;
            insert_change(&mut tx, tenant, kind, id, None).await?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(Some(Revoked {
                record,
                newly: true,
            }));
        }
        // Already revoked, or unknown: read it inside the same transaction; nothing is written.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} WHERE tenant = ? AND id = ?"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        row.as_ref()
            .map(|r| {
                from_row(r).map(|record| Revoked {
                    record,
                    newly: false,
                })
            })
            .transpose()
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &StoredSession) -> Result<()> {
        let r = &s.record;
        let mut tx = self.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO sessions ({SESSION_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(&r.tenant)
        .bind(&r.id)
        .bind(&r.actor_type)
        .bind(&r.actor_id)
        .bind(ts(r.created_at))
        .bind(ts(r.last_seen_at))
        .bind(ts(r.idle_expires_at))
        .bind(ts(r.absolute_expires_at))
        .bind(s.idle_timeout_seconds)
        .bind(&r.ip_address)
        .bind(&r.user_agent)
        .bind(r.revoked_at.map(ts))
        .bind(&r.revoke_reason)
        .bind(r.csrf_hash.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, &r.tenant, &format!("session {:?}", r.id)))?;
        insert_change(
            &mut tx,
            &r.tenant,
            change::SESSION_CREATE,
            &r.id,
            Some(ts(r.idle_expires_at)),
        )
        .await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<StoredSession>> {
        self.row_by_id(SESSION_COLUMNS, "sessions", tenant, id, session_from_row)
            .await
    }

    async fn list_active_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        now: OffsetDateTime,
        p: &PageRequest,
    ) -> Result<Page<SessionRecord>> {
        let mut qb = sqlx::QueryBuilder::new(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant = "
        ));
        qb.push_bind(tenant.to_owned())
            .push(" AND actor_type = ")
            .push_bind(actor_type.to_owned())
            .push(" AND actor_id = ")
            .push_bind(actor_id.to_owned())
            // The idle expiry never passes the absolute one: one comparison covers both.
            .push(" AND revoked_at IS NULL AND idle_expires_at > ")
            .push_bind(ts(now));
        rows::list(
            &self.reader,
            qb,
            ("created_at", "id"),
            p,
            |r| session_from_row(r).map(|s| s.record),
            |s| Cursor::new(ts(s.created_at), &s.id),
        )
        .await
    }

    async fn touch_session(
        &self,
        tenant: &str,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // max(): a node whose clock lags, or a write-back that lost a race, never moves a time
        // back; min() with the absolute expiry keeps the invariant whatever the caller passed.
        let stored: Option<i64> = sqlx::query_scalar(
            "UPDATE sessions SET last_seen_at = max(last_seen_at, ?), \
               idle_expires_at = min(max(idle_expires_at, ?), absolute_expires_at) \
             WHERE tenant = ? AND id = ? AND revoked_at IS NULL RETURNING idle_expires_at",
        )
        .bind(ts(last_seen_at))
        .bind(ts(idle_expires_at))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        insert_change(&mut tx, tenant, change::SESSION_TOUCH, id, Some(stored)).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn revoke_session(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Revoked<SessionRecord>>> {
        self.revoke_row(
            (SESSION_COLUMNS, "sessions", change::SESSION_REVOKE),
            tenant,
            id,
            audit,
            |r| session_from_row(r).map(|s| s.record),
        )
        .await
    }

    async fn revoke_actor_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        audit: &AuditEvent,
    ) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let mut ids: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = ?, revoke_reason = ? \
             WHERE tenant = ? AND actor_type = ? AND actor_id = ? AND revoked_at IS NULL \
             RETURNING id",
        )
        .bind(ts(audit.at))
        .bind(&audit.reason)
        .bind(tenant)
        .bind(actor_type)
        .bind(actor_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        // RETURNING order is unspecified; a sorted answer is stable for callers and tests.
        ids.sort_unstable();
        for id in &ids {
            insert_audit(&mut tx, &audit_for(audit, id)).await?;
            insert_change(&mut tx, tenant, change::SESSION_REVOKE, id, None).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(ids)
    }

    async fn insert_session_key(
        &self,
        key: &SessionKeyRecord,
        mode: SessionKeyInsert,
        audit: &AuditEvent,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        match mode {
            SessionKeyInsert::IfNoneActive => {
                // Inside the write transaction: no other writer can add one in between.
                let active: i64 = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM session_keys \
                       WHERE tenant = ? AND status = 'active')",
                )
                .bind(&key.tenant)
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
                if active != 0 {
                    return Ok(false);
                }
            }
            SessionKeyInsert::Rotate { retain_until } => {
                sqlx::query(
                    "UPDATE session_keys SET status = 'retired', retain_until = ? \
                     WHERE tenant = ? AND status = 'active'",
                )
                .bind(ts(retain_until))
                .bind(&key.tenant)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO session_keys ({SESSION_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        )))
        .bind(&key.tenant)
        .bind(&key.kid)
        .bind(key.status.as_str())
        .bind(ts(key.created_at))
        .bind(key.retain_until.map(ts))
        .bind(&key.encrypted_secret)
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, &key.tenant, &format!("session key {:?}", key.kid)))?;
        insert_audit(&mut tx, audit).await?;
        insert_change(
            &mut tx,
            &key.tenant,
            change::SESSION_KEY_INSERT,
            &key.kid,
            None,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn list_session_keys(&self, tenant: &str) -> Result<Vec<SessionKeyRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_KEY_COLUMNS} FROM session_keys WHERE tenant = ? \
             ORDER BY created_at DESC, kid DESC"
        )))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?
        .iter()
        .map(session_key_from_row)
        .collect()
    }

    async fn insert_prelogin(&self, rec: &PreLoginRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO prelogin ({PRELOGIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(&rec.tenant)
        .bind(&rec.id)
        .bind(&rec.state)
        .bind(&rec.nonce)
        .bind(&rec.encrypted_pkce_verifier)
        .bind(&rec.redirect_uri)
        .bind(ts(rec.created_at))
        .bind(ts(rec.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, &rec.tenant, &format!("pre-login {:?}", rec.id)))?;
        tx.commit().await.map_err(unavailable)
    }

    async fn take_prelogin(&self, tenant: &str, id: &str) -> Result<Option<PreLoginRecord>> {
        // In a write transaction, not on the pool directly: `BEGIN IMMEDIATE` makes a second
        // process on the same file (another node) wait for the lock instead of both reading
        // the row; within this process the single writer connection already serialises.
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM prelogin WHERE tenant = ? AND id = ? RETURNING {PRELOGIN_COLUMNS}"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let rec = row.as_ref().map(prelogin_from_row).transpose()?;
        tx.commit().await.map_err(unavailable)?;
        Ok(rec)
    }

    async fn create_refresh_family(&self, f: &RefreshFamily) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO refresh_families ({FAMILY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(&f.tenant)
        .bind(&f.id)
        .bind(&f.sub)
        .bind(i64::from(f.current_gen))
        .bind(f.revoked_at.map(ts))
        .bind(&f.revoke_reason)
        .bind(ts(f.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, &f.tenant, &format!("refresh family {:?}", f.id)))?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get_refresh_family(&self, tenant: &str, id: &str) -> Result<Option<RefreshFamily>> {
        self.row_by_id(
            FAMILY_COLUMNS,
            "refresh_families",
            tenant,
            id,
            family_from_row,
        )
        .await
    }

    async fn rotate_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        from: u32,
        to: u32,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE refresh_families SET current_gen = ? \
             WHERE tenant = ? AND id = ? AND current_gen = ? AND revoked_at IS NULL",
        )
        .bind(i64::from(to))
        .bind(tenant)
        .bind(id)
        .bind(i64::from(from))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Option<Revoked<RefreshFamily>>> {
        self.revoke_row(
            (FAMILY_COLUMNS, "refresh_families", change::REFRESH_REVOKE),
            tenant,
            id,
            audit,
            family_from_row,
        )
        .await
    }

    async fn purge_sessions_batch(
        &self,
        before: OffsetDateTime,
        linger: Duration,
        batch: u32,
    ) -> Result<SessionPurge> {
        let started = Instant::now();
        let limit = i64::from(batch.max(1));
        let before_rows = ts(before.saturating_sub(linger));
        let before = ts(before);
        let mut tx = self.begin_write().await?;
        let sessions = delete_bounded(
            &mut tx,
            "sessions",
            "absolute_expires_at < ?",
            before_rows,
            limit,
        )
        .await?;
        let refresh_families = delete_bounded(
            &mut tx,
            "refresh_families",
            "expires_at < ?",
            before_rows,
            limit,
        )
        .await?;
        let prelogin = delete_bounded(&mut tx, "prelogin", "expires_at < ?", before, limit)
            .await?
            .len() as u64;
        // Active keys are never purged: the partial index holds retired ones only.
        let session_keys = delete_bounded(
            &mut tx,
            "session_keys",
            "status = 'retired' AND retain_until < ?",
            before,
            limit,
        )
        .await?;
        for (kind, rows) in [
            (change::SESSION_PURGE, &sessions),
            (change::REFRESH_PURGE, &refresh_families),
        ] {
            for (tenant, id) in rows {
                insert_change(&mut tx, tenant, kind, id, None).await?;
            }
        }
        tx.commit().await.map_err(unavailable)?;
        if started.elapsed() > SLOW {
            tracing::warn!(
                sessions = sessions.len(),
                refresh_families = refresh_families.len(),
                prelogin,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "slow session purge batch"
            );
        }
        Ok(SessionPurge {
            sessions,
            prelogin,
            refresh_families,
            session_keys,
        })
    }

    async fn load_sessions(&self) -> Result<SessionSnapshot> {
        let started = Instant::now();
        // One read transaction: one WAL snapshot for all three tables.
        let mut tx = self.reader.begin().await.map_err(unavailable)?;
        let rows: Vec<(String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT tenant, id, last_seen_at, idle_expires_at, revoked_at FROM sessions",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut snap = SessionSnapshot::default();
        for (tenant, id, last_seen, expires, revoked_at) in rows {
            match revoked_at {
                Some(_) => snap.revoked_sessions.push((tenant, id)),
                None => snap.sessions.push((tenant, id, last_seen, expires)),
            }
        }
        snap.session_keys = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_KEY_COLUMNS} FROM session_keys"
        )))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?
        .iter()
        .map(session_key_from_row)
        .collect::<Result<Vec<_>>>()?;
        snap.revoked_families =
            sqlx::query_as("SELECT tenant, id FROM refresh_families WHERE revoked_at IS NOT NULL")
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        tracing::info!(
            sessions = snap.sessions.len(),
            revoked_sessions = snap.revoked_sessions.len(),
            session_keys = snap.session_keys.len(),
            revoked_families = snap.revoked_families.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded session state from the embedded store"
        );
        Ok(snap)
    }
}
