//! Everything a request may need, shared by all handlers: the store (source of truth) and the
//! in-memory state derived from it (revocation index, key ring, tenants, API keys), which answers
//! every check without a database query.
//!
//! Write discipline: the store commits first, memory is updated second, the client is answered
//! third. Memory can therefore lag the store for the microseconds in between, but never lead it,
//! and the node that took a write reflects it before acknowledging (read-your-writes).
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use metrics_exporter_prometheus::PrometheusHandle;
use veto_core::apikey::ApiKeyRecord;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::{LoadedKey, MasterKey, SigningKeyRecord};
use veto_core::tenant::Tenant;
use veto_store::Database;

use crate::config::Config;
use crate::error::ApiError;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    /// The database: the source of truth, read at start-up and on the feed, written by every
    /// mutating operation. Sessions, session keys, pre-login state and refresh families are in
    /// it too (`SessionStore`, one of its traits).
    pub store: Arc<dyn Database>,
    /// Every tenant's session cookie keys, decrypted once: cookie checks never query.
    pub session_keys: veto_core::cookie::SessionKeyRing,
    /// Session rows for validation, kept current by the change feed.
    pub session_cache: crate::session_cache::SessionCache,
    pub master: Arc<MasterKey>,
    pub index: RevocationIndex,
    pub keyring: KeyRing,
    /// Tenants by id, for existence (404) and the suspended flag shown by `GET /tenants/{id}`.
    /// A std RwLock: reads are short map probes, never held across an await.
    tenants: RwLock<HashMap<String, Tenant>>,
    /// API keys by SHA-256 of their secret: authentication is a hash plus a map probe, no query.
    api_keys: RwLock<HashMap<[u8; 32], Arc<ApiKeyRecord>>>,
    pub metrics: PrometheusHandle,
    /// Limits unauthenticated and failed-authentication traffic per client; `None` when off.
    pub limiter: Option<crate::ratelimit::RateLimiter>,
    /// Where this node is in the change log, and how fresh its state is.
    pub feed: crate::feed::Feed,
    /// The newest change applied per recently changed entity (`mirror.rs`).
    pub(crate) mirror: crate::mirror::Mirror,
    /// Optional Redis (notifications, mirror); set once at start-up, after the state is built.
    redis: std::sync::OnceLock<crate::redis::RedisBus>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // Writers only insert or remove whole entries, so a panic elsewhere cannot leave the map
    // half-updated: keep serving rather than failing every later request.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl AppState {
    /// Builds the in-memory state from the store. Fails (refusing to start) when any stored
    /// signing key cannot be decrypted: that means a wrong master key, and serving without those
    /// keys would silently reject or mis-sign tokens.
    pub async fn load(
        config: Config,
        store: Arc<dyn Database>,
        master: MasterKey,
        metrics: PrometheusHandle,
    ) -> Result<AppState, String> {
        let snapshot = store
            .load_state(veto_core::timeutil::now())
            .await
            .map_err(|e| format!("could not read the store: {e}"))?;
        let feed = crate::feed::Feed::new(
            config.max_staleness,
            config.stale_policy,
            config.feed_poll_interval,
        );
        let limiter = crate::ratelimit::RateLimiter::new(
            config.rate_limit_per_minute,
            config.rate_limit_burst,
        );
        let session_cache = crate::session_cache::SessionCache::new(config.session_cache_capacity);
        let state = AppState(Arc::new(Inner {
            config,
            store,
            session_keys: Default::default(),
            session_cache,
            master: Arc::new(master),
            index: RevocationIndex::new(),
            keyring: KeyRing::new(),
            tenants: RwLock::new(HashMap::new()),
            api_keys: RwLock::new(HashMap::new()),
            metrics,
            limiter,
            feed,
            mirror: Default::default(),
            redis: std::sync::OnceLock::new(),
        }));
        // After the main snapshot: the feed is followed from its cursor, and replaying a
        // session change this snapshot already holds is harmless.
        let sessions = state
            .store
            .load_sessions()
            .await
            .map_err(|e| format!("could not read the session store: {e}"))?;
        state.apply_snapshot(snapshot, sessions)?;
        Ok(state)
    }

    pub(crate) fn load_key(&self, rec: &SigningKeyRecord) -> Result<(), String> {
        let loaded = LoadedKey::load(rec, &self.master).map_err(|e| e.to_string())?;
        self.keyring.upsert(loaded);
        Ok(())
    }

    /// Uses `bus` for notifications and the mirror from now on (first call wins).
    pub fn set_redis(&self, bus: crate::redis::RedisBus) {
        let _ = self.redis.set(bus);
    }

    pub fn redis(&self) -> Option<&crate::redis::RedisBus> {
        self.redis.get()
    }

    /// After a committed write to the change log: tells the other nodes through Redis, when
    /// configured (PostgreSQL's NOTIFY, sent by the store at commit, needs nothing from us).
    /// Called by the mirror after applying a local write; nowhere else.
    pub(crate) fn announce(&self) {
        if let Some(r) = self.redis() {
            r.announce();
        }
    }

    pub fn tenant(&self, id: &str) -> Option<Tenant> {
        read(&self.tenants).get(id).cloned()
    }

    /// The tenant, or the contract's 404 for an unknown one.
    pub fn require_tenant(&self, id: &str) -> Result<Tenant, ApiError> {
        self.tenant(id)
            .ok_or_else(|| ApiError::NotFound(format!("tenant {id:?} does not exist")))
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        read(&self.tenants).keys().cloned().collect()
    }

    pub(crate) fn remember_tenant(&self, t: Tenant) {
        self.index.set_tenant_suspended(&t.id, t.suspended);
        write(&self.tenants).insert(t.id.clone(), t);
    }

    /// Sets the suspended flag of a tenant this node knows; `false` for one it does not.
    pub(crate) fn set_tenant_suspended_in_memory(&self, id: &str, suspended: bool) -> bool {
        let mut tenants = write(&self.tenants);
        let Some(t) = tenants.get_mut(id) else {
            return false;
        };
        t.suspended = suspended;
        self.index.set_tenant_suspended(id, suspended);
        true
    }

    pub fn api_key_by_hash(&self, hash: &[u8; 32]) -> Option<Arc<ApiKeyRecord>> {
        read(&self.api_keys).get(hash).cloned()
    }

    pub(crate) fn remember_api_key(&self, k: ApiKeyRecord) {
        write(&self.api_keys).insert(k.key_hash, Arc::new(k));
    }

    pub(crate) fn forget_api_key(&self, id: &str) {
        write(&self.api_keys).retain(|_, k| k.id != id);
    }
}
