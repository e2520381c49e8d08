//! The in-memory set of loaded keys of every tenant, read on every issue and verify.
use std::collections::HashMap as StdHashMap;
use std::sync::{Arc, RwLock};

use crate::Alg;
use crate::keys::{KeyStatus, LoadedKey};

/// Hashed with foldhash (seeded per process) rather than SipHash: every check looks up a tenant
/// and a kid, and the keys of these maps are written by veto, never by a caller, so a caller's
/// kid can only miss, not crowd a bucket.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct KeyRing {
    // tenant → kid → key. A std RwLock: readers clone an Arc and let go at once, writers (key
    // created, rotated, revoked) are rare, and no guard is ever held across an await.
    tenants: RwLock<HashMap<String, HashMap<String, Arc<LoadedKey>>>>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, HashMap<String, Arc<LoadedKey>>>> {
        // Writers replace whole entries; a panicked writer leaves consistent data behind.
        self.tenants.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts a key, or replaces it (same tenant and kid) after a status change.
    pub fn upsert(&self, key: LoadedKey) {
        let mut t = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        t.entry(key.tenant.clone())
            .or_default()
            .insert(key.kid.clone(), Arc::new(key));
    }

    pub fn remove(&self, tenant: &str, kid: &str) {
        let mut t = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = t.get_mut(tenant) {
            keys.remove(kid);
        }
    }

    pub fn get(&self, tenant: &str, kid: &str) -> Option<Arc<LoadedKey>> {
        self.read().get(tenant)?.get(kid).cloned()
    }

    /// The key that signs a new token: an active key of `alg` bound to `audience`, else an
    /// active unbound one; the newest when several qualify. `audience: None` takes unbound
    /// keys only, so a key reserved for one audience never signs tokens for everyone.
    pub fn signing_key(
        &self,
        tenant: &str,
        alg: Alg,
        audience: Option<&str>,
    ) -> Option<Arc<LoadedKey>> {
        let t = self.read();
        let keys = t.get(tenant)?;
        let newest = |bound: Option<&str>| {
            keys.values()
                .filter(|k| k.signs() && k.alg == alg && k.audience.as_deref() == bound)
                .max_by(|a, b| {
                    a.created_at
                        .cmp(&b.created_at)
                        .then_with(|| a.kid.cmp(&b.kid))
                })
                .cloned()
        };
        audience
            .and_then(|a| newest(Some(a)))
            .or_else(|| newest(None))
    }

    /// Every key of the tenant, newest first.
    pub fn list(&self, tenant: &str) -> Vec<Arc<LoadedKey>> {
        let mut v: Vec<Arc<LoadedKey>> = self
            .read()
            .get(tenant)
            .map(|k| k.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.kid.cmp(&a.kid))
        });
        v
    }

    /// RFC 7517 JWKS: public keys that still verify (active, or retired within retention).
    /// HMAC keys have no public half and never appear; revoked keys leave at once.
    pub fn jwks(&self, tenant: &str, now_unix: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .list(tenant)
            .into_iter()
            .filter(|k| k.status != KeyStatus::Revoked && k.verifies_at(now_unix))
            .filter_map(|k| k.public_jwk.clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    /// Keys of one tenant, every status.
    pub fn count(&self, tenant: &str) -> usize {
        self.read().get(tenant).map_or(0, HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
