//! What a node holds in memory so that every check is answered without a database query: the
//! revocation index, signing and session key rings, tenants, API keys and session rows.
//!
//! [`Memory`] is a bundle of handles to those structures. Requests read them through the
//! `AppState` (which holds handles to the same structures); only the mirror (`mirror.rs`), which
//! owns this bundle, writes them, so that the order in which changes reach memory is decided in
//! one place.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use veto_core::cookie::{SessionKey, SessionKeyRecord, SessionKeyRing};
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::{LoadedKey, MasterKey, SigningKeyRecord};
use veto_core::tenant::Tenant;

use crate::auth::ApiKeys;
use crate::error::ApiError;
use crate::locks::{read, write};
use crate::session_cache::SessionCache;
use crate::status_lists::StatusLists;

/// Handles to the in-memory state. Cloning clones the handles, not the state.
#[derive(Clone)]
pub struct Memory {
    /// Opens the stored signing and session keys.
    pub master: Arc<MasterKey>,
    pub index: Arc<RevocationIndex>,
    pub keyring: Arc<KeyRing>,
    pub tenants: Tenants,
    pub api_keys: ApiKeys,
    /// Every tenant's session cookie keys, decrypted once: cookie checks never query.
    pub session_keys: Arc<SessionKeyRing>,
    /// Session rows for validation.
    pub session_cache: Arc<SessionCache>,
    /// Every tenant's status lists, judged against `index` and `keyring`.
    pub status_lists: Arc<StatusLists>,
}

impl Memory {
    /// Empty memory; `session_cache_capacity` rows of sessions at most (0: none cached).
    pub fn new(master: MasterKey, session_cache_capacity: usize) -> Memory {
        let index = Arc::new(RevocationIndex::new());
        let keyring = Arc::new(KeyRing::new());
        Memory {
            master: Arc::new(master),
            status_lists: Arc::new(StatusLists::new(index.clone(), keyring.clone())),
            index,
            keyring,
            tenants: Tenants::default(),
            api_keys: ApiKeys::default(),
            session_keys: Arc::default(),
            session_cache: Arc::new(SessionCache::new(session_cache_capacity)),
        }
    }

    /// Decrypts a stored signing key into the ring; an error when the master key cannot open it.
    pub(crate) fn load_key(&self, rec: &SigningKeyRecord) -> Result<(), String> {
        let loaded = LoadedKey::load(rec, &self.master).map_err(|e| e.to_string())?;
        self.keyring.upsert(loaded);
        Ok(())
    }

    /// Decrypts a stored session key into the ring; an error when the master key cannot open it.
    pub(crate) fn load_session_key(&self, rec: &SessionKeyRecord) -> Result<(), String> {
        let key = SessionKey::load(rec, &self.master).map_err(|e| e.to_string())?;
        self.session_keys.upsert(key);
        Ok(())
    }

    pub(crate) fn remember_tenant(&self, t: Tenant) {
        self.index.set_tenant_suspended(&t.id, t.suspended);
        self.tenants.insert(t);
    }

    /// Sets the suspended flag of a tenant this node knows; `false` for one it does not.
    pub(crate) fn set_tenant_suspended(&self, id: &str, suspended: bool) -> bool {
        self.tenants.update(id, |t| {
            t.suspended = suspended;
            self.index.set_tenant_suspended(id, suspended);
        })
    }
}

/// Tenants by id, for existence (404) and the suspended flag shown by `GET /tenants/{id}`.
/// A std RwLock: reads are short map probes, never held across an await.
#[derive(Clone, Default)]
pub struct Tenants(Arc<RwLock<HashMap<String, Tenant>>>);

impl Tenants {
    pub fn get(&self, id: &str) -> Option<Tenant> {
        read(&self.0).get(id).cloned()
    }

    /// The tenant, or the contract's 404 for an unknown one.
    pub fn require(&self, id: &str) -> Result<Tenant, ApiError> {
        self.get(id)
            .ok_or_else(|| ApiError::NotFound(format!("tenant {id:?} does not exist")))
    }

    pub fn ids(&self) -> Vec<String> {
        read(&self.0).keys().cloned().collect()
    }

    fn insert(&self, t: Tenant) {
        write(&self.0).insert(t.id.clone(), t);
    }

    /// Runs `f` on a tenant this node knows, under the write lock; `false` for one it does not.
    fn update(&self, id: &str, f: impl FnOnce(&mut Tenant)) -> bool {
        match write(&self.0).get_mut(id) {
            Some(t) => {
                f(t);
                true
            }
            None => false,
        }
    }
}
