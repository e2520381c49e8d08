//! Purge: drop ledger rows that can no longer matter, in bounded batches.
use time::OffsetDateTime;
use veto_store::{PurgeCounts, Store};

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

impl AppState {
    /// Purges rows that expired more than `margin_seconds` ago and drops them from the index.
    pub async fn purge(&self, margin_seconds: i64) -> veto_store::Result<PurgeCounts> {
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
        Ok(total)
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
