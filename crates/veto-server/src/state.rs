//! Everything a request may need: the store (source of truth) and the in-memory state derived
//! from it (revocation index, key ring, tenants, API keys), which answers every check without a
//! database query; and the sub-states handlers take when they need only part of it.
//!
//! Write discipline: the store commits first, memory is updated second, the client is answered
//! third. Memory can therefore lag the store for the microseconds in between, but never lead it,
//! and the node that took a write reflects it before acknowledging (read-your-writes).
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use veto_core::apikey::ApiKeyRecord;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::{LoadedKey, MasterKey, SigningKeyRecord};
use veto_core::tenant::Tenant;
use veto_store::Database;

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::error::ApiError;
use crate::feed::Feed;

/// The whole state. The service operations (`service::*`) are its methods; a handler that needs
/// less takes one of the sub-states below instead (`State<Ops>`, ...), each built from this one
/// through `FromRef`, so that what it depends on shows in its signature.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    /// The database: the source of truth, read at start-up and on the feed, written by every
    /// mutating operation. Sessions, session keys, pre-login state and refresh families are in
    /// it too (`SessionStore`, one of its traits).
    pub store: Arc<dyn Database>,
    /// Every tenant's session cookie keys, decrypted once: cookie checks never query.
    pub session_keys: veto_core::cookie::SessionKeyRing,
    /// Session rows for validation, kept current by the change feed.
    pub session_cache: crate::session_cache::SessionCache,
    pub master: Arc<MasterKey>,
    pub index: Arc<RevocationIndex>,
    pub keyring: Arc<KeyRing>,
    pub tenants: Tenants,
    pub api_keys: ApiKeys,
    pub metrics: PrometheusHandle,
    /// Limits unauthenticated and failed-authentication traffic per client; `None` when off.
    pub limiter: Option<crate::ratelimit::RateLimiter>,
    /// Where this node is in the change log, and how fresh its state is.
    pub feed: Arc<Feed>,
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

/// What the operational endpoints (`/readyz`, `/metrics`) read: the node's health, never a
/// tenant's data.
#[derive(Clone)]
pub struct Ops {
    pub store: Arc<dyn Database>,
    pub feed: Arc<Feed>,
    pub index: Arc<RevocationIndex>,
    pub metrics: PrometheusHandle,
}

impl FromRef<AppState> for Ops {
    fn from_ref(st: &AppState) -> Ops {
        Ops {
            store: st.store.clone(),
            feed: st.feed.clone(),
            index: st.index.clone(),
            metrics: st.metrics.clone(),
        }
    }
}

/// What the unauthenticated discovery documents (JWKS, RFC 8414 metadata) are made of.
#[derive(Clone)]
pub struct Discovery {
    pub tenants: Tenants,
    pub keyring: Arc<KeyRing>,
    pub config: Arc<Config>,
}

impl FromRef<AppState> for Discovery {
    fn from_ref(st: &AppState) -> Discovery {
        Discovery {
            tenants: st.tenants.clone(),
            keyring: st.keyring.clone(),
            config: st.config.clone(),
        }
    }
}

impl FromRef<AppState> for Tenants {
    fn from_ref(st: &AppState) -> Tenants {
        st.tenants.clone()
    }
}

impl FromRef<AppState> for ApiKeys {
    fn from_ref(st: &AppState) -> ApiKeys {
        st.api_keys.clone()
    }
}

/// For the few handlers that read the store directly, with no service operation between.
impl FromRef<AppState> for Arc<dyn Database> {
    fn from_ref(st: &AppState) -> Arc<dyn Database> {
        st.store.clone()
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
        let feed = Feed::new(
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
            config: Arc::new(config),
            store,
            session_keys: Default::default(),
            session_cache,
            master: Arc::new(master),
            index: Arc::new(RevocationIndex::new()),
            keyring: Arc::new(KeyRing::new()),
            tenants: Tenants::default(),
            api_keys: ApiKeys::default(),
            metrics,
            limiter,
            feed: Arc::new(feed),
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
        self.tenants.get(id)
    }

    /// The tenant, or the contract's 404 for an unknown one.
    pub fn require_tenant(&self, id: &str) -> Result<Tenant, ApiError> {
        self.tenants.require(id)
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        self.tenants.ids()
    }

    pub(crate) fn remember_tenant(&self, t: Tenant) {
        self.index.set_tenant_suspended(&t.id, t.suspended);
        self.tenants.insert(t);
    }

    /// Sets the suspended flag of a tenant this node knows; `false` for one it does not.
    pub(crate) fn set_tenant_suspended_in_memory(&self, id: &str, suspended: bool) -> bool {
        self.tenants.update(id, |t| {
            t.suspended = suspended;
            self.index.set_tenant_suspended(id, suspended);
        })
    }

    pub fn api_key_by_hash(&self, hash: &[u8; 32]) -> Option<Arc<ApiKeyRecord>> {
        self.api_keys.by_hash(hash)
    }

    pub(crate) fn remember_api_key(&self, k: ApiKeyRecord) {
        self.api_keys.insert(k);
    }

    pub(crate) fn forget_api_key(&self, id: &str) {
        self.api_keys.remove(id);
    }
}
