//! [`SessionStore`] for every [`Backend`], written once, as `store.rs` is for `Store`.
//!
//! The two atomicity guarantees of `SessionStore` need no lock of veto's own: a pre-login
//! consume is one `DELETE … RETURNING` and a refresh rotation one `UPDATE … WHERE current_gen =
//! $from`, each inside a write transaction. SQLite runs write transactions strictly one after
//! another (its single writer, `BEGIN IMMEDIATE`), so the second of two concurrent calls finds
//! the row gone or the generation moved; in PostgreSQL the second statement waits for the row
//! and re-checks its condition against the committed row (see `postgres/sessions.rs`). Writes
//! that append changes lock their keys, as in `Store`.
use std::time::Instant;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::SessionKeyRecord;
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::session::SessionRecord;

use super::{Backend, Locks, commit_changes_if, read};
use crate::rows::unavailable;
use crate::sessions::{
    Revoked, SessionKeyInsert, SessionPurge, SessionSnapshot, SessionStore, StoredSession,
};
use crate::sql::sessions as sql;
use crate::sql::{WriteTx, commit_if, pages};
use crate::{Page, PageRequest, Result, Written};

#[async_trait]
impl<B: Backend> SessionStore for B {
    async fn create_session(&self, s: &StoredSession) -> Result<Written<()>> {
        let r = &s.record;
        // Shared on the actor: `revoke_actor_sessions` holds it exclusively to keep new sessions
        // of the actor out.
        let locks = Locks::default().session(&r.tenant, &r.id).depend(&[
            "sa",
            &r.tenant,
            &r.actor_type,
            &r.actor_id,
        ]);
        let mut tx = self.write(locks).await?;
        sql::insert_session(&mut *tx, s).await?;
        Ok(Written::new((), tx.commit_changes().await?))
    }

    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<StoredSession>> {
        sql::get_session(&mut *read(self).await?, tenant, id).await
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
        pages::list_active_sessions(&mut *read(self).await?, actor, now, p).await
    }

    async fn touch_session(
        &self,
        tenant: &str,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<Written<bool>> {
        let mut tx = self.write(Locks::default().session(tenant, id)).await?;
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
        let mut tx = self.write(Locks::default().session(tenant, id)).await?;
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
        let mut tx = self
            .write_actor_sessions(tenant, actor_type, actor_id)
            .await?;
        let revoked =
            sql::revoke_actor_sessions(&mut *tx, tenant, actor_type, actor_id, audit).await?;
        commit_if(tx, revoked, |ids| !ids.is_empty()).await
    }

    async fn insert_session_key(
        &self,
        key: &SessionKeyRecord,
        mode: SessionKeyInsert,
        audit: &AuditEvent,
    ) -> Result<Written<bool>> {
        // One lock for all keys of the tenant (in SQLite: the writer), so that the
        // `IfNoneActive` check of a second writer waits for the first one's insert to commit,
        // and then sees it.
        let locks = Locks::default()
            .within(&key.tenant)
            .change(&["sk", &key.tenant]);
        let mut tx = self.write(locks).await?;
        let inserted = sql::insert_session_key(&mut *tx, key, mode, audit).await?;
        commit_if(tx, inserted, |&inserted| inserted).await
    }

    async fn list_session_keys(&self, tenant: &str) -> Result<Vec<SessionKeyRecord>> {
        sql::list_session_keys(&mut *read(self).await?, tenant).await
    }

    async fn insert_prelogin(&self, rec: &PreLoginRecord) -> Result<()> {
        let mut tx = self.write(Locks::default()).await?;
        sql::insert_prelogin(&mut *tx, rec).await?;
        tx.commit_plain().await
    }

    async fn take_prelogin(&self, tenant: &str, id: &str) -> Result<Option<PreLoginRecord>> {
        // No key lock: the DELETE itself decides which consume wins (module comment). Still a
        // write transaction, not a pooled connection: in SQLite `BEGIN IMMEDIATE` makes a
        // second process on the same file (another node) wait for the lock instead of both
        // reading the row.
        let mut tx = self.write(Locks::default()).await?;
        let rec = sql::take_prelogin(&mut *tx, tenant, id).await?;
        tx.commit_plain().await?;
        Ok(rec)
    }

    async fn create_refresh_family(&self, f: &RefreshFamily) -> Result<()> {
        let mut tx = self.write(Locks::default()).await?;
        sql::insert_refresh_family(&mut *tx, f).await?;
        tx.commit_plain().await
    }

    async fn get_refresh_family(&self, tenant: &str, id: &str) -> Result<Option<RefreshFamily>> {
        sql::get_refresh_family(&mut *read(self).await?, tenant, id).await
    }

    async fn rotate_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        from: u32,
        to: u32,
    ) -> Result<bool> {
        // No key lock: the UPDATE's condition is the compare-and-swap (module comment).
        let mut tx = self.write(Locks::default()).await?;
        let done = sql::rotate_refresh_family(&mut *tx, tenant, id, from, to).await?;
        tx.commit_plain().await?;
        Ok(done)
    }

    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Option<Revoked<RefreshFamily>>>> {
        let mut tx = self.write(Locks::default().family(tenant, id)).await?;
        let revoked = sql::revoke_refresh_family(&mut *tx, tenant, id, audit).await?;
        commit_if(tx, revoked, sql::newly).await
    }

    async fn purge_sessions_batch(
        &self,
        before: OffsetDateTime,
        linger: Duration,
        batch: u32,
    ) -> Result<Written<SessionPurge>> {
        // The victims are only known once found: the whole store, for one bounded batch, as
        // `purge_batch` (which is also what makes PostgreSQL's `ctid` deletes safe).
        let mut tx = self.write(Locks::whole()).await?;
        let purge = sql::purge_sessions(&mut *tx, B::BOUNDED_DELETE, before, linger, batch).await?;
        // Deleted pre-login records and keys append no changes, but must still be committed.
        let wrote = !purge.sessions.is_empty() || !purge.refresh_families.is_empty();
        let changes = commit_changes_if(tx, wrote).await?;
        Ok(Written::new(purge, changes))
    }

    async fn load_sessions(&self) -> Result<SessionSnapshot> {
        let started = Instant::now();
        // One snapshot for all three tables.
        let mut tx = self.snapshot().await?;
        let snap = sql::read_sessions(&mut *tx).await?;
        tx.commit().await.map_err(unavailable)?;
        sql::log_loaded(&snap, started, B::NAME);
        Ok(snap)
    }
}
