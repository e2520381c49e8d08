//! Every tenant's status lists as this node holds them (docs/architecture.md, "Token status
//! lists"): the entries, and the bit arrays derived from the node's revocation state by
//! `veto_core::status_list::registry`.
//!
//! The mirror is the only writer of the entries and of the tenants' settings; it asks for a
//! re-judgement after each change it applies to the revocation state, under the same mirror
//! lock, so a list read after a write was applied shows it. Serving a list also writes the
//! bits, but only the time-driven flips (`tick`: a suspension's `until` passed, a session went
//! idle), which depend on the clock and the state, never on the order of changes.
//!
//! Checks never read these: a list is what *other* verifiers read, and a node's own checks
//! answer from the index as before. The locks are per tenant, so recompressing one tenant's
//! list never waits on another's, and a check never waits on any of them.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::status_list::registry::{Affects, Judge, TenantStatusLists};
use veto_core::status_list::{Status, StatusListError};
use veto_store::{StatusEntry, StatusListInfo};

use crate::locks::{lock, read, write};

/// One tenant's lists behind its own lock.
type Shared = Arc<Mutex<TenantStatusLists>>;

pub struct StatusLists {
    index: Arc<RevocationIndex>,
    keys: Arc<KeyRing>,
    tenants: RwLock<HashMap<String, Shared>>,
    /// Tenants whose `status_list` setting is on.
    enabled: RwLock<HashSet<String>>,
    /// The Status List Token last signed, per (tenant, list): served again while it still
    /// says what the list says (`service::status_lists`).
    signed: Mutex<HashMap<(String, String), Signed>>,
}

/// A Status List Token as served.
#[derive(Clone)]
pub struct ServedList {
    pub token: Arc<str>,
    /// A strong validator: a hash of the token.
    pub etag: Arc<str>,
    /// `Cache-Control: max-age`, the token's `ttl`.
    pub max_age: i64,
}

/// A signed token, and what it was made of.
pub(crate) struct Signed {
    /// A hash of the `lst` it carries.
    pub lst_hash: u128,
    pub kid: String,
    pub iat: i64,
    pub served: ServedList,
}

impl StatusLists {
    /// Lists judged against `index` and `keys`: the state every check of this node reads.
    pub fn new(index: Arc<RevocationIndex>, keys: Arc<KeyRing>) -> StatusLists {
        StatusLists {
            index,
            keys,
            tenants: RwLock::default(),
            enabled: RwLock::default(),
            signed: Mutex::default(),
        }
    }

    fn judge<'a>(&'a self, tenant: &'a str) -> Judge<'a> {
        Judge {
            index: &self.index,
            keys: &self.keys,
            tenant,
            now: veto_core::timeutil::now().unix_timestamp(),
        }
    }

    fn tenant(&self, tenant: &str) -> Option<Shared> {
        read(&self.tenants).get(tenant).cloned()
    }

    fn tenant_or_new(&self, tenant: &str) -> Shared {
        if let Some(t) = self.tenant(tenant) {
            return t;
        }
        write(&self.tenants)
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// Whether the tenant's tokens get an entry when the issuer does not say.
    pub fn enabled(&self, tenant: &str) -> bool {
        read(&self.enabled).contains(tenant)
    }

    pub(crate) fn set_enabled(&self, tenant: &str, on: bool) {
        let mut e = write(&self.enabled);
        if on {
            e.insert(tenant.to_owned());
        } else {
            e.remove(tenant);
        }
    }

    /// Holds the tenant's stored lists (oldest first; lists already held stay as they are).
    pub(crate) fn add_lists(&self, lists: &[StatusListInfo]) -> Result<(), StatusListError> {
        for l in lists {
            lock(&self.tenant_or_new(&l.tenant)).add_list(&l.id, l.size as usize)?;
        }
        Ok(())
    }

    /// Records an entry and judges it. Its list must be held (the allocation's change comes
    /// after its list's creation, in the feed as in the write).
    pub(crate) fn insert(&self, e: StatusEntry) -> Result<Status, StatusListError> {
        let t = self.tenant_or_new(&e.tenant);
        let judge = self.judge(&e.tenant);
        lock(&t).insert(&e.list, e.idx, e.facts, &judge)
    }

    pub(crate) fn remove(&self, tenant: &str, list: &str, idx: u32) {
        if let Some(t) = self.tenant(tenant) {
            lock(&t).remove(list, idx);
        }
    }

    /// Re-judges the entries a change to the revocation state can touch; call it after the
    /// change reached the index or the key ring.
    pub(crate) fn apply(&self, tenant: &str, affects: Affects<'_>) {
        if let Some(t) = self.tenant(tenant) {
            let changed = lock(&t).apply(affects, &self.judge(tenant));
            if changed > 0 {
                tracing::debug!(tenant, changed, ?affects, "status list entries flipped");
            }
        }
    }

    /// The list's `lst` as of now (time-driven flips applied first); `None` for a list the
    /// tenant does not have.
    pub fn lst(&self, tenant: &str, list: &str) -> Result<Option<String>, StatusListError> {
        let Some(t) = self.tenant(tenant) else {
            return Ok(None);
        };
        let mut t = lock(&t);
        if !t.list_ids().any(|id| id == list) {
            return Ok(None);
        }
        t.tick(&self.judge(tenant));
        t.encode(list).map(|lst| Some(lst.to_owned()))
    }

    /// An entry's status as its list serves it now.
    pub fn status(&self, tenant: &str, list: &str, idx: u32) -> Option<Status> {
        let t = self.tenant(tenant)?;
        let mut t = lock(&t);
        t.tick(&self.judge(tenant));
        t.status(list, idx)
    }

    /// Entries held, all tenants (for the metrics).
    pub fn entries(&self) -> usize {
        let all: Vec<Shared> = read(&self.tenants).values().cloned().collect();
        all.iter().map(|t| lock(t).len()).sum()
    }

    /// The token last signed for the list, when `still` says it may be served again.
    pub(crate) fn signed(
        &self,
        tenant: &str,
        list: &str,
        still: impl FnOnce(&Signed) -> bool,
    ) -> Option<ServedList> {
        let signed = lock(&self.signed);
        let s = signed.get(&(tenant.to_owned(), list.to_owned()))?;
        still(s).then(|| s.served.clone())
    }

    pub(crate) fn remember_signed(&self, tenant: &str, list: &str, s: Signed) {
        lock(&self.signed).insert((tenant.to_owned(), list.to_owned()), s);
    }
}
