//! [`Store`] for every [`Backend`], written once. Each write says which keys it locks (see
//! `Locks`; the reasons are in the module comment of `postgres`), runs the shared statements of
//! `sql` in the backend's write transaction, and commits its changes, or nothing when it turned
//! out to change nothing.
use std::time::Instant;

use async_trait::async_trait;
use time::OffsetDateTime;
use veto_core::apikey::ApiKeyRecord;
use veto_core::audit::AuditEvent;
use veto_core::keys::SigningKeyRecord;
use veto_core::revocation::{Cutoff, Revocation, RevocationFilter, RevocationStats};
use veto_core::tenant::Tenant;

use super::{Backend, Locks, commit_changes_if, insert_new_revocations, read};
use crate::change::names;
use crate::rows::{self, as_stored, unavailable};
use crate::sql::{self, WriteTx, commit_if, pages, status_lists};
use crate::status_list::{NewStatusEntry, NewStatusList, StatusEntry, StatusListInfo};
use crate::{
    Change, FeedCursor, LiftOutcome, Page, PageRequest, PurgeCounts, Resealed, Result,
    RevokeOutcome, SealedBlob, SealedKind, StateSnapshot, Store, TenantRevocationState,
    Unavailable, Written,
};

#[async_trait]
impl<B: Backend> Store for B {
    async fn migrate(&self) -> Result<()> {
        Backend::migrate(self)
            .await
            .map_err(|e| Unavailable::caused_by("migration failed", e).into())
    }

    async fn ping(&self) -> Result<()> {
        Backend::ping(self).await
    }

    async fn create_tenant(&self, t: &Tenant, audit: &AuditEvent) -> Result<Written<()>> {
        let mut tx = self.write(Locks::default().change(&["t", &t.id])).await?;
        sql::create_tenant(&mut *tx, t, audit).await?;
        Ok(Written::new((), tx.commit_changes().await?))
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        sql::get_tenant(&mut *read(self).await?, id).await
    }

    async fn set_tenant_suspended(
        &self,
        id: &str,
        suspended: bool,
        audit: &AuditEvent,
    ) -> Result<Written<Tenant>> {
        let mut tx = self.write(Locks::default().change(&["t", id])).await?;
        let tenant = sql::set_tenant_suspended(&mut *tx, id, suspended, audit).await?;
        Ok(Written::new(tenant, tx.commit_changes().await?))
    }

    async fn set_cutoff(&self, c: &Cutoff, audit: &AuditEvent) -> Result<Written<()>> {
        // Max-wins makes cutoffs commute anyway; the lock keeps the rule "every write locks
        // what it changes" without exceptions to reason about.
        let sub = c.sub.as_deref().unwrap_or("");
        let locks = Locks::default()
            .within(&c.tenant)
            .change(&["c", &c.tenant, sub]);
        let mut tx = self.write(locks).await?;
        sql::set_cutoff(&mut *tx, c, audit).await?;
        Ok(Written::new((), tx.commit_changes().await?))
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord, audit: &AuditEvent) -> Result<Written<()>> {
        let tenant = k.tenant.as_deref().unwrap_or("");
        let locks = Locks::default().within(tenant).change(&["a", &k.id]);
        let mut tx = self.write(locks).await?;
        sql::insert_api_key(&mut *tx, k, audit).await?;
        Ok(Written::new((), tx.commit_changes().await?))
    }

    async fn list_api_keys(&self, tenant: &str, p: &PageRequest) -> Result<Page<ApiKeyRecord>> {
        pages::list_api_keys(&mut *read(self).await?, tenant, p).await
    }

    async fn delete_api_key(
        &self,
        tenant: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<Written<()>> {
        let locks = Locks::default().within(tenant).change(&["a", id]);
        let mut tx = self.write(locks).await?;
        sql::delete_api_key(&mut *tx, tenant, id, audit).await?;
        Ok(Written::new((), tx.commit_changes().await?))
    }

    async fn find_api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>> {
        sql::api_key_by(&mut *read(self).await?, "key_hash", sql::Arg::Bytes(hash)).await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        sql::api_key_by(&mut *read(self).await?, "id", sql::Arg::Text(id)).await
    }

    async fn has_admin_key(&self) -> Result<bool> {
        sql::has_admin_key(&mut *read(self).await?).await
    }

    async fn insert_signing_key(
        &self,
        k: &SigningKeyRecord,
        retire_others_until: Option<OffsetDateTime>,
        audit: &AuditEvent,
    ) -> Result<Written<Vec<SigningKeyRecord>>> {
        // One lock for all keys of the tenant: a rotation changes several of them.
        let locks = Locks::default().within(&k.tenant).change(&["k", &k.tenant]);
        let mut tx = self.write(locks).await?;
        let retired = sql::insert_signing_key(&mut *tx, k, retire_others_until, audit).await?;
        Ok(Written::new(retired, tx.commit_changes().await?))
    }

    async fn list_signing_keys(&self, tenant: &str) -> Result<Vec<SigningKeyRecord>> {
        sql::list_signing_keys(&mut *read(self).await?, tenant).await
    }

    async fn revoke_signing_key(
        &self,
        tenant: &str,
        kid: &str,
        reason: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<Written<SigningKeyRecord>> {
        let locks = Locks::default().within(tenant).change(&["k", tenant]);
        let mut tx = self.write(locks).await?;
        let (key, changed) = sql::revoke_signing_key(&mut *tx, tenant, kid, reason, audit).await?;
        commit_if(tx, key, |_| changed).await
    }

    async fn insert_revocation(
        &self,
        rec: &Revocation,
        audit: &AuditEvent,
    ) -> Result<Written<RevokeOutcome>> {
        Backend::insert_revocation(self, rec, audit).await
    }

    async fn insert_revocations(
        &self,
        recs: &[(Revocation, AuditEvent)],
    ) -> Result<Written<(u64, u64, Vec<Revocation>)>> {
        if recs.is_empty() {
            return Ok(Written::new((0, 0, Vec::new()), Vec::new()));
        }
        let started = Instant::now();
        let locks = Locks::revocations(
            recs.iter()
                .map(|(r, _)| (r.tenant.as_str(), r.jti.as_str())),
        );
        // One transaction for the whole batch: one commit (SQLite: one fsync), all or nothing.
        let mut tx = self.write(locks).await?;
        let new = insert_new_revocations::<B>(&mut tx, recs).await?;
        let mut written: Vec<Revocation> = new.iter().map(|&i| as_stored(&recs[i].0)).collect();
        let created = written.len();
        // Repeats that are permanent revocations of suspended jtis make them permanent (one
        // audit event per jti, as for single revocations); they count as existing.
        let is_new: std::collections::HashSet<usize> = new.into_iter().collect();
        let repeats = recs
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_new.contains(i))
            .map(|(_, (r, _))| r);
        let audits: std::collections::HashMap<(&str, &str), &AuditEvent> = recs
            .iter()
            .map(|(r, a)| ((r.tenant.as_str(), r.jti.as_str()), a))
            .collect();
        for rec in sql::suspended_among(&mut *tx, repeats).await? {
            let Some(audit) = audits.get(&(rec.tenant.as_str(), rec.jti.as_str())) else {
                continue;
            };
            if let Some(made) = sql::make_permanent(&mut *tx, rec, audit).await? {
                written.push(made);
            }
        }
        // Nothing written (every jti existed, none was suspended): no changes to announce.
        let changes = commit_changes_if(tx, !written.is_empty()).await?;
        Ok(Written::new(
            rows::batch_done(started, recs.len(), created, written),
            changes,
        ))
    }

    async fn get_revocation(&self, tenant: &str, jti: &str) -> Result<Option<Revocation>> {
        sql::select_revocation(&mut *read(self).await?, tenant, jti).await
    }

    async fn list_revocations(
        &self,
        tenant: &str,
        f: &RevocationFilter,
        p: &PageRequest,
    ) -> Result<Page<Revocation>> {
        pages::list_revocations(&mut *read(self).await?, tenant, f, p).await
    }

    async fn revocation_stats(&self, tenant: &str, now: OffsetDateTime) -> Result<RevocationStats> {
        // Both queries in one snapshot, so the counts agree with each other.
        let mut tx = self.snapshot().await?;
        let stats = sql::revocation_stats(&mut *tx, tenant, now).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(stats)
    }

    async fn lift_suspension(
        &self,
        tenant: &str,
        jti: &str,
        audit: &AuditEvent,
    ) -> Result<Written<LiftOutcome>> {
        let mut tx = self.write(Locks::default().revocation(tenant, jti)).await?;
        let outcome = sql::lift_suspension(&mut *tx, tenant, jti, audit).await?;
        commit_if(tx, outcome, |o| matches!(o, LiftOutcome::Lifted(_))).await
    }

    async fn allocate_status_entry(
        &self,
        e: &NewStatusEntry<'_>,
        candidates: &[u32],
        new_list: &NewStatusList<'_>,
    ) -> Result<Written<StatusEntry>> {
        let Some(&first) = candidates.first() else {
            return Err(
                Unavailable::new("a status list entry needs at least one candidate").into(),
            );
        };
        if new_list.size == 0 {
            return Err(Unavailable::new("a status list needs at least one entry").into());
        }
        // Usually a candidate is free in the current list: the tenant's lists held shared, so
        // that concurrent issuers of one tenant do not wait for each other.
        let mut tx = self
            .write(Locks::default().status_lists(e.tenant, false))
            .await?;
        if let Some(entry) = status_lists::take_free_entry(&mut *tx, e, candidates).await? {
            return Ok(Written::new(entry, tx.commit_changes().await?));
        }
        // Nothing written: end it (a dropped SQLite write counts as a failed one).
        tx.commit_plain().await?;
        // No list, or none of the candidates free: exclusively, look again (another writer may
        // have created a list or the purge freed an index meanwhile), else create `new_list`.
        let mut tx = self
            .write(Locks::default().status_lists(e.tenant, true))
            .await?;
        let entry = match status_lists::take_free_entry(&mut *tx, e, candidates).await? {
            Some(entry) => entry,
            None => status_lists::take_in_new_list(&mut *tx, e, first, new_list).await?,
        };
        Ok(Written::new(entry, tx.commit_changes().await?))
    }

    async fn status_entry(
        &self,
        tenant: &str,
        list: &str,
        idx: u32,
    ) -> Result<Option<StatusEntry>> {
        status_lists::status_entry(&mut *read(self).await?, tenant, list, idx).await
    }

    async fn status_lists(&self, tenant: &str) -> Result<Vec<StatusListInfo>> {
        status_lists::status_lists(&mut *read(self).await?, Some(tenant)).await
    }

    async fn tenant_status_list(&self, tenant: &str) -> Result<Option<bool>> {
        status_lists::tenant_status_list(&mut *read(self).await?, tenant).await
    }

    async fn set_tenant_status_list(
        &self,
        tenant: &str,
        on: bool,
        audit: &AuditEvent,
    ) -> Result<Written<()>> {
        let mut tx = self.write(Locks::default().change(&["t", tenant])).await?;
        status_lists::set_tenant_status_list(&mut *tx, tenant, on, audit).await?;
        Ok(Written::new((), tx.commit_changes().await?))
    }

    async fn list_audit(
        &self,
        tenant: &str,
        action: Option<&str>,
        p: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        pages::list_audit(&mut *read(self).await?, tenant, action, p).await
    }

    async fn purge_batch(
        &self,
        before: OffsetDateTime,
        batch: u32,
    ) -> Result<Written<(PurgeCounts, Vec<(String, String)>)>> {
        let started = Instant::now();
        // The victims are only known once found, so no per-key locks: the whole store, for one
        // bounded batch (module comment of `postgres`).
        let mut tx = self.write(Locks::whole()).await?;
        let sql::Purged {
            counts,
            jtis,
            cutoffs,
            status_entries,
        } = sql::purge_expired(&mut *tx, B::BOUNDED_DELETE, before, batch).await?;
        // Other nodes learn of the deletions from the feed, in the same transaction, and drop
        // the rows from memory as the purging node does: a purge has the same effect on every
        // node (tenant-wide cutoffs have the empty `sub`).
        for (kind, keys) in [
            (names::REVOCATION_PURGE, &jtis),
            (names::CUTOFF_PURGE, &cutoffs),
        ] {
            if !keys.is_empty() {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|(t, k)| (t.as_str(), k.as_str(), None))
                    .collect();
                B::insert_changes(&mut tx, kind, &rows).await?;
            }
        }
        if !status_entries.is_empty() {
            let rows: Vec<_> = status_entries
                .iter()
                .map(|(t, list, idx)| (t.as_str(), list.as_str(), Some(*idx)))
                .collect();
            B::insert_changes(&mut tx, names::STATUS_ENTRY_PURGE, &rows).await?;
        }
        let wrote = !jtis.is_empty() || !cutoffs.is_empty() || !status_entries.is_empty();
        let changes = commit_changes_if(tx, wrote).await?;
        Ok(Written::new(
            rows::purge_done(started, counts, jtis),
            changes,
        ))
    }

    async fn sealed_page(
        &self,
        kind: SealedKind,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<SealedBlob>> {
        sql::sealed_page(&mut *read(self).await?, kind, after, limit).await
    }

    async fn reseal(&self, kind: SealedKind, blobs: &[Resealed]) -> Result<u64> {
        // Compare-and-swap per row: no lock beyond the rows themselves is needed.
        let mut tx = self.write(Locks::default()).await?;
        let n = sql::reseal(&mut *tx, kind, blobs).await?;
        tx.commit_plain().await?;
        Ok(n)
    }

    async fn load_state(&self, now: OffsetDateTime) -> Result<StateSnapshot> {
        let started = Instant::now();
        // One snapshot: the tables agree with each other and with the cursor read inside it.
        let mut tx = self.snapshot().await?;
        let cursor = B::snapshot_cursor(&mut tx).await?;
        let state = sql::read_state(&mut *tx, now).await?;
        let included_after = B::included_after(&mut tx, None, cursor).await?;
        tx.commit().await.map_err(unavailable)?;
        tracing::info!(
            tenants = state.tenants.len(),
            revocations = state.revocations.len(),
            signing_keys = state.signing_keys.len(),
            status_entries = state.status_entries.len(),
            xid = cursor.xid,
            position = cursor.position,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded state from {}",
            B::NAME
        );
        Ok(StateSnapshot {
            cursor,
            included_after,
            ..state
        })
    }

    async fn changes_after(&self, after: FeedCursor, limit: u32) -> Result<Vec<Change>> {
        Backend::changes_after(self, after, limit).await
    }

    async fn tenant_revocation_state(
        &self,
        tenant: &str,
        now: OffsetDateTime,
    ) -> Result<Option<TenantRevocationState>> {
        // One snapshot, as `load_state`: the tables agree with each other and with the cursor.
        let mut tx = self.snapshot().await?;
        let cursor = B::snapshot_cursor(&mut tx).await?;
        let state = sql::read_tenant_state(&mut *tx, tenant, now).await?;
        let included_after = match state {
            Some(_) => B::included_after(&mut tx, Some(tenant), cursor)
                .await?
                .into_iter()
                .map(|c| c.cursor)
                .collect(),
            None => Vec::new(),
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(state.map(|s| TenantRevocationState {
            cursor,
            included_after,
            ..s
        }))
    }

    async fn oldest_change(&self) -> Result<Option<FeedCursor>> {
        Backend::oldest_change(self).await
    }

    async fn feed_pending_since(&self, after: FeedCursor) -> Result<Option<i64>> {
        Backend::feed_pending_since(self, after).await
    }
}
