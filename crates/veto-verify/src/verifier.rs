//! The verifier: the tenant's keys and revocation state kept in memory by two background tasks
//! (the JWKS, the revocation stream), and checks answered from them without any network call
//! but the rate-limited JWKS fetch for an unknown kid.
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use veto_core::check::Checker;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::verify::VerifiedToken;
use veto_core::{Alg, Reason};

use crate::config::Config;
use crate::keys::sync_ring;
use crate::metrics;
use crate::sse::{LineTooLong, SseParser};
use crate::state::{Fed, KeyChange, Ledger, ProtocolError, current_until};

/// JOSE `typ` of veto's access tokens (RFC 9068).
const ACCESS_TYP: &str = "at+jwt";
/// The longest event-stream line accepted. A snapshot part holds at most 5,000 entries
/// (docs/stream.md); even at a few hundred bytes each that stays well below this.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Why a token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// What veto itself would answer: `revoked`, `expired`, `bad_signature`, `index_stale`, ...
    #[error("token rejected: {}", .0.as_str())]
    Rejected(Reason),
    /// An HMAC-signed token: its secret never leaves veto, so only veto can check it.
    #[error(
        "{0} tokens can only be checked by veto itself (token introspection): an HMAC secret never leaves veto"
    )]
    Symmetric(Alg),
}

impl VerifyError {
    /// A short, stable code: veto's reason (`revoked`, `index_stale`, ...) or `hmac_unsupported`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Rejected(r) => r.as_str(),
            VerifyError::Symmetric(_) => "hmac_unsupported",
        }
    }

    /// The reason, when veto would have given the same one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            VerifyError::Rejected(r) => Some(*r),
            VerifyError::Symmetric(_) => None,
        }
    }
}

/// A verifier that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("tenant id: {0}")]
    Tenant(String),
    #[error("veto's base URL must start with http:// or https://: {0:?}")]
    BaseUrl(String),
    #[error("the verifier runs background tasks: start it inside a Tokio runtime")]
    NoRuntime,
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// How current the verifier's revocation state is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// The stream position up to which every change is applied (the last snapshot, change or
    /// heartbeat received): what a reconnect resumes after. Opaque, like every veto position.
    pub position: Option<String>,
    /// Age of the state: time since the last heartbeat or change plus the age veto reported
    /// with it. `None` before the first complete snapshot.
    pub age: Option<Duration>,
    /// The stream is connected right now.
    pub connected: bool,
    /// Checks may answer active (the age is within the bound).
    pub current: bool,
}

/// Checks veto's access tokens of one tenant inside this process. Cheap to clone (one `Arc`);
/// the background tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // The last second's checks, which the stopped reporter would have handed over.
        self.shared.checks.publish(&self.shared.label);
    }
}

struct Status {
    position: Option<String>,
    received: Option<Instant>,
    /// `age_ms` of the last heartbeat: a change received later is as old as the node said it
    /// was then.
    age_ms: u64,
    connected: bool,
}

/// The JWKS as last fetched and the kids the stream says are revoked: together, what the key
/// ring must hold. Under one lock, so the two tasks that change them never interleave.
struct KeySources {
    jwks: Vec<Value>,
    revoked: HashSet<String>,
}

struct Shared {
    config: Config,
    /// The tenant, as the metrics label.
    label: Arc<str>,
    checks: metrics::CheckCounts,
    http: reqwest::Client,
    metadata_url: String,
    jwks_url: String,
    stream_url: String,
    issuer: OnceLock<String>,
    keys: KeyRing,
    index: RwLock<Arc<RevocationIndex>>,
    key_sources: Mutex<KeySources>,
    /// Origin of `current_until`.
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the state is current; 0 before the first
    /// snapshot. One atomic, so the per-check freshness gate takes no lock.
    current_until: AtomicU64,
    status: Mutex<Status>,
    /// When the JWKS was last fetched, under an async lock: concurrent fetches for unknown
    /// kids queue behind one fetch instead of each making their own.
    jwks_gate: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped after every successful JWKS fetch.
    jwks_generation: AtomicU64,
    jwks_wake: Notify,
}

impl Verifier {
    /// Starts following the tenant: returns at once, with the JWKS, the issuer and the first
    /// snapshot arriving in the background. Until the first snapshot is complete, every token
    /// whose signature and claims hold is `index_stale` (fail closed); [`ready`](Self::ready)
    /// waits for it. Must be called inside a Tokio runtime.
    pub fn start(config: Config) -> Result<Verifier, StartError> {
        veto_core::tenant::validate_tenant_id(&config.tenant).map_err(StartError::Tenant)?;
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(StartError::BaseUrl(config.base_url.clone()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let http = match &config.http {
            Some(c) => c.clone(),
            None => reqwest::Client::builder()
                .connect_timeout(config.fetch_timeout)
                .build()?,
        };
        let (base, tenant) = (&config.base_url, &config.tenant);
        let shared = Arc::new(Shared {
            metadata_url: format!("{base}/.well-known/oauth-authorization-server/t/{tenant}"),
            jwks_url: format!("{base}/t/{tenant}/.well-known/jwks.json"),
            stream_url: format!("{base}/v1/tenants/{tenant}/revocations/stream"),
            issuer: OnceLock::new(),
            keys: KeyRing::new(),
            index: RwLock::new(Arc::new(RevocationIndex::new())),
            key_sources: Mutex::new(KeySources {
                jwks: Vec::new(),
                revoked: HashSet::new(),
            }),
            epoch: Instant::now(),
            current_until: AtomicU64::new(0),
            status: Mutex::new(Status {
                position: None,
                received: None,
                age_ms: 0,
                connected: false,
            }),
            jwks_gate: tokio::sync::Mutex::new(None),
            jwks_generation: AtomicU64::new(0),
            jwks_wake: Notify::new(),
            label: Arc::from(config.tenant.as_str()),
            checks: metrics::CheckCounts::default(),
            http,
            config,
        });
        if let Some(issuer) = &shared.config.issuer {
            let _ = shared.issuer.set(issuer.clone());
        }
        let tasks = vec![
            runtime
                .spawn(follow_stream(Arc::clone(&shared)))
                .abort_handle(),
            runtime.spawn(keep_jwks(Arc::clone(&shared))).abort_handle(),
            runtime.spawn(report(Arc::clone(&shared))).abort_handle(),
        ];
        Ok(Verifier {
            inner: Arc::new(Inner { shared, tasks }),
        })
    }

    /// The tenant this verifier checks tokens of.
    pub fn tenant(&self) -> &str {
        &self.inner.shared.config.tenant
    }

    /// The issuer tokens must carry, once known.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.shared.issuer.get().map(String::as_str)
    }

    /// Checks an access token (`typ` `at+jwt`) from memory: signature against the tenant's
    /// JWKS, claims, then the revocation state, exactly as veto's own check
    /// (`veto_core::check::Checker`). `audience`, when given, must be among the token's `aud`.
    ///
    /// Never makes a network call: a token whose kid is not known is `unknown_key` (and the
    /// JWKS is fetched again in the background). [`verify`](Self::verify) fetches it first.
    pub fn check(&self, token: &str, audience: Option<&str>) -> Result<VerifiedToken, VerifyError> {
        let s = &self.inner.shared;
        let outcome = s.check(token, audience);
        if matches!(outcome, Err(VerifyError::Rejected(Reason::UnknownKey))) {
            s.jwks_wake.notify_one();
        }
        s.count(&outcome);
        outcome
    }

    /// [`check`](Self::check), except that a token whose kid is not known makes the verifier
    /// fetch the JWKS first (at most once per `jwks_min_interval`, shared by every caller)
    /// and check again: the way a key created a moment ago becomes known. The only network
    /// call a check ever makes.
    pub async fn verify(
        &self,
        token: &str,
        audience: Option<&str>,
    ) -> Result<VerifiedToken, VerifyError> {
        let s = &self.inner.shared;
        let mut outcome = s.check(token, audience);
        if matches!(outcome, Err(VerifyError::Rejected(Reason::UnknownKey)))
            && s.fetch_jwks_for_unknown_kid().await
        {
            outcome = s.check(token, audience);
        }
        s.count(&outcome);
        outcome
    }

    /// How current the revocation state is, and where in veto's change log it stands.
    pub fn freshness(&self) -> Freshness {
        let s = &self.inner.shared;
        let status = s.status.lock().unwrap_or_else(|e| e.into_inner());
        let current = s.is_current();
        let age = (s.current_until.load(Ordering::Acquire) != 0)
            .then(|| {
                status
                    .received
                    .map(|r| r.elapsed() + Duration::from_millis(status.age_ms))
            })
            .flatten();
        Freshness {
            position: status.position.clone(),
            age,
            connected: status.connected,
            current,
        }
    }

    /// Waits until the state is current (the first snapshot applied and fresh), at most
    /// `timeout`; whether it is.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.inner.shared.is_current() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Shared {
    fn tenant(&self) -> &str {
        &self.config.tenant
    }

    fn check(&self, token: &str, audience: Option<&str>) -> Result<VerifiedToken, VerifyError> {
        // Without the issuer nothing can be judged: no state yet, so fail closed.
        let Some(issuer) = self.issuer.get() else {
            return Err(VerifyError::Rejected(Reason::IndexStale));
        };
        // Held for the check rather than cloning the `Arc` out: two fewer atomic writes on a
        // line every core shares, and a new snapshot waits for checks of tens of µs at most.
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let checker = Checker {
            keys: &self.keys,
            index: &index,
            tenant: self.tenant(),
            issuer,
            leeway: self.config.leeway,
        };
        checker
            .check(token, ACCESS_TYP, audience, unix_now(), || {
                self.is_current()
            })
            .map_err(|r| rejection(token, r))
    }

    fn count(&self, outcome: &Result<VerifiedToken, VerifyError>) {
        self.checks
            .count(outcome.as_ref().err().map(VerifyError::reason));
    }

    fn is_current(&self) -> bool {
        let until = self.current_until.load(Ordering::Acquire);
        until != 0 && nanos(self.epoch.elapsed()) < until
    }

    /// A heartbeat or change arrived now, from a node whose state was `age_ms` old.
    fn mark_fresh(&self, age_ms: Option<u64>, position: Option<&str>) {
        let now = Instant::now();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = age_ms {
            status.age_ms = a;
        }
        status.received = Some(now);
        status.position = position.map(str::to_owned);
        let until = current_until(
            now.duration_since(self.epoch),
            status.age_ms,
            self.config.max_staleness,
        );
        // 1, not 0, for "already too old": 0 means no state at all.
        let until = until.map_or(1, |u| nanos(u).max(1));
        self.current_until.store(until, Ordering::Release);
    }

    fn set_connected(&self, connected: bool) {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connected = connected;
    }

    fn sync_keys(&self, update: impl FnOnce(&mut KeySources)) {
        let mut src = self.key_sources.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut src);
        sync_ring(&self.keys, self.tenant(), &src.jwks, &src.revoked);
    }

    async fn fetch_jwks(&self) -> Result<(), reqwest::Error> {
        let fetched = async {
            self.http
                .get(&self.jwks_url)
                .timeout(self.config.fetch_timeout)
                .send()
                .await?
                .error_for_status()?
                .json::<Jwks>()
                .await
        }
        .await;
        metrics::jwks_fetch(&self.label, fetched.is_ok());
        let jwks = fetched?;
        self.sync_keys(|src| src.jwks = jwks.keys);
        self.jwks_generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Fetches the JWKS for a kid not known, unless it was fetched less than
    /// `jwks_min_interval` ago. True when a fetch completed while the caller waited (its own or
    /// another caller's), i.e. when checking again may give another answer.
    async fn fetch_jwks_for_unknown_kid(&self) -> bool {
        let seen = self.jwks_generation.load(Ordering::Acquire);
        let mut last = self.jwks_gate.lock().await;
        if self.jwks_generation.load(Ordering::Acquire) != seen {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.config.jwks_min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch_jwks().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(tenant = self.tenant(), error = %e, "JWKS fetch failed");
                false
            }
        }
    }

    async fn fetch_issuer(&self) -> Result<(), StreamError> {
        if self.issuer.get().is_some() {
            return Ok(());
        }
        let meta: Metadata = self
            .http
            .get(&self.metadata_url)
            .timeout(self.config.fetch_timeout)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let _ = self.issuer.set(meta.issuer);
        Ok(())
    }

    /// One connection of the stream, followed until it ends. `progressed` is set once it has
    /// delivered state (so the backoff starts over).
    async fn follow_once(
        &self,
        ledger: &mut Ledger,
        progressed: &mut bool,
    ) -> Result<(), StreamError> {
        self.fetch_issuer().await?;
        let mut req = self
            .http
            .get(&self.stream_url)
            .bearer_auth(&self.config.api_key)
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(p) = ledger.position() {
            match http::HeaderValue::from_str(p) {
                Ok(v) => req = req.header("Last-Event-ID", v),
                Err(_) => ledger.forget_position(),
            }
        }
        // A veto that accepts the connection and then says nothing is as good as gone.
        let mut resp = tokio::time::timeout(self.config.idle_timeout, req.send())
            .await
            .map_err(|_| StreamError::Idle)??;
        let status = resp.status();
        if status == http::StatusCode::BAD_REQUEST && ledger.position().is_some() {
            // veto cannot read the position (docs/stream.md): start over with a snapshot.
            ledger.forget_position();
        }
        if !status.is_success() {
            return Err(StreamError::Status(status));
        }
        self.set_connected(true);
        let mut parser = SseParser::new(MAX_LINE);
        loop {
            let chunk = tokio::time::timeout(self.config.idle_timeout, resp.chunk())
                .await
                .map_err(|_| StreamError::Idle)??;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            for event in parser.push(&chunk)? {
                let fed = ledger.feed(&event)?;
                if !matches!(fed, Fed::Ignored | Fed::SnapshotPart) {
                    *progressed = true;
                }
                self.after(ledger, fed);
            }
        }
    }

    /// Makes what the ledger just did visible to checks.
    fn after(&self, ledger: &Ledger, fed: Fed) {
        match fed {
            Fed::Snapshot => {
                *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(ledger.index());
                let revoked = ledger.revoked_keys().clone();
                self.sync_keys(|src| src.revoked = revoked);
                self.mark_fresh(None, ledger.position());
            }
            Fed::Change { keys } => {
                match keys {
                    KeyChange::Revoked(kid) => self.sync_keys(|src| {
                        src.revoked.insert(kid);
                    }),
                    KeyChange::JwksChanged => self.jwks_wake.notify_one(),
                    KeyChange::None => {}
                }
                if ledger.has_state() {
                    self.mark_fresh(None, ledger.position());
                }
            }
            Fed::Heartbeat { age_ms } => {
                if ledger.has_state() {
                    self.mark_fresh(Some(age_ms), ledger.position());
                }
            }
            Fed::SnapshotPart | Fed::Ignored => {}
        }
    }
}

/// Why a stream connection ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("veto answered {0}")]
    Status(http::StatusCode),
    #[error("no event for the idle timeout")]
    Idle,
    #[error(transparent)]
    Line(#[from] LineTooLong),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

#[derive(serde::Deserialize)]
struct Jwks {
    keys: Vec<Value>,
}

#[derive(serde::Deserialize)]
struct Metadata {
    issuer: String,
}

/// The revocation stream, for as long as the verifier lives: reconnects after every end with
/// capped exponential backoff and jitter, resuming after the last position applied.
async fn follow_stream(shared: Arc<Shared>) {
    let mut ledger = Ledger::new(shared.tenant());
    let mut attempt: u32 = 0;
    loop {
        let mut progressed = false;
        let ended = shared.follow_once(&mut ledger, &mut progressed).await;
        ledger.disconnected();
        shared.set_connected(false);
        match ended {
            Ok(()) => tracing::info!(tenant = shared.tenant(), "revocation stream ended"),
            // An event this crate cannot read comes again after every reconnect: the state
            // then ages until checks fail closed, which an operator must hear about.
            Err(e @ (StreamError::Protocol(_) | StreamError::Line(_))) => {
                tracing::error!(tenant = shared.tenant(), error = %e, "revocation stream unreadable")
            }
            Err(e) => tracing::warn!(tenant = shared.tenant(), error = %e, "revocation stream"),
        }
        metrics::reconnect(&shared.label);
        if progressed {
            attempt = 0;
        }
        let c = &shared.config;
        tokio::time::sleep(backoff(attempt, c.backoff_initial, c.backoff_max)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// The JWKS: fetched at start, again when the stream says a key was created or retired or a
/// check met an unknown kid (never more often than `jwks_min_interval`), and every
/// `jwks_refresh`.
async fn keep_jwks(shared: Arc<Shared>) {
    let mut attempt: u32 = 0;
    loop {
        // The wait for the rate limit is slept without the gate held: a check meeting an
        // unknown kid meanwhile must find the gate free and be told no, not queue behind it.
        let fetched = loop {
            let mut last = shared.jwks_gate.lock().await;
            let wait = last.map_or(Duration::ZERO, |t| {
                shared.config.jwks_min_interval.saturating_sub(t.elapsed())
            });
            if wait.is_zero() {
                *last = Some(Instant::now());
                break shared.fetch_jwks().await;
            }
            drop(last);
            tokio::time::sleep(wait).await;
        };
        let c = &shared.config;
        match fetched {
            Ok(()) => {
                attempt = 0;
                tokio::select! {
                    () = shared.jwks_wake.notified() => {}
                    () = tokio::time::sleep(c.jwks_refresh) => {}
                }
            }
            Err(e) => {
                tracing::warn!(tenant = shared.tenant(), error = %e, "JWKS fetch failed");
                tokio::time::sleep(backoff(attempt, c.backoff_initial, c.backoff_max)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// The gauges and the check counts, once a second.
async fn report(shared: Arc<Shared>) {
    let verifier_view = |s: &Shared| {
        let status = s.status.lock().unwrap_or_else(|e| e.into_inner());
        let age = match (s.current_until.load(Ordering::Acquire), status.received) {
            (0, _) | (_, None) => f64::INFINITY,
            (_, Some(r)) => (r.elapsed() + Duration::from_millis(status.age_ms)).as_secs_f64(),
        };
        (age, status.connected)
    };
    loop {
        let (age, connected) = verifier_view(&shared);
        let held = shared.index.read().unwrap_or_else(|e| e.into_inner()).len();
        metrics::state(&shared.label, age, held, connected);
        shared.checks.publish(&shared.label);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `initial · 2^attempt`, capped at `max`, of which a random half is waited ("equal jitter"):
/// verifiers cut off together do not all come back in the same instant.
fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let full = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    let half = full / 2;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let fraction = (h.finish() % 1_000) as u32;
    half + half * fraction / 1_000
}

/// Why a token failed, told as this crate tells it: a token veto signed with an HMAC key is
/// one only veto can check, whatever the pipeline found (no such key is ever in the JWKS, so it
/// fails as `unknown_key`, or as `bad_signature` against a key of another alg).
fn rejection(token: &str, reason: Reason) -> VerifyError {
    if matches!(reason, Reason::UnknownKey | Reason::BadSignature)
        && let Some(alg) = header_alg(token)
        && alg.is_hmac()
    {
        return VerifyError::Symmetric(alg);
    }
    VerifyError::Rejected(reason)
}

/// The header's `alg`, read only to explain a failure, never to decide one.
fn header_alg(token: &str) -> Option<Alg> {
    #[derive(serde::Deserialize)]
    struct Header {
        alg: String,
    }
    let header = token.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<Header>(&json)
        .ok()?
        .alg
        .parse()
        .ok()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let ms = Duration::from_millis;
        for attempt in 0..40 {
            let full = ms(100).saturating_mul(1 << attempt.min(20)).min(ms(5_000));
            let got = backoff(attempt, ms(100), ms(5_000));
            assert!(got >= full / 2 && got <= full, "{attempt}: {got:?}");
        }
    }

    #[test]
    fn hmac_tokens_are_told_apart() {
        let t = |header: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header));
        let hs = t(r#"{"alg":"HS384","typ":"at+jwt","kid":"k"}"#);
        assert_eq!(
            rejection(&hs, Reason::UnknownKey),
            VerifyError::Symmetric(Alg::HS384)
        );
        assert_eq!(
            rejection(&hs, Reason::BadSignature),
            VerifyError::Symmetric(Alg::HS384)
        );
        // Only failures that an HMAC token can cause are reworded.
        assert_eq!(
            rejection(&hs, Reason::Expired),
            VerifyError::Rejected(Reason::Expired)
        );
        let es = t(r#"{"alg":"ES256","typ":"at+jwt","kid":"k"}"#);
        assert_eq!(
            rejection(&es, Reason::UnknownKey),
            VerifyError::Rejected(Reason::UnknownKey)
        );
        assert_eq!(
            rejection("garbage", Reason::UnknownKey),
            VerifyError::Rejected(Reason::UnknownKey)
        );
        assert!(
            VerifyError::Symmetric(Alg::HS256)
                .to_string()
                .contains("only be checked by veto itself")
        );
    }
}
