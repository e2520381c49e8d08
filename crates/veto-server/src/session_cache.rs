//! A bounded in-memory copy of session rows, so that validating a session cookie does not read
//! the store on every request.
//!
//! What is cached is the row as the store last held it (actor, CSRF hash, absolute expiry, idle
//! timeout, and the persisted touch times). Everything about a session that changes after it is
//! opened reaches this node through the change feed, which keeps this cache and the revocation
//! index current:
//! - a revocation (here or on another node) goes into the index, which validation asks first,
//!   and drops the entry;
//! - a touch written back moves the persisted times here (and the idle expiry in the index);
//! - a purge drops the entry.
//!
//! So the cache is exactly as current as the feed, and validation trusts it only while the feed
//! is fresh (within `VETO_MAX_STALENESS`, also under `VETO_FAIL_OPEN`): past that, it reads the
//! store, which answers or fails with 503, as before there was a cache. A session never becomes
//! valid again through the cache: revoked rows are never inserted, and the index's revoked set is
//! checked before the cache.
//!
//! Bounded by entry count (S3-FIFO eviction, `quick_cache`): an evicted session costs one store
//! read on its next validation, nothing else.
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use quick_cache::Equivalent;
use quick_cache::sync::Cache;
use time::{Duration, OffsetDateTime};
use veto_store::sessions::StoredSession;

type Key = (String, String);

/// Looks a `(tenant, id)` key up without allocating two strings. Hashes exactly as the owned
/// tuple does (`String` hashes as `str`), which `Equivalent` requires.
struct Lookup<'a>(&'a str, &'a str);

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

pub struct SessionCache {
    /// `None` when configured with capacity 0: every validation reads the store.
    inner: Option<Cache<Key, Arc<StoredSession>>>,
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            inner: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<StoredSession>> {
        self.inner.as_ref()?.get(&Lookup(tenant, id))
    }

    /// Keeps a row just read from the store. A revoked row is not kept: the index answers for
    /// it, and a cache that only ever holds live rows cannot resurrect one.
    pub fn insert(&self, s: Arc<StoredSession>) {
        if let Some(c) = &self.inner
            && s.record.revoked_at.is_none()
        {
            c.insert((s.record.tenant.clone(), s.record.id.clone()), s);
        }
    }

    pub fn remove(&self, tenant: &str, id: &str) {
        if let Some(c) = &self.inner {
            c.remove(&Lookup(tenant, id));
        }
    }

    /// A touch reached the store: this one's write-back, or another node's through the feed.
    /// The feed carries only the idle expiry; the last activity is then taken as that expiry
    /// minus the idle timeout, its lower bound (exact unless the absolute expiry clamped it),
    /// which only makes the next write-back come sooner.
    ///
    /// Two concurrent updates may race and one be lost; the times only ever move forward, and
    /// a lost update means one extra write-back.
    pub fn persisted_touch(
        &self,
        tenant: &str,
        id: &str,
        last_seen: Option<OffsetDateTime>,
        idle_expires: OffsetDateTime,
    ) {
        let Some(old) = self.get(tenant, id) else {
            return;
        };
        let r = &old.record;
        let seen = last_seen
            .unwrap_or_else(|| idle_expires - Duration::seconds(old.idle_timeout_seconds))
            .max(r.last_seen_at);
        let expires = idle_expires
            .max(r.idle_expires_at)
            .min(r.absolute_expires_at);
        if seen == r.last_seen_at && expires == r.idle_expires_at {
            return;
        }
        let mut new = StoredSession::clone(&old);
        new.record.last_seen_at = seen;
        new.record.idle_expires_at = expires;
        self.insert(Arc::new(new));
    }

    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veto_core::session::{NewSession, SessionPolicy, SessionRecord};

    fn stored(tenant: &str, now: OffsetDateTime) -> Arc<StoredSession> {
        let new = NewSession {
            tenant,
            actor_id: "alice",
            actor_type: "user",
            ip_address: None,
            user_agent: None,
        };
        let (record, _csrf) = SessionRecord::new(&new, &SessionPolicy::default(), now).unwrap();
        Arc::new(StoredSession {
            record,
            idle_timeout_seconds: 3600,
        })
    }

    const NOW: i64 = 1_700_000_000;

    /// A cache of `capacity` given one fresh session of `tenant`; the cache, the session's id
    /// and its opening time.
    fn with_one(capacity: usize, tenant: &str) -> (SessionCache, String, OffsetDateTime) {
        let cache = SessionCache::new(capacity);
        let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        let s = stored(tenant, now);
        let id = s.record.id.clone();
        cache.insert(s);
        (cache, id, now)
    }

    #[test]
    fn entries_are_per_tenant_and_revoked_rows_are_never_kept() {
        let (cache, id, now) = with_one(16, "t1");
        assert!(cache.get("t1", &id).is_some());
        assert!(
            cache.get("t2", &id).is_none(),
            "another tenant's lookup misses"
        );

        let mut revoked = StoredSession::clone(&stored("t1", now));
        revoked.record.revoked_at = Some(now);
        let rid = revoked.record.id.clone();
        cache.insert(Arc::new(revoked));
        assert!(cache.get("t1", &rid).is_none());

        cache.remove("t1", &id);
        assert!(cache.is_empty());
    }

    #[test]
    fn persisted_touches_only_move_times_forward_within_the_absolute_expiry() {
        let (cache, id, now) = with_one(16, "t");
        let absolute = cache.get("t", &id).unwrap().record.absolute_expires_at;

        // From the feed: only the expiry is known; last activity is its lower bound.
        let later = now + Duration::minutes(10);
        cache.persisted_touch("t", &id, None, later + Duration::hours(1));
        let r = cache.get("t", &id).unwrap().record.clone();
        assert_eq!(r.last_seen_at, later);
        assert_eq!(r.idle_expires_at, later + Duration::hours(1));

        // An older touch arriving late changes nothing.
        cache.persisted_touch("t", &id, Some(now), now + Duration::hours(1));
        assert_eq!(cache.get("t", &id).unwrap().record, r);

        // Never past the absolute expiry.
        cache.persisted_touch("t", &id, None, absolute + Duration::hours(5));
        assert_eq!(
            cache.get("t", &id).unwrap().record.idle_expires_at,
            absolute
        );

        // Unknown sessions stay unknown.
        cache.persisted_touch("t", "ses-other", None, later);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn capacity_zero_disables_caching() {
        let (cache, id, _) = with_one(0, "t");
        assert!(cache.get("t", &id).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = SessionCache::new(100);
        let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        for _ in 0..1_000 {
            cache.insert(stored("t", now));
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
    }
}
