//! Purge: drop ledger rows that can no longer matter, in bounded batches.
use time::OffsetDateTime;
use veto_store::sessions::SessionPurge;
use veto_store::{Change, PurgeCounts, SessionStore, Store, Written};

use crate::metrics;
use crate::mirror::Origin;
use crate::state::AppState;

/// Deletes, batch after batch, every row whose token expired before `before`. Each batch is its
/// own short transaction, so checks and writes are never held up for long; `on_batch` gets each
/// batch's counts and changes (the server applies them to memory, the CLI draws a progress
/// bar). Returns the totals.
pub async fn purge_all<F>(
    store: &dyn Store,
    before: OffsetDateTime,
    batch: u32,
    mut on_batch: impl FnMut(PurgeCounts, Vec<Change>) -> F,
) -> veto_store::Result<PurgeCounts>
where
    F: Future<Output = veto_store::Result<()>>,
{
    let mut total = PurgeCounts::default();
    loop {
        let Written {
            value: (counts, _),
            changes,
        } = store.purge_batch(before, batch).await?;
        on_batch(counts.clone(), changes).await?;
        total.revocations += counts.revocations;
        total.cutoffs += counts.cutoffs;
        total.signing_keys += counts.signing_keys;
        total.status_entries += counts.status_entries;
        if counts == PurgeCounts::default() {
            return Ok(total);
        }
        // Let other tasks (and other writers of the store) in between batches.
        tokio::task::yield_now().await;
    }
}

/// Rows deleted by the session side of a purge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionPurgeCounts {
    pub sessions: u64,
    pub prelogin: u64,
    pub refresh_families: u64,
    pub session_keys: u64,
}

/// What a purge deleted, as the admin route and `veto purge` print it: `{"deleted": {...}}`.
pub fn summary(c: &PurgeCounts, s: &SessionPurgeCounts) -> serde_json::Value {
    serde_json::json!({"deleted": {
        "revocations": c.revocations,
        "cutoffs": c.cutoffs,
        "signing_keys": c.signing_keys,
        "status_entries": c.status_entries,
        "sessions": s.sessions,
        "prelogin": s.prelogin,
        "refresh_families": s.refresh_families,
        "session_keys": s.session_keys,
    }})
}

/// The session side of the purge, batch after batch like [`purge_all`]: expired pre-login
/// records and retired session keys past retention; sessions and refresh families once
/// `linger` (the longest token lifetime) has passed since they ended, so that tokens carrying
/// their `sid` or `fam` have expired first.
pub async fn purge_sessions_all<F>(
    sessions: &dyn SessionStore,
    before: OffsetDateTime,
    linger: time::Duration,
    batch: u32,
    mut on_batch: impl FnMut(SessionPurge, Vec<Change>) -> F,
) -> veto_store::Result<SessionPurgeCounts>
where
    F: Future<Output = veto_store::Result<()>>,
{
    let mut total = SessionPurgeCounts::default();
    loop {
        let Written { value: p, changes } =
            sessions.purge_sessions_batch(before, linger, batch).await?;
        on_batch(p.clone(), changes).await?;
        if p.is_empty() {
            return Ok(total);
        }
        total.sessions += p.sessions.len() as u64;
        total.prelogin += p.prelogin;
        total.refresh_families += p.refresh_families.len() as u64;
        total.session_keys += p.session_keys.len() as u64;
        tokio::task::yield_now().await;
    }
}

impl AppState {
    /// Purges rows that expired more than `margin_seconds` ago and drops them from the index
    /// (the session side too; see [`purge_everything`](Self::purge_everything)).
    pub async fn purge(&self, margin_seconds: i64) -> veto_store::Result<PurgeCounts> {
        Ok(self.purge_everything(margin_seconds).await?.0)
    }

    /// [`purge`](Self::purge), with what the session side deleted.
    pub async fn purge_everything(
        &self,
        margin_seconds: i64,
    ) -> veto_store::Result<(PurgeCounts, SessionPurgeCounts)> {
        let before = veto_core::timeutil::now() - time::Duration::seconds(margin_seconds.max(0));
        let total = purge_all(
            self.store.as_ref(),
            before,
            self.config.purge_batch,
            |_, changes| async move { self.mirror.apply(&changes, Origin::Local).await },
        )
        .await?;
        metrics::purge_run();
        metrics::purged("revocations", total.revocations);
        metrics::purged("cutoffs", total.cutoffs);
        metrics::purged("signing_keys", total.signing_keys);
        metrics::purged("status_entries", total.status_entries);
        if total.signing_keys > 0 {
            // Retired keys past retention stop verifying by their own `retain_until` already;
            // dropping them from the ring just frees memory.
            for k in self.keyring_tenants_stale(before) {
                self.keyring.remove(&k.0, &k.1);
            }
        }
        let linger = time::Duration::seconds(self.config.max_token_ttl + self.config.leeway);
        let sessions = purge_sessions_all(
            self.store.as_ref(),
            before,
            linger,
            self.config.purge_batch,
            |p, changes| async move {
                self.mirror.apply(&changes, Origin::Local).await?;
                // Retired session keys past retention verify nothing any more; no change row
                // tells other nodes, whose rings drop them when they restart (harmless till then).
                for (t, kid) in &p.session_keys {
                    self.session_keys.remove(t, kid);
                }
                Ok(())
            },
        )
        .await?;
        metrics::purged("sessions", sessions.sessions);
        metrics::purged("prelogin", sessions.prelogin);
        metrics::purged("refresh_families", sessions.refresh_families);
        metrics::purged("session_keys", sessions.session_keys);
        if sessions != SessionPurgeCounts::default() {
            tracing::info!(
                ?sessions,
                "purged expired sessions, pre-login state and families"
            );
        }
        Ok((total, sessions))
    }

    fn keyring_tenants_stale(&self, before: OffsetDateTime) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for t in self.tenant_ids() {
            for k in self.keyring.list(&t) {
                if k.retain_until.is_some_and(|r| r < before)
                    && k.status == veto_core::keys::KeyStatus::Retired
                {
                    out.push((t.clone(), k.kid.clone()));
                }
            }
        }
        out
    }
}
