//! Everything a request may need: the store (source of truth) and the in-memory state derived
//! from it (revocation index, key ring, tenants, API keys), which answers every check without a
//! database query; and the sub-states handlers take when they need only part of it.
//!
//! Write discipline: the store commits first, memory is updated second, the client is answered
//! third. Memory can therefore lag the store for the microseconds in between, but never lead it,
//! and the node that took a write reflects it before acknowledging (read-your-writes).
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use veto_core::apikey::ApiKeyRecord;
use veto_core::cookie::SessionKeyRing;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::MasterKey;
use veto_core::tenant::Tenant;
use veto_store::{Database, StoreError, Written};

use crate::auth::ApiKeys;
use crate::config::Config;
use crate::documents::Versions;
use crate::error::{ApiError, ApiResult};
use crate::feed::Feed;
use crate::memory::{Memory, Tenants};
use crate::mirror::{Mirror, Origin};
use crate::ratelimit::RateLimits;
use crate::redis::RedisBus;
use crate::session_cache::SessionCache;

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
    // Handles to what the node holds in memory (`memory.rs`), for reading: the mirror, which
    // holds handles to the same structures, is their only writer.
    /// Every tenant's session cookie keys, decrypted once: cookie checks never query.
    pub session_keys: Arc<SessionKeyRing>,
    /// Session rows for validation, kept current by the change feed.
    pub session_cache: Arc<SessionCache>,
    pub master: Arc<MasterKey>,
    pub index: Arc<RevocationIndex>,
    pub keyring: Arc<KeyRing>,
    pub tenants: Tenants,
    pub api_keys: ApiKeys,
    pub metrics: PrometheusHandle,
    /// Limits unauthenticated and failed-authentication traffic per client; `None` when off.
    pub limiter: Option<Arc<RateLimits>>,
    /// Where this node is in the change log, and how fresh its state is.
    pub feed: Arc<Feed>,
    /// Where every change reaches memory (`mirror.rs`).
    pub mirror: Arc<Mirror>,
    /// Where signing that would stall the async workers runs (`service::issuance`).
    pub signing: Arc<crate::signing::SigningPool>,
    /// The versions of the public documents served (their ETag and Last-Modified).
    pub documents: Arc<Versions>,
    /// Every tenant's status lists (issue 14), kept by the mirror.
    pub status_lists: Arc<crate::status_lists::StatusLists>,
    /// Optional Redis (notifications, mirror); set once at start-up, after the state is built.
    redis: Arc<OnceLock<RedisBus>>,
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
    pub status_lists: Arc<crate::status_lists::StatusLists>,
    pub metrics: PrometheusHandle,
}

impl FromRef<AppState> for Ops {
    fn from_ref(st: &AppState) -> Ops {
        Ops {
            store: st.store.clone(),
            feed: st.feed.clone(),
            index: st.index.clone(),
            status_lists: st.status_lists.clone(),
            metrics: st.metrics.clone(),
        }
    }
}

/// What the unauthenticated discovery documents (JWKS, RFC 8414 metadata) are made of, and
/// the versions served of them.
#[derive(Clone)]
pub struct Discovery {
    pub tenants: Tenants,
    pub keyring: Arc<KeyRing>,
    pub config: Arc<Config>,
    pub versions: Arc<Versions>,
}

impl FromRef<AppState> for Discovery {
    fn from_ref(st: &AppState) -> Discovery {
        Discovery {
            tenants: st.tenants.clone(),
            keyring: st.keyring.clone(),
            config: st.config.clone(),
            versions: st.documents.clone(),
        }
    }
}

impl FromRef<AppState> for crate::stream::Streams {
    fn from_ref(st: &AppState) -> crate::stream::Streams {
        crate::stream::Streams {
            store: st.store.clone(),
            feed: st.feed.clone(),
            heartbeat: st.config.stream_heartbeat,
            api_keys: st.api_keys.clone(),
        }
    }
}

impl FromRef<AppState> for Arc<Feed> {
    fn from_ref(st: &AppState) -> Arc<Feed> {
        st.feed.clone()
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
        // After the main snapshot: the feed is followed from its cursor, and replaying a
        // session change this snapshot already holds is harmless.
        let sessions = store
            .load_sessions()
            .await
            .map_err(|e| format!("could not read the session store: {e}"))?;
        let feed = Feed::new(
            config.max_staleness,
            config.stale_policy,
            config.feed_poll_interval,
        );
        feed.set_cursor(snapshot.cursor);
        let limiter = RateLimits::new(config.rate_limit_per_minute, config.rate_limit_burst);
        let memory = Memory::new(master, config.session_cache_capacity);
        let redis = Arc::new(OnceLock::new());
        let mirror = Mirror::new(memory.clone(), store.clone(), redis.clone());
        mirror.apply_snapshot(snapshot, sessions)?;
        let Memory {
            master,
            index,
            keyring,
            tenants,
            api_keys,
            session_keys,
            session_cache,
            status_lists,
        } = memory;
        Ok(AppState(Arc::new(Inner {
            config: Arc::new(config),
            store,
            session_keys,
            session_cache,
            master,
            index,
            keyring,
            tenants,
            api_keys,
            metrics,
            limiter: limiter.map(Arc::new),
            feed: Arc::new(feed),
            mirror: Arc::new(mirror),
            signing: Arc::new(crate::signing::SigningPool::for_this_machine()),
            documents: Arc::default(),
            status_lists,
            redis,
        })))
    }

    /// Uses `bus` for notifications and the mirror from now on (first call wins).
    pub fn set_redis(&self, bus: RedisBus) {
        let _ = self.redis.set(bus);
    }

    pub fn redis(&self) -> Option<&RedisBus> {
        self.redis.get()
    }

    /// Applies the changes of one of this node's own writes (telling the other nodes), and
    /// returns the write's result. Call it before answering the client.
    pub(crate) async fn applied<T>(&self, w: Written<T>) -> ApiResult<T> {
        self.mirror.apply(&w.changes, Origin::Local).await?;
        Ok(w.value)
    }

    /// Reads the change feed once and applies what it finds (`Feed::catch_up`).
    pub async fn catch_up(&self) -> Result<usize, StoreError> {
        self.feed.catch_up(self.store.as_ref(), &self.mirror).await
    }

    /// The follower, for as long as the process runs (`Feed::follow`).
    pub async fn follow_changes(self) {
        let feed = self.feed.clone();
        feed.follow(self.store.clone(), self.mirror.clone()).await
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

    pub fn api_key_by_hash(&self, hash: &[u8; 32]) -> Option<Arc<ApiKeyRecord>> {
        self.api_keys.by_hash(hash)
    }
}
