//! Server settings, resolved by the binary from flags and `VETO_*` variables.
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// Base of every tenant's issuer: `iss` = `<public_url>/t/<tenant>`. No trailing slash.
    pub public_url: String,
    /// Longest `ttl_seconds` a token may be issued with; also the lifetime of a revocation of a
    /// bare jti given without `expires_at` (the contract's "tenant's maximum token lifetime").
    pub max_token_ttl: i64,
    /// `ttl_seconds` when a request gives none.
    pub default_token_ttl: i64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: i64,
    /// How long a retired signing key keeps verifying. Default: `max_token_ttl` + 1 h, so every
    /// token it signed expires before it goes.
    pub key_retention: i64,
    /// Request body limit (413 beyond).
    pub body_limit: usize,
    /// How often the purge sweep runs, and the safety margin it keeps.
    pub purge_interval: Duration,
    pub purge_margin: i64,
    /// Rows deleted per purge transaction: small enough that a purge never holds the store's
    /// write lock for long.
    pub purge_batch: u32,
    /// How old the in-memory revocation state may get (no successful read of the change feed)
    /// before the node fails closed (`VETO_MAX_STALENESS`).
    pub max_staleness: Duration,
    /// What a stale node does with checks; fail closed unless explicitly set otherwise.
    pub stale_policy: StalePolicy,
    /// How often the change feed is read without a notification: the longest a lost
    /// notification delays a change, and the steady-state lag on an idle node.
    pub feed_poll_interval: Duration,
    /// Rate limit of unauthenticated and failed-authentication requests per client address:
    /// tokens per minute and bucket size (`ratelimit`). 0 in either turns it off.
    pub rate_limit_per_minute: u32,
    pub rate_limit_burst: u32,
    /// Session rows kept in memory for validation (`session_cache`); 0 reads the store on
    /// every validation.
    pub session_cache_capacity: usize,
    /// How often a revocation stream sends a heartbeat while the node is fresh
    /// (`VETO_STREAM_HEARTBEAT`); a subscriber's state ages from its last heartbeat.
    pub stream_heartbeat: Duration,
    /// Entries of each status list (`VETO_STATUS_LIST_SIZE`, a power of two): how many tokens
    /// a list hides each one among.
    pub status_list_size: u32,
    /// The `ttl` of a Status List Token and the `max-age` it is served with: how long a
    /// relying party may keep a list before fetching it again (`VETO_STATUS_LIST_TTL`).
    pub status_list_ttl: i64,
    /// `exp - iat` of a Status List Token: how long a relying party that cannot reach veto may
    /// go on using its copy. Past that, the draft has it treat the status as unknown.
    pub status_list_validity: i64,
}

impl Config {
    pub fn new(public_url: &str) -> Self {
        let max_token_ttl = 86_400;
        Config {
            public_url: public_url.trim_end_matches('/').to_owned(),
            max_token_ttl,
            default_token_ttl: 900,
            leeway: 30,
            key_retention: max_token_ttl + 3_600,
            body_limit: 1024 * 1024,
            purge_interval: Duration::from_secs(3_600),
            purge_margin: 3_600,
            purge_batch: 1_000,
            max_staleness: Duration::from_secs(5),
            stale_policy: StalePolicy::FailClosed,
            feed_poll_interval: Duration::from_millis(500),
            rate_limit_per_minute: 600,
            rate_limit_burst: 60,
            session_cache_capacity: 100_000,
            stream_heartbeat: Duration::from_secs(1),
            status_list_size: 1 << 17,
            status_list_ttl: 60,
            status_list_validity: 3_600,
        }
    }

    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/t/{}", self.public_url, tenant)
    }
}

/// Whether and how a stale node answers checks (`feed.rs` decides when a node is stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    /// Default: a stale node rejects every token (`index_stale`) and reports not ready.
    FailClosed,
    /// Explicit opt-in: a stale node keeps answering from what it has, and may accept a token
    /// that another node revoked since. `/readyz` still reports 503.
    FailOpen,
}
