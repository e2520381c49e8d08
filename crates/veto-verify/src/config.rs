//! What a [`Verifier`](crate::Verifier) is started with.
use std::fmt;
use std::time::Duration;

/// Where veto is, which tenant to follow, and the verifier's bounds. Built with [`Config::new`]
/// and adjusted with its setters; every setter has a sensible default.
#[derive(Clone)]
pub struct Config {
    pub(crate) base_url: String,
    pub(crate) tenant: String,
    pub(crate) api_key: String,
    pub(crate) issuer: Option<String>,
    pub(crate) max_staleness: Duration,
    pub(crate) leeway: i64,
    pub(crate) jwks_min_interval: Duration,
    pub(crate) jwks_refresh: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) http: Option<reqwest::Client>,
}

// The API key is a credential: never printed.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field("tenant", &self.tenant)
            .field("issuer", &self.issuer)
            .field("max_staleness", &self.max_staleness)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// `base_url` is veto's address (e.g. `https://veto.internal:8080`, no path), `tenant` the
    /// tenant whose tokens are checked, `api_key` a key of that tenant with scope
    /// `tokens:verify` (it reads the revocation stream).
    pub fn new(
        base_url: impl Into<String>,
        tenant: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Self {
        let mut base_url: String = base_url.into();
        while base_url.ends_with('/') {
            base_url.pop();
        }
        Config {
            base_url,
            tenant: tenant.into(),
            api_key: api_key.into(),
            issuer: None,
            max_staleness: Duration::from_secs(5),
            leeway: 30,
            jwks_min_interval: Duration::from_secs(1),
            jwks_refresh: Duration::from_secs(300),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
            http: None,
        }
    }

    /// The tenant's issuer (`iss` must equal it). Default: the `issuer` of veto's RFC 8414
    /// metadata for the tenant, read at start.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// How old the revocation state may be before every check fails closed (`index_stale`).
    /// Default 5 s, veto's own default.
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 30, veto's default.
    pub fn leeway_seconds(mut self, leeway: i64) -> Self {
        self.leeway = leeway;
        self
    }

    /// At most one JWKS fetch for unknown kids per this interval (default 1 s): a stream of
    /// tokens with made-up kids cannot make the verifier hammer veto.
    pub fn jwks_min_interval(mut self, interval: Duration) -> Self {
        self.jwks_min_interval = interval;
        self
    }

    /// The JWKS is fetched again this often whatever happens (default 5 min).
    pub fn jwks_refresh(mut self, every: Duration) -> Self {
        self.jwks_refresh = every;
        self
    }

    /// Reconnect backoff: doubles from `initial` up to `max`, with jitter (defaults 100 ms, 5 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// A stream silent for this long (no event, no heartbeat) is dropped and opened again
    /// (default 10 s; veto sends a heartbeat at least every second while it is fresh).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Timeout of a metadata or JWKS fetch (default 5 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The HTTP client to reach veto with (TLS roots, proxies, client certificates). Default: a
    /// plain reqwest client (with the `tls` feature, one that speaks HTTPS through rustls). It
    /// must not have a total request timeout: the stream is one long response.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }
}
