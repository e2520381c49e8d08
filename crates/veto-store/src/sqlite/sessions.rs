//! [`SessionStore`] for the embedded store. A child module of `sqlite`, so that it shares the
//! store's private writer and reader pools and its `BEGIN IMMEDIATE` write transactions without
//! widening their visibility. The statements themselves are `sql::sessions`, shared with
//! PostgreSQL.
//!
//! The two atomicity guarantees of `SessionStore` come from SQLite's single writer: every write
//! transaction holds the write lock from its first statement (`BEGIN IMMEDIATE`), so the
//! `DELETE … RETURNING` of a pre-login consume and the `UPDATE … WHERE current_gen = ?` of a
//! refresh rotation run strictly one after another; the second of two concurrent calls finds
//! the row gone or the generation moved.
use std::time::Instant;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::SessionKeyRecord;
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::session::SessionRecord;

use super::{SqliteStore, bounded_delete_sql};
use crate::rows::{self, unavailable};
use crate::sessions::{
    Revoked, SessionKeyInsert, SessionPurge, SessionSnapshot, SessionStore, StoredSession,
};
use crate::sql::commit_if;
use crate::sql::sessions as sql;
use crate::{Page, PageRequest, Result, Written};

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, s: &StoredSession) -> Result<Written<()>> {
        let mut tx = self.begin_write().await?;
        sql::insert_session(&mut *tx, s).await?;
        Ok(Written::new((), tx.commit().await?))
    }

    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<StoredSession>> {
        sql::get_session(&mut *self.read_conn().await?, tenant, id).await
    }

    async fn list_active_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        now: OffsetDateTime,
        p: &PageRequest,
    ) -> Result<Page<SessionRecord>> {
        let actor = (tenant, actor_type, actor_id);
        rows::list_active_sessions(&self.reader, actor, now, p).await
    }

    async fn touch_session(
        &self,
        tenant: &str,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<Written<bool>> {
        let mut tx = self.begin_write().await?;
        let touched =
            sql::touch_session(&mut *tx, tenant, id, last_seen_at, idle_expires_at).await?;
        commit_if(tx, touched, |&touched| touched).await
    }

    async fn revoke_session(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Option<Revoked<SessionRecord>>>> {
        let mut tx = self.begin_write().await?;
        let revoked = sql::revoke_session(&mut *tx, tenant, id, audit).await?;
        commit_if(tx, revoked, sql::newly).await
    }

    async fn revoke_actor_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Vec<String>>> {
        let mut tx = self.begin_write().await?;
        let ids = sql::revoke_actor_sessions(&mut *tx, tenant, actor_type, actor_id, audit).await?;
        Ok(Written::new(ids, tx.commit().await?))
    }

    async fn insert_session_key(
        &self,
        key: &SessionKeyRecord,
        mode: SessionKeyInsert,
        audit: &AuditEvent,
    ) -> Result<Written<bool>> {
        // Inside the write transaction: no other writer can add a key in between.
        let mut tx = self.begin_write().await?;
        let inserted = sql::insert_session_key(&mut *tx, key, mode, audit).await?;
        commit_if(tx, inserted, |&inserted| inserted).await
    }

    async fn list_session_keys(&self, tenant: &str) -> Result<Vec<SessionKeyRecord>> {
        sql::list_session_keys(&mut *self.read_conn().await?, tenant).await
    }

    async fn insert_prelogin(&self, rec: &PreLoginRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sql::insert_prelogin(&mut *tx, rec).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_prelogin(&self, tenant: &str, id: &str) -> Result<Option<PreLoginRecord>> {
        // In a write transaction, not on the pool directly: `BEGIN IMMEDIATE` makes a second
        // process on the same file (another node) wait for the lock instead of both reading
        // the row; within this process the single writer connection already serialises.
        let mut tx = self.begin_write().await?;
        let rec = sql::take_prelogin(&mut *tx, tenant, id).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn create_refresh_family(&self, f: &RefreshFamily) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sql::insert_refresh_family(&mut *tx, f).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_refresh_family(&self, tenant: &str, id: &str) -> Result<Option<RefreshFamily>> {
        sql::get_refresh_family(&mut *self.read_conn().await?, tenant, id).await
    }

    async fn rotate_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        from: u32,
        to: u32,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sql::rotate_refresh_family(&mut *tx, tenant, id, from, to).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Option<Revoked<RefreshFamily>>>> {
        let mut tx = self.begin_write().await?;
        let revoked = sql::revoke_refresh_family(&mut *tx, tenant, id, audit).await?;
        commit_if(tx, revoked, sql::newly).await
    }

    async fn purge_sessions_batch(
        &self,
        before: OffsetDateTime,
        linger: Duration,
        batch: u32,
    ) -> Result<Written<SessionPurge>> {
        let mut tx = self.begin_write().await?;
        let purge =
            sql::purge_sessions(&mut *tx, bounded_delete_sql, before, linger, batch).await?;
        Ok(Written::new(purge, tx.commit().await?))
    }

    async fn load_sessions(&self) -> Result<SessionSnapshot> {
        let started = Instant::now();
        // One read transaction: one WAL snapshot for all three tables.
        let mut tx = self.reader.begin().await.map_err(unavailable)?;
        let snap = sql::read_sessions(&mut *tx).await?;
        tx.commit().await.map_err(unavailable)?;
        sql::log_loaded(&snap, started, "the embedded store");
        Ok(snap)
    }
}
