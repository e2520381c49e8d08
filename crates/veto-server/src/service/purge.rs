//! Purge: drop ledger rows that can no longer matter, in bounded batches.
use time::OffsetDateTime;
use veto_store::sessions::SessionPurge;
use veto_store::{PurgeCounts, SessionStore, Store};

use crate::metrics;
use crate::state::AppState;

/// Deletes, batch after batch, every row whose token expired before `before`. Each batch is its
/// own short transaction, so checks and writes are never held up for long; `on_batch` reports
/// progress (the CLI draws a progress bar with it). Returns the totals and the purged
/// (tenant, jti) pairs' count.
pub async fn purge_all(
    store: &dyn Store,
    before: OffsetDateTime,
    batch: u32,
    mut on_batch: impl FnMut(&PurgeCounts, &[(String, String)]),
) -> veto_store::Result<PurgeCounts> {
    let mut total = PurgeCounts::default();
    loop {
        let (counts, jtis) = store.purge_batch(before, batch).await?;
        on_batch(&counts, &jtis);
        total.revocations += counts.revocations;
        total.cutoffs += counts.cutoffs;
        total.signing_keys += counts.signing_keys;
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

/// The session side of the purge, batch after batch like [`purge_all`]: expired pre-login
/// records and retired session keys past retention; sessions and refresh families once
/// `linger` (the longest token lifetime) has passed since they ended, so that tokens carrying
/// their `sid` or `fam` have expired first.
pub async fn purge_sessions_all(
    sessions: &dyn SessionStore,
    before: OffsetDateTime,
    linger: time::Duration,
    batch: u32,
    mut on_batch: impl FnMut(&SessionPurge),
) -> veto_store::Result<SessionPurgeCounts> {
    let mut total = SessionPurgeCounts::default();
    loop {
        let p = sessions.purge_sessions_batch(before, linger, batch).await?;
        on_batch(&p);
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
            |_, jtis| {
                for (t, j) in jtis {
                    self.index.remove_jti(t, j);
                }
            },
        )
        .await?;
        metrics::purge_run();
        metrics::purged("revocations", total.revocations);
        metrics::purged("cutoffs", total.cutoffs);
        metrics::purged("signing_keys", total.signing_keys);
        metrics::set_index_size(self.index.len());
        if total.signing_keys > 0 {
            // Retired keys past retention stop verifying by their own `retain_until` already;
            // dropping them from the ring just frees memory.
            for k in self.keyring_tenants_stale(before) {
                self.keyring.remove(&k.0, &k.1);
            }
        }
        let linger = time::Duration::seconds(self.config.max_token_ttl + self.config.leeway);
        let sessions = purge_sessions_all(
            self.sessions.as_ref(),
            before,
            linger,
            self.config.purge_batch,
            |p| {
                for (t, id) in &p.sessions {
                    self.index.forget_session(t, id);
                }
                for (t, fam) in &p.refresh_families {
                    self.index.forget_family(t, fam);
                }
                for (t, kid) in &p.session_keys {
                    self.session_keys.remove(t, kid);
                }
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
