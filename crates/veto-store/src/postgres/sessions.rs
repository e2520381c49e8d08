//! [`SessionStore`] for the shared store. A child module of `postgres`, so that it shares the
//! pool, the key locks and the change-feed helpers without widening their visibility. The
//! statements themselves are `sql::sessions`, shared with SQLite.
//!
//! # Key locks
//!
//! The rule of the module comment of `postgres` holds here too: a write that appends changes
//! first takes exclusive advisory locks on the keys it changes, so that per key the feed sorts
//! in commit order. Sessions (`s`, tenant, id), refresh families (`f`, tenant, id) and a
//! tenant's session keys (`sk`, tenant: one lock for all of them, since a rotation changes
//! several and "insert only if none is active" must see the previous insert) are keys.
//! Revoking all sessions of an actor changes sessions it only finds by reading, so it locks
//! the actor (`sa`, tenant, actor type, actor id) exclusively and the sessions it read, then
//! reads again: creating a session takes the actor lock shared, so once the actor lock is held
//! no session of the actor can appear, and if one appeared between the read and the locks the
//! transaction starts over with it locked too (after [`ACTOR_LOCK_ATTEMPTS`], or with more than
//! `MAX_KEY_LOCKS` sessions, under the whole-store lock instead).
//!
//! Pre-login records and refresh rotations append no changes, so their order in the feed is not
//! at stake: they take the whole-store lock shared only, as every writer does (the purge's
//! `ctid` deletes rely on it). Their atomicity comes from PostgreSQL itself, in one statement
//! each: a consume is `DELETE … RETURNING`, and a concurrent consume of the same row waits for
//! the deleting transaction and then finds nothing; a rotation is `UPDATE … WHERE current_gen =
//! $from AND revoked_at IS NULL`, and a concurrent one waits for the row and re-evaluates its
//! condition against the committed row (READ COMMITTED's re-check), which no longer matches.
//! Neither serialises on an advisory lock, so the conformance races exercise exactly that.
//!
//! Every write that appends changes announces them (`commit_changes`); a write that turned out
//! to change nothing (a repeated revocation, a touch of an unknown session) is rolled back.
use std::time::Instant;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::SessionKeyRecord;
use veto_core::prelogin::PreLoginRecord;
use veto_core::refresh::RefreshFamily;
use veto_core::session::SessionRecord;

use super::{Locks, MAX_KEY_LOCKS, PgStore, bounded_delete_sql, commit_changes, lock_id};
use crate::rows::{self, unavailable};
use crate::sessions::{
    Revoked, SessionKeyInsert, SessionPurge, SessionSnapshot, SessionStore, StoredSession,
};
use crate::sql::commit_if;
use crate::sql::sessions as sql;
use crate::{Page, PageRequest, Result, Written};

/// How often `revoke_actor_sessions` starts over with per-session locks before it takes the
/// whole-store lock (module comment).
const ACTOR_LOCK_ATTEMPTS: usize = 2;

impl Locks {
    /// Shared on a key this transaction depends on but does not change.
    fn depend(mut self, parts: &[&str]) -> Self {
        self.keys.entry(lock_id(parts)).or_insert(false);
        self
    }

    fn session(self, tenant: &str, id: &str) -> Self {
        self.within(tenant).change(&["s", tenant, id])
    }

    fn family(self, tenant: &str, id: &str) -> Self {
        self.within(tenant).change(&["f", tenant, id])
    }

    /// The actor's sessions and the actor, exclusively (`revoke_actor_sessions`); the whole
    /// store when there are too many.
    fn actor_sessions(tenant: &str, actor: &[&str; 2], ids: &[String]) -> Self {
        if ids.len() >= MAX_KEY_LOCKS {
            return Locks::whole();
        }
        let actor = Locks::default()
            .within(tenant)
            .change(&["sa", tenant, actor[0], actor[1]]);
        ids.iter().fold(actor, |l, id| l.session(tenant, id))
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, s: &StoredSession) -> Result<Written<()>> {
        let r = &s.record;
        let locks = Locks::default().session(&r.tenant, &r.id).depend(&[
            "sa",
            &r.tenant,
            &r.actor_type,
            &r.actor_id,
        ]);
        let mut tx = self.begin_write(locks).await?;
        sql::insert_session(&mut *tx, s).await?;
        Ok(Written::new((), commit_changes(tx).await?))
    }

    async fn get_session(&self, tenant: &str, id: &str) -> Result<Option<StoredSession>> {
        sql::get_session(&mut *self.conn().await?, tenant, id).await
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
        rows::list_active_sessions(&self.pool, actor, now, p).await
    }

    async fn touch_session(
        &self,
        tenant: &str,
        id: &str,
        last_seen_at: OffsetDateTime,
        idle_expires_at: OffsetDateTime,
    ) -> Result<Written<bool>> {
        let mut tx = self
            .begin_write(Locks::default().session(tenant, id))
            .await?;
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
        let mut tx = self
            .begin_write(Locks::default().session(tenant, id))
            .await?;
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
        let actor = [actor_type, actor_id];
        // Which sessions to lock: read before the transaction (a read takes no transaction id).
        let mut ids =
            sql::unrevoked_session_ids(&mut *self.conn().await?, tenant, actor_type, actor_id)
                .await?;
        for attempt in 1.. {
            let locks = if attempt > ACTOR_LOCK_ATTEMPTS {
                Locks::whole()
            } else {
                Locks::actor_sessions(tenant, &actor, &ids)
            };
            let whole = locks.whole;
            let mut tx = self.begin_write(locks).await?;
            // Under the actor lock (or the whole store) no session of the actor can appear or
            // be revoked by anybody else until this commits: this read is what the update finds.
            let now = sql::unrevoked_session_ids(&mut *tx, tenant, actor_type, actor_id).await?;
            if !whole && !now.iter().all(|id| ids.contains(id)) {
                // A session was created between the first read and the locks: start over with
                // it locked too (dropping `tx` rolls back a transaction that wrote nothing).
                ids = now;
                continue;
            }
            let revoked =
                sql::revoke_actor_sessions(&mut *tx, tenant, actor_type, actor_id, audit).await?;
            return commit_if(tx, revoked, |ids| !ids.is_empty()).await;
        }
        unreachable!("the last attempt holds the whole-store lock and always returns")
    }

    async fn insert_session_key(
        &self,
        key: &SessionKeyRecord,
        mode: SessionKeyInsert,
        audit: &AuditEvent,
    ) -> Result<Written<bool>> {
        // One lock for all keys of the tenant: the `IfNoneActive` check of a second node waits
        // for the first node's insert to commit, and then sees it.
        let locks = Locks::default()
            .within(&key.tenant)
            .change(&["sk", &key.tenant]);
        let mut tx = self.begin_write(locks).await?;
        let inserted = sql::insert_session_key(&mut *tx, key, mode, audit).await?;
        commit_if(tx, inserted, |&inserted| inserted).await
    }

    async fn list_session_keys(&self, tenant: &str) -> Result<Vec<SessionKeyRecord>> {
        sql::list_session_keys(&mut *self.conn().await?, tenant).await
    }

    async fn insert_prelogin(&self, rec: &PreLoginRecord) -> Result<()> {
        let mut tx = self.begin_write(Locks::default()).await?;
        sql::insert_prelogin(&mut *tx, rec).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn take_prelogin(&self, tenant: &str, id: &str) -> Result<Option<PreLoginRecord>> {
        // No key lock: the DELETE itself decides which consume wins (module comment).
        let mut tx = self.begin_write(Locks::default()).await?;
        let rec = sql::take_prelogin(&mut *tx, tenant, id).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(rec)
    }

    async fn create_refresh_family(&self, f: &RefreshFamily) -> Result<()> {
        let mut tx = self.begin_write(Locks::default()).await?;
        sql::insert_refresh_family(&mut *tx, f).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get_refresh_family(&self, tenant: &str, id: &str) -> Result<Option<RefreshFamily>> {
        sql::get_refresh_family(&mut *self.conn().await?, tenant, id).await
    }

    async fn rotate_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        from: u32,
        to: u32,
    ) -> Result<bool> {
        // No key lock: the UPDATE's condition is the compare-and-swap (module comment).
        let mut tx = self.begin_write(Locks::default()).await?;
        let done = sql::rotate_refresh_family(&mut *tx, tenant, id, from, to).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done)
    }

    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<Option<Revoked<RefreshFamily>>>> {
        let mut tx = self
            .begin_write(Locks::default().family(tenant, id))
            .await?;
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
        // `purge_batch` (which is also what makes its `ctid` deletes safe).
        let mut tx = self.begin_write(Locks::whole()).await?;
        let purge =
            sql::purge_sessions(&mut *tx, bounded_delete_sql, before, linger, batch).await?;
        let changes = if purge.sessions.is_empty() && purge.refresh_families.is_empty() {
            tx.commit().await.map_err(unavailable)?;
            Vec::new()
        } else {
            commit_changes(tx).await?
        };
        Ok(Written::new(purge, changes))
    }

    async fn load_sessions(&self) -> Result<SessionSnapshot> {
        let started = Instant::now();
        // One snapshot for all three tables.
        let mut tx = self.begin_snapshot().await?;
        let snap = sql::read_sessions(&mut *tx).await?;
        tx.commit().await.map_err(unavailable)?;
        sql::log_loaded(&snap, started, "PostgreSQL");
        Ok(snap)
    }
}
