//! The one place where memory follows the store (docs/architecture.md, "The mirror").
//!
//! A node holds in memory what every check needs (`memory.rs`): the revocation index, the key
//! rings, tenants, API keys, session rows. That state changes in exactly two ways, both here:
//! - [`Mirror::apply_snapshot`]: at start-up, from `Store::load_state` and
//!   `SessionStore::load_sessions`;
//! - [`Mirror::apply`]: one [`Change`] at a time, whether the node wrote it itself (the store
//!   hands the changes of a write back in `Written`, and the node applies them before it
//!   answers: read-your-writes) or read it from the change feed (`feed.rs`).
//!
//! # Memory never moves backwards
//!
//! The node's own writes and the feed race: a feed read that began before a local write
//! committed can return an older change of the same entity *after* the newer one was applied
//! (lift a suspension, then watch a replayed "suspend" bring it back until the next read; revoke
//! a retired key, then a replayed "retire" re-admits it). So every entity remembers the cursor
//! of the newest change applied to it, and a change that is not newer is skipped. This is sound
//! because per entity, cursor order is commit order in both backends (`veto_store::change`), and
//! every write's cursor is known: the store reads back what it appended in the write's own
//! transaction.
//!
//! Kinds whose state does not fit in a change row (a tenant, key material, an API key) are
//! re-read from the store while the entity is locked against other applies, so that a read
//! that saw an older state can never be applied after one that saw a newer state.
//!
//! The cursors are kept only for entities changed after the feed's own cursor: once the feed
//! has read past an entity's newest change, every change of it still to come is newer, so the
//! entry is dropped (`forget_applied_before`). The table holds the writes of the last poll
//! interval or so, not one entry per revoked jti. What the feed has read past is reflected
//! whatever the table says: a node's own write can be read, applied and forgotten by the feed
//! before the write's own apply comes round, and that apply is then skipped too.
//!
//! # Each revocation counted once
//!
//! The revocation index counts the holders of a jti's fingerprint, one per ledger row (so that
//! two jtis sharing a fingerprint can only ever be rejected, never re-admitted: veto-core's
//! `index.rs`). Applying a `Revoked` twice would leave a holder behind after the lift, so: a
//! start-up snapshot names the changes after its cursor that it holds already (PostgreSQL), and
//! they are marked applied; the rule above skips what the feed read; and several changes of one
//! jti in one feed read are applied by their net effect on its row (`apply_stretch`).
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use veto_core::index::SessionTimes;
use veto_core::status_list::registry::Affects;
use veto_core::tenant::TenantState;
use veto_store::sessions::SessionSnapshot;
use veto_store::{Change, ChangeKind, Database, Entity, FeedCursor, StateSnapshot, StoreError};

use crate::memory::Memory;
use crate::metrics;
use crate::redis::RedisBus;

/// Who wrote the changes being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This node, just now: the client is waiting for the answer, and other nodes are told.
    Local,
    /// Any node (this one included), read from the change feed.
    Feed,
}

/// An entity, owned: (tenant, which kind of entity, its key).
type EntityKey = (String, &'static str, String);

fn entity_key(c: &Change) -> EntityKey {
    let entry;
    let (family, key) = match c.entity() {
        Entity::Tenant => ("tenant", ""),
        Entity::Cutoff(sub) => ("cutoff", sub.unwrap_or("")),
        Entity::Jti(jti) => ("jti", jti),
        Entity::SigningKeys => ("signing_keys", ""),
        Entity::ApiKey(id) => ("api_key", id),
        Entity::Session(id) => ("session", id),
        Entity::SessionKeys => ("session_keys", ""),
        Entity::RefreshFamily(id) => ("refresh_family", id),
        Entity::StatusList(id) => ("status_list", id),
        Entity::StatusEntry(list, idx) => {
            entry = format!("{list}\0{idx}");
            ("status_entry", entry.as_str())
        }
        Entity::TenantStatusList => ("tenant_status_list", ""),
        Entity::Unreadable(name) => ("unreadable", name),
    };
    (c.tenant.clone(), family, key.to_owned())
}

tokio::task_local! {
    /// The newest cursor applied for the local writes of the current request, when it runs in
    /// `recording_writes` (a task-local: the handler's future runs inside that one's).
    static WRITTEN: std::cell::Cell<Option<FeedCursor>>;
}

/// Runs `request`, returning also the newest cursor the mirror applied for its local writes
/// (`None` when it wrote no change): what `position.rs` answers as `Veto-Position`.
pub async fn recording_writes<F: Future>(request: F) -> (F::Output, Option<FeedCursor>) {
    WRITTEN
        .scope(std::cell::Cell::new(None), async {
            let out = request.await;
            (out, WRITTEN.with(std::cell::Cell::get))
        })
        .await
}

/// Outside a request (start-up, the purge timer) there is nowhere to note it, and no one asks.
fn note_written(newest: FeedCursor) {
    let _ = WRITTEN.try_with(|slot| {
        slot.set(Some(slot.get().map_or(newest, |c| c.max(newest))));
    });
}

/// What the mirror has applied, for its ordering rule (module comment).
#[derive(Default)]
struct Applied {
    /// The newest change applied per entity, for the entities changed after `feed_read`.
    newest: HashMap<EntityKey, FeedCursor>,
    /// The feed has read, and applied, every change up to here.
    feed_read: Option<FeedCursor>,
}

/// The writer of memory: applies changes in an order that never moves an entity back.
pub struct Mirror {
    /// The newest change applied per entity, for the entities changed after the feed's cursor.
    /// A tokio Mutex, held across the store reads of the kinds that need one (see the module
    /// comment): applies are serialised. Each apply without a read is a few map operations.
    applied: tokio::sync::Mutex<Applied>,
    /// What is written.
    memory: Memory,
    /// Read for the kinds whose state is not in the change itself.
    store: Arc<dyn Database>,
    /// Told after a local write, when configured (set once at start-up).
    redis: Arc<OnceLock<RedisBus>>,
}

impl Mirror {
    pub fn new(memory: Memory, store: Arc<dyn Database>, redis: Arc<OnceLock<RedisBus>>) -> Mirror {
        Mirror {
            applied: Default::default(),
            memory,
            store,
            redis,
        }
    }

    /// Applies changes in order, skipping each one that is not newer than what its entity
    /// already reflects. From the feed, only the last change per entity within `changes` is
    /// applied: a replayed "revoke, lift, revoke again" never shows the lifted state between.
    pub async fn apply(&self, changes: &[Change], origin: Origin) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        if origin == Origin::Local
            && let Some(newest) = changes.iter().map(|c| c.cursor).max()
        {
            note_written(newest);
        }
        let mut guard = self.applied.lock().await;
        let Applied { newest, feed_read } = &mut *guard;
        let applied = newest;
        // Already reflected: a change the feed has read past (it applied every change it read,
        // or skipped it as older than one applied), or one older than its entity's newest. The
        // first matters for a local write the feed read, applied and forgot before the write's
        // own apply came round: counting its revocation again would leave a holder behind.
        let reflected = |applied: &HashMap<EntityKey, FeedCursor>, key: &EntityKey, c: &Change| {
            feed_read.is_some_and(|r| r >= c.cursor)
                || applied.get(key).is_some_and(|newest| *newest >= c.cursor)
        };
        let keys: Vec<EntityKey> = changes.iter().map(entity_key).collect();
        // Only the feed may replay several changes of one entity in one read.
        let last_of: HashMap<&EntityKey, usize> = match origin {
            Origin::Feed => keys.iter().enumerate().map(|(i, k)| (k, i)).collect(),
            Origin::Local => HashMap::new(),
        };
        // And the first of them the entity does not reflect yet: a jti's net change depends
        // on where its stretch starts (below).
        let mut first_new: HashMap<&EntityKey, usize> = HashMap::new();
        if origin == Origin::Feed {
            for (i, (c, key)) in changes.iter().zip(&keys).enumerate() {
                if !reflected(applied, key, c) {
                    first_new.entry(key).or_insert(i);
                }
            }
        }
        for (i, (c, key)) in changes.iter().zip(&keys).enumerate() {
            if origin == Origin::Feed && last_of.get(key) != Some(&i) {
                continue;
            }
            if reflected(applied, key, c) {
                metrics::change_skipped(c.kind.name());
                continue;
            }
            match first_new.get(key).and_then(|&f| changes.get(f)) {
                Some(first) if first.cursor != c.cursor => self.apply_stretch(first, c).await?,
                _ => self.apply_one(c).await?,
            }
            applied.insert(key.clone(), c.cursor);
        }
        drop(guard);
        metrics::set_index_size(self.memory.index.len());
        // Other nodes learn of it through Redis, when configured (PostgreSQL's NOTIFY went out
        // with the commit and needs nothing from us).
        if origin == Origin::Local
            && let Some(r) = self.redis.get()
        {
            r.announce();
        }
        Ok(())
    }

    /// Several changes of one entity read at once, from `first` to `last`: the entity ends as
    /// `last` says. For every kind but a jti that is `last` alone. The revocation index counts
    /// the holders of a jti's fingerprint (one per ledger row), so a jti's stretch is applied
    /// by its net effect on the row: present or absent before (`first` revoking means it was
    /// absent), present or absent after. Applying only `last` would count a lift with no
    /// revocation before it, or a second revocation of a row already held.
    async fn apply_stretch(&self, first: &Change, last: &Change) -> Result<(), StoreError> {
        use ChangeKind::{Lifted, RevocationPurged, Revoked};
        let index = &self.memory.index;
        let tenant = last.tenant.as_str();
        match (&first.kind, &last.kind) {
            (Revoked { .. }, Revoked { jti, until }) => index.insert_jti(tenant, jti, *until),
            (Revoked { .. }, Lifted { .. } | RevocationPurged { .. }) => {}
            (Lifted { .. } | RevocationPurged { .. }, Revoked { jti, until }) => {
                index.replace_jti(tenant, jti, *until)
            }
            (
                Lifted { .. } | RevocationPurged { .. },
                Lifted { jti } | RevocationPurged { jti },
            ) => index.remove_jti(tenant, jti),
            _ => return self.apply_one(last).await,
        }
        if let Lifted { jti } | RevocationPurged { jti } | Revoked { jti, .. } = &last.kind {
            self.memory.status_lists.apply(tenant, Affects::Jti(jti));
        }
        Ok(())
    }

    /// The feed has read everything up to `cursor`: later feed changes are all newer than
    /// what is remembered at or before it (module comment).
    pub(crate) async fn forget_applied_before(&self, cursor: FeedCursor) {
        let mut applied = self.applied.lock().await;
        applied.newest.retain(|_, newest| *newest > cursor);
        applied.feed_read = Some(applied.feed_read.map_or(cursor, |r| r.max(cursor)));
    }

    /// Re-reads a tenant's session keys, under the lock like every apply that reads the store:
    /// for a node whose own key insert lost a race with another node's (the feed would bring
    /// the winner a little later; the caller needs it now).
    pub(crate) async fn reload_session_keys(&self, tenant: &str) -> Result<(), StoreError> {
        let _applying = self.applied.lock().await;
        self.load_session_keys(tenant).await
    }

    async fn load_session_keys(&self, tenant: &str) -> Result<(), StoreError> {
        for rec in self.store.list_session_keys(tenant).await? {
            if let Err(e) = self.memory.load_session_key(&rec) {
                // As for signing keys: cookies under a key this node cannot open fail here with
                // `unknown_key`, closed.
                tracing::error!(tenant, kid = %rec.kid, error = %e, "cannot load a session key");
            }
        }
        Ok(())
    }

    /// What one change does to memory: first to the revocation state and key rings, then to
    /// the status lists, whose bits are judged on that state (`status_lists.rs`).
    async fn apply_one(&self, c: &Change) -> Result<(), StoreError> {
        self.apply_to_state(c).await?;
        self.apply_to_status_lists(c).await
    }

    /// The status list side of a change: entries added or removed, and the entries the
    /// change can flip re-judged. A change that touches no token's status does nothing here.
    async fn apply_to_status_lists(&self, c: &Change) -> Result<(), StoreError> {
        use ChangeKind::*;
        let lists = &self.memory.status_lists;
        let tenant = c.tenant.as_str();
        let affects = match &c.kind {
            TenantSuspended | TenantResumed | TenantCutoff { .. } => Affects::All,
            SubjectCutoff { sub, .. } => Affects::Subject(sub),
            Revoked { jti, .. } | Lifted { jti } | RevocationPurged { jti } => Affects::Jti(jti),
            SigningKeyRevoked { kid } => Affects::Key(kid),
            // A touch may bring back the tokens of a session this node had seen go idle (its
            // activity was on another node): registry module comment.
            SessionRevoked { id } | SessionTouched { id, .. } => Affects::Session(id),
            RefreshFamilyRevoked { family } => Affects::Family(family),
            StatusListCreated { .. } => {
                let mut held = self.store.status_lists(tenant).await?;
                held.reverse();
                if let Err(e) = lists.add_lists(&held) {
                    tracing::error!(tenant, error = %e, "a stored status list cannot be held");
                }
                return Ok(());
            }
            StatusEntryAllocated { list, idx } => {
                match self.store.status_entry(tenant, list, *idx).await? {
                    Some(e) => {
                        if let Err(e) = lists.insert(e) {
                            tracing::error!(tenant, list, idx, error = %e, "a stored status list entry cannot be held");
                        }
                    }
                    // Purged since: its purge is the next change of this entity.
                    None => lists.remove(tenant, list, *idx),
                }
                return Ok(());
            }
            StatusEntryPurged { list, idx } => {
                lists.remove(tenant, list, *idx);
                return Ok(());
            }
            TenantStatusList { on } => {
                lists.set_enabled(tenant, *on);
                return Ok(());
            }
            // Nothing a token's status depends on: INVALID is final, so a purged cutoff or
            // session or family flips nothing back; a new or retired key, an API key or a new
            // session (no token names it yet) flips none.
            TenantCreated
            | CutoffPurged { .. }
            | SigningKeyInserted { .. }
            | SigningKeyRetired { .. }
            | ApiKeyInserted { .. }
            | ApiKeyDeleted { .. }
            | SessionCreated { .. }
            | SessionPurged { .. }
            | SessionKeyInserted { .. }
            | RefreshFamilyPurged { .. }
            | Unreadable { .. } => return Ok(()),
        };
        lists.apply(tenant, affects);
        Ok(())
    }

    /// What one change does to the revocation state, the key rings, tenants, API keys and
    /// sessions. With `apply_to_status_lists`, the only `match` over change kinds in the
    /// server.
    async fn apply_to_state(&self, c: &Change) -> Result<(), StoreError> {
        use ChangeKind::*;
        let tenant = c.tenant.as_str();
        match &c.kind {
            TenantCreated => {
                if let Some(t) = self.store.get_tenant(tenant).await? {
                    self.memory.remember_tenant(t);
                }
            }
            TenantSuspended | TenantResumed => {
                let suspended = matches!(c.kind, TenantSuspended);
                // The change carries the state; only a tenant this node has not heard of needs
                // a read (its creation is on the way through the feed).
                if !self.memory.set_tenant_suspended(tenant, suspended)
                    && let Some(t) = self.store.get_tenant(tenant).await?
                {
                    self.memory.remember_tenant(t);
                }
            }
            TenantCutoff { not_before_iat } => {
                self.memory
                    .index
                    .raise_tenant_cutoff(tenant, *not_before_iat);
            }
            SubjectCutoff {
                sub,
                not_before_iat,
            } => self
                .memory
                .index
                .raise_subject_cutoff(tenant, sub, *not_before_iat),
            // Every token the cutoff could reject has expired: dropped here as on every node.
            CutoffPurged { sub } if sub.is_empty() => {
                self.memory.index.remove_tenant_cutoff(tenant)
            }
            CutoffPurged { sub } => self.memory.index.remove_subject_cutoff(tenant, sub),
            Revoked { jti, until } => self.memory.index.insert_jti(tenant, jti, *until),
            Lifted { jti } | RevocationPurged { jti } => self.memory.index.remove_jti(tenant, jti),
            SigningKeyInserted { .. } | SigningKeyRetired { .. } | SigningKeyRevoked { .. } => {
                for rec in self.store.list_signing_keys(tenant).await? {
                    if let Err(e) = self.memory.load_key(&rec) {
                        // A key this node cannot decrypt (a different master key on this node)
                        // is left out: tokens it signed fail here with `unknown_key`, closed.
                        tracing::error!(tenant, kid = %rec.kid, error = %e, "cannot load a signing key");
                    }
                }
            }
            ApiKeyInserted { id } => match self.store.get_api_key(id).await? {
                Some(k) => self.memory.api_keys.insert(k),
                // Deleted since: its deletion is the next change of this entity.
                None => self.memory.api_keys.remove(id),
            },
            ApiKeyDeleted { id } => self.memory.api_keys.remove(id),
            SessionCreated {
                id,
                idle_expires_at,
            }
            | SessionTouched {
                id,
                idle_expires_at,
            } => {
                // The change carries the expiry only; the store has the last activity, which
                // validation reads anyway.
                let times = SessionTimes {
                    last_seen: 0,
                    expires: *idle_expires_at,
                };
                self.memory.index.note_session(tenant, id, times);
                let expires = veto_core::timeutil::from_unix(*idle_expires_at)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
                self.memory
                    .session_cache
                    .persisted_touch(tenant, id, None, expires);
            }
            SessionRevoked { id } => {
                self.memory.index.revoke_session(tenant, id);
                self.memory.session_cache.remove(tenant, id);
            }
            SessionPurged { id } => {
                self.memory.index.forget_session(tenant, id);
                self.memory.session_cache.remove(tenant, id);
            }
            SessionKeyInserted { .. } => self.load_session_keys(tenant).await?,
            RefreshFamilyRevoked { family } => self.memory.index.revoke_family(tenant, family),
            RefreshFamilyPurged { family } => self.memory.index.forget_family(tenant, family),
            // Held by the status lists alone (`apply_to_status_lists`).
            StatusListCreated { .. }
            | StatusEntryAllocated { .. }
            | StatusEntryPurged { .. }
            | TenantStatusList { .. } => {}
            // Written by a newer veto: say so loudly; a restart loads the state it describes.
            Unreadable { name, key, .. } => {
                tracing::warn!(kind = %name, key = %key, tenant, "a change this version cannot read; restart to load the state it describes");
            }
        }
        Ok(())
    }

    /// Builds memory from the start-up snapshots. Fails (refusing to start) when a stored
    /// signing or session key cannot be decrypted: that means a wrong master key, and serving
    /// without those keys would silently reject or mis-sign tokens.
    pub(crate) fn apply_snapshot(
        &self,
        s: StateSnapshot,
        sessions: SessionSnapshot,
    ) -> Result<(), String> {
        for (tenant, cutoff) in s.tenants {
            let state = TenantState {
                suspended: tenant.suspended,
                cutoff,
            };
            self.memory.index.set_tenant(&tenant.id, state);
            self.memory.remember_tenant(tenant);
        }
        for c in &s.subject_cutoffs {
            if let Some(sub) = &c.sub {
                self.memory
                    .index
                    .raise_subject_cutoff(&c.tenant, sub, c.not_before_iat);
            }
        }
        self.memory.index.insert_many(
            s.revocations
                .iter()
                .map(|r| (r.tenant.as_str(), r.jti.as_str(), r.until)),
        );
        // The feed will bring these again: the snapshot holds them already, and applying one
        // twice would count a revocation twice (module comment of veto-core's index).
        let mut applied = self
            .applied
            .try_lock()
            .map_err(|_| "the mirror is already applying changes during start-up".to_owned())?;
        for c in &s.included_after {
            let key = entity_key(c);
            let newest = applied.newest.entry(key).or_insert(c.cursor);
            *newest = (*newest).max(c.cursor);
        }
        drop(applied);
        let wrong_master_key = |what: &str, kid: &str, tenant: &str, e: String| {
            format!(
                "{what} {kid} of tenant {tenant} cannot be decrypted ({e}); is VETO_MASTER_KEY the one this data was written with?"
            )
        };
        for rec in &s.signing_keys {
            self.memory
                .load_key(rec)
                .map_err(|e| wrong_master_key("signing key", &rec.kid, &rec.tenant, e))?;
        }
        for k in s.api_keys {
            self.memory.api_keys.insert(k);
        }
        // Read after the main snapshot: the feed is followed from the main snapshot's cursor,
        // and replaying a session change this snapshot already holds is harmless.
        for (tenant, id) in &sessions.revoked_sessions {
            self.memory.index.revoke_session(tenant, id);
        }
        for (tenant, id, last_seen, expires) in &sessions.sessions {
            let times = SessionTimes {
                last_seen: *last_seen,
                expires: *expires,
            };
            self.memory.index.note_session(tenant, id, times);
        }
        for (tenant, fam) in &sessions.revoked_families {
            self.memory.index.revoke_family(tenant, fam);
        }
        for rec in &sessions.session_keys {
            self.memory
                .load_session_key(rec)
                .map_err(|e| wrong_master_key("session key", &rec.kid, &rec.tenant, e))?;
        }
        // Last: entries are judged on everything above (keys, cutoffs, sessions, families).
        // The snapshot lists each tenant's newest list last, as `add_lists` wants them.
        let lists = &self.memory.status_lists;
        for t in &s.status_list_tenants {
            lists.set_enabled(t, true);
        }
        // A list this node cannot hold (a size this version refuses) is logged, not fatal: its
        // URI answers 404, which relying parties treat as "status unknown" (closed), while
        // every check and every other list keeps working.
        for l in &s.status_lists {
            if let Err(e) = lists.add_lists(std::slice::from_ref(l)) {
                tracing::error!(tenant = %l.tenant, list = %l.id, error = %e, "a stored status list cannot be held");
            }
        }
        for e in s.status_entries {
            let (tenant, list, idx) = (e.tenant.clone(), e.list.clone(), e.idx);
            if let Err(err) = lists.insert(e) {
                tracing::error!(%tenant, %list, idx, error = %err, "a stored status list entry cannot be held");
            }
        }
        metrics::set_index_size(self.memory.index.len());
        Ok(())
    }
}
