//! Optional Redis (`VETO_REDIS_URL`): change notifications between nodes, and a mirror of the
//! ledger as Redis keys for consumers that read Redis instead of asking veto.
//!
//! Redis is never the source of truth, and veto never reads the mirror back: every decision is
//! made from the in-memory index, built from the store. A Redis flush, restart or outage
//! therefore cannot re-validate a revoked token; it only delays wake-ups (the follower still
//! reads the feed on its timer) and leaves the mirror incomplete until later writes.
//!
//! Everything here is best effort and off the request path: writes to Redis are spawned after
//! the store has committed and the client has its answer, so a slow or absent Redis never slows
//! or fails a revocation.
//!
//! Mirror key format (documented in docs/deployment.md):
//! - `veto:revoked:{tenant}:{jti}` → JSON `{"reason", "revoked_at", "until"}` (unix seconds;
//!   `until` null for a permanent revocation), expiring when the token would have (`expires_at`),
//!   or when a suspension lifts (`until`), whichever is first. Deleted when a suspension is lifted.
//! - `veto:cutoff:{tenant}` and `veto:cutoff:{tenant}:sub:{sub}` → `not_before_iat` (tokens of
//!   the tenant / subject with `iat` below it are revoked), expiring with the cutoff.
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use veto_core::revocation::{Cutoff, Revocation};

/// Pub/sub channel on which every node announces that it wrote to the change log.
pub const CHANNEL: &str = "veto:changes";

/// A connection to Redis for publishing and mirroring. Cheap to clone (the manager multiplexes
/// one connection and reconnects on its own).
#[derive(Clone)]
pub struct RedisBus {
    client: redis::Client,
    conn: ConnectionManager,
}

/// Redis keys are built from tenant ids (restricted alphabet) and jtis / subjects (caller
/// chosen). A ':' in a jti cannot make two keys collide because the tenant id cannot contain
/// one and the jti is last; a subject is prefixed with `sub:` for the same reason.
pub fn revoked_key(tenant: &str, jti: &str) -> String {
    format!("veto:revoked:{tenant}:{jti}")
}

pub fn cutoff_key(tenant: &str, sub: Option<&str>) -> String {
    match sub {
        None => format!("veto:cutoff:{tenant}"),
        Some(s) => format!("veto:cutoff:{tenant}:sub:{s}"),
    }
}

/// Seconds a mirror key should live: until `end`, at least one second (Redis refuses 0).
fn ttl(end: i64, now: i64) -> u64 {
    end.saturating_sub(now).max(1) as u64
}

impl RedisBus {
    /// Connects; fails when Redis does not answer at start-up, so that a wrong URL is noticed at
    /// once (later outages are survived).
    pub async fn connect(url: &str) -> Result<RedisBus, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid VETO_REDIS_URL: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| "Redis at VETO_REDIS_URL did not answer within 5 s".to_owned())?
        .map_err(|e| format!("cannot connect to Redis at VETO_REDIS_URL: {e}"))?;
        Ok(RedisBus { client, conn })
    }

    /// Announces a committed write to the other nodes. Spawned: never delays the caller.
    pub fn announce(&self) {
        let mut conn = self.conn.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.publish::<_, _, i64>(CHANNEL, "").await {
                tracing::debug!(error = %e, "Redis publish failed (nodes still poll the feed)");
                crate::metrics::redis_error("publish");
            }
        });
    }

    /// Mirrors new revocations (one pipeline per call). Spawned.
    pub fn mirror_revocations(&self, recs: Vec<Revocation>) {
        if recs.is_empty() {
            return;
        }
        let mut conn = self.conn.clone();
        tokio::spawn(async move {
            let now = veto_core::timeutil::now().unix_timestamp();
            let mut pipe = redis::pipe();
            for r in &recs {
                let until = r.until.map(|u| u.unix_timestamp());
                let end = until.map_or(r.expires_at.unix_timestamp(), |u| {
                    u.min(r.expires_at.unix_timestamp())
                });
                if end <= now {
                    continue;
                }
                let value = serde_json::json!({
                    "reason": r.reason,
                    "revoked_at": r.revoked_at.unix_timestamp(),
                    "until": until,
                })
                .to_string();
                pipe.set_ex(revoked_key(&r.tenant, &r.jti), value, ttl(end, now))
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(error = %e, n = recs.len(), "Redis mirror write failed");
                crate::metrics::redis_error("mirror");
            }
        });
    }

    /// Removes a lifted suspension from the mirror. Spawned.
    pub fn unmirror_revocation(&self, tenant: &str, jti: &str) {
        let key = revoked_key(tenant, jti);
        let mut conn = self.conn.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.del::<_, i64>(key).await {
                tracing::debug!(error = %e, "Redis mirror delete failed");
                crate::metrics::redis_error("mirror");
            }
        });
    }

    /// Mirrors a tenant or subject cutoff. Spawned.
    pub fn mirror_cutoff(&self, c: &Cutoff) {
        let key = cutoff_key(&c.tenant, c.sub.as_deref());
        let (value, end) = (c.not_before_iat, c.expires_at.unix_timestamp());
        let mut conn = self.conn.clone();
        tokio::spawn(async move {
            let now = veto_core::timeutil::now().unix_timestamp();
            if end <= now {
                return;
            }
            if let Err(e) = conn.set_ex::<_, _, ()>(key, value, ttl(end, now)).await {
                tracing::debug!(error = %e, "Redis mirror write failed");
                crate::metrics::redis_error("mirror");
            }
        });
    }

    /// Calls `wake` (which wakes the feed follower) on every announcement of another node, for
    /// as long as the returned future runs (the caller owns it, so it stops with the server):
    /// subscribes, and after a lost connection subscribes again (a second later). Announcements
    /// lost meanwhile only delay changes until the follower's next timed read.
    pub fn wakeups<W>(&self, wake: W) -> impl Future<Output = ()> + use<W>
    where
        W: Fn() + Send + 'static,
    {
        let client = self.client.clone();
        async move {
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                        Ok(()) => {
                            let mut messages = pubsub.on_message();
                            while messages.next().await.is_some() {
                                crate::metrics::feed_wakeup("redis");
                                wake();
                            }
                            tracing::warn!("Redis subscription ended; resubscribing");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to Redis"),
                    },
                    Err(e) => tracing::debug!(error = %e, "Redis unreachable for pub/sub"),
                }
                crate::metrics::redis_error("subscribe");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
