//! Per-client rate limiting of unauthenticated and failed-authentication traffic.
//!
//! Only two kinds of request spend a client's tokens, each from its own bucket: a request whose
//! credentials are missing or invalid (a 401 carrying `WWW-Authenticate`, counted after
//! authentication failed, so a caller with a valid key is never limited, whatever others from
//! its address do), and the unauthenticated self-logout `POST /t/{tenant}/oauth2/revoke`
//! (counted before it runs: it writes; never refused because of others' failed credentials).
//! Over the limit the answer is 429 with `Retry-After`.
//!
//! The client is the peer address (`ConnectInfo`); IPv6 clients are grouped by /64, the
//! smallest block one host usually holds. Memory is bounded: a bucket that has refilled is the
//! same as no bucket and is dropped by the periodic sweep, and when `MAX_CLIENTS` addresses
//! are tracked, new addresses share one overflow bucket.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::error::OAuthError;

/// Most client addresses tracked at once (a bucket is a few dozen bytes).
pub const MAX_CLIENTS: usize = 100_000;
/// How often refilled buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// `None` is the overflow bucket shared by addresses beyond `MAX_CLIENTS`.
type Key = Option<IpAddr>;

#[derive(Debug)]
struct Buckets {
    map: HashMap<Key, Bucket>,
    last_sweep: Instant,
}

/// A token bucket per client: `burst` tokens, refilled at `per_minute`.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_clients: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// `None` (no limiting) when either setting is 0.
    pub fn new(per_minute: u32, burst: u32) -> Option<RateLimiter> {
        Self::with_capacity(per_minute, burst, MAX_CLIENTS)
    }

    fn with_capacity(per_minute: u32, burst: u32, max_clients: usize) -> Option<RateLimiter> {
        (per_minute > 0 && burst > 0).then(|| RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            max_clients,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        })
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_second).min(self.burst);
        b.at = now;
    }

    fn sweep(&self, s: &mut Buckets, now: Instant) {
        s.map.retain(|_, b| {
            self.refill(b, now);
            b.tokens < self.burst
        });
        s.last_sweep = now;
    }

    /// Spends one of `ip`'s tokens: `Err(seconds)` when it has none, the wait until it has one.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut s = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(s.last_sweep) >= SWEEP_EVERY {
            self.sweep(&mut s, now);
        }
        let ip = client_key(ip);
        let mut key = Some(ip);
        if !s.map.contains_key(&key) && s.map.len() >= self.max_clients {
            // At most one full sweep a second, so a flood of new addresses cannot make every
            // request scan the map.
            if now.saturating_duration_since(s.last_sweep) >= Duration::from_secs(1) {
                self.sweep(&mut s, now);
            }
            if s.map.len() >= self.max_clients {
                key = None;
            }
        }
        let burst = self.burst;
        let b = s.map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let mut bucket = *b;
        self.refill(&mut bucket, now);
        let result = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.per_second).ceil().max(1.0) as u64)
        };
        *b = bucket;
        result
    }

    /// Client addresses currently tracked (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .len()
    }
}

/// IPv4 (also IPv4-mapped IPv6) as is; IPv6 by its /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// `POST /t/{tenant}/oauth2/revoke` without credentials: a user revoking its own token.
fn is_self_logout(req: &Request) -> bool {
    req.method() == Method::POST
        && !req.headers().contains_key(AUTHORIZATION)
        && is_oauth(req.uri().path())
        && req.uri().path().ends_with("/oauth2/revoke")
}

fn is_oauth(path: &str) -> bool {
    path.starts_with("/t/") && path.contains("/oauth2/")
}

/// The two budgets of a client: one spent by failed authentication, one by self-logouts. Kept
/// apart so that behind a NAT or a proxy, where many clients share an address, a burst of bad
/// credentials from one of them cannot get another's genuine logout refused.
#[derive(Debug)]
pub struct RateLimits {
    failures: RateLimiter,
    logouts: RateLimiter,
}

impl RateLimits {
    /// `None` (no limiting) when either setting is 0.
    pub fn new(per_minute: u32, burst: u32) -> Option<RateLimits> {
        Some(RateLimits {
            failures: RateLimiter::new(per_minute, burst)?,
            logouts: RateLimiter::new(per_minute, burst)?,
        })
    }
}

/// The middleware (a route layer: unmatched routes are never counted).
pub async fn limit(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(req).await;
    };
    let oauth = is_oauth(req.uri().path());
    if is_self_logout(&req) {
        return match limits.logouts.take(peer.ip(), Instant::now()) {
            Ok(()) => next.run(req).await,
            Err(wait) => too_many(oauth, wait, "logout"),
        };
    }
    let resp = next.run(req).await;
    let failed =
        resp.status() == StatusCode::UNAUTHORIZED && resp.headers().contains_key(WWW_AUTHENTICATE);
    if failed && let Err(wait) = limits.failures.take(peer.ip(), Instant::now()) {
        return too_many(oauth, wait, "auth_failure");
    }
    resp
}

/// 429 with `Retry-After`: problem+json, or OAuth's error shape on the OAuth endpoints.
fn too_many(oauth: bool, wait: u64, kind: &'static str) -> Response {
    crate::metrics::rate_limited(kind);
    let err = ApiError::TooManyRequests(format!(
        "too many unauthenticated or failed-authentication requests from this address; retry after {wait} s"
    ));
    let mut resp = if oauth {
        OAuthError::from(err).into_response()
    } else {
        err.into_response()
    };
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn off_when_either_setting_is_zero() {
        assert!(RateLimiter::new(0, 10).is_none());
        assert!(RateLimiter::new(10, 0).is_none());
        assert!(RateLimiter::new(10, 10).is_some());
    }

    #[test]
    fn burst_then_retry_after_then_refill() {
        let l = RateLimiter::new(60, 3).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(ip("10.0.0.1"), t0), Ok(()));
        }
        assert_eq!(l.take(ip("10.0.0.1"), t0), Err(1));
        // Another client has its own bucket.
        assert_eq!(l.take(ip("10.0.0.2"), t0), Ok(()));
        // One token a second: after two seconds, two more requests.
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(l.take(ip("10.0.0.1"), t2), Ok(()));
        assert_eq!(l.take(ip("10.0.0.1"), t2), Ok(()));
        assert!(l.take(ip("10.0.0.1"), t2).is_err());
    }

    #[test]
    fn retry_after_is_the_wait_for_one_token() {
        let l = RateLimiter::new(1, 1).unwrap();
        let t0 = Instant::now();
        assert_eq!(l.take(ip("10.0.0.1"), t0), Ok(()));
        assert_eq!(l.take(ip("10.0.0.1"), t0), Err(60));
        assert_eq!(
            l.take(ip("10.0.0.1"), t0 + Duration::from_secs(45)),
            Err(15)
        );
    }

    #[test]
    fn ipv6_is_limited_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = RateLimiter::new(1, 1).unwrap();
        let t0 = Instant::now();
        assert_eq!(l.take(ip("2001:db8::1"), t0), Ok(()));
        assert!(l.take(ip("2001:db8::ffff:2"), t0).is_err());
        assert_eq!(l.take(ip("2001:db8:0:1::1"), t0), Ok(()));
        assert_eq!(l.take(ip("192.0.2.1"), t0), Ok(()));
        assert!(l.take(ip("::ffff:192.0.2.1"), t0).is_err());
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_go() {
        let l = RateLimiter::with_capacity(60, 2, 3).unwrap();
        let t0 = Instant::now();
        for i in 1..=3 {
            assert_eq!(l.take(ip(&format!("10.0.0.{i}")), t0), Ok(()));
        }
        // Full: new addresses share the overflow bucket (burst 2).
        assert_eq!(l.take(ip("10.0.1.1"), t0), Ok(()));
        assert_eq!(l.take(ip("10.0.1.2"), t0), Ok(()));
        assert!(l.take(ip("10.0.1.3"), t0).is_err());
        assert_eq!(l.tracked(), 4);
        // Once the tracked buckets have refilled they are dropped, and new clients get their own.
        let later = t0 + SWEEP_EVERY;
        assert_eq!(l.take(ip("10.0.1.3"), later), Ok(()));
        assert_eq!(l.tracked(), 1);
    }
}
