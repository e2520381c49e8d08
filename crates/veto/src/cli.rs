//! Command-line interface. Every flag can also come from its `VETO_*` environment variable, so
//! the same binary is configured the same way in a shell, a container or a unit file.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "veto",
    version,
    about = "veto: issue, verify and revoke JWTs, with a durable revocation ledger",
    long_about = "veto issues JWTs from per-tenant signing keys, verifies them against signature, claims and \
revocation state, and keeps a durable revocation ledger that every check answers from memory.\n\n\
Start it with `veto serve`: with no configuration it listens on 127.0.0.1:8080 and keeps its data in ./veto-data."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `veto=debug,sqlx=warn`.
    #[arg(long, env = "VETO_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Log format on stderr.
    #[arg(long, env = "VETO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up and matched once: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit (`serve` also applies them on start).
    Migrate(StoreArgs),
    /// Delete ledger rows whose tokens have expired, in bounded batches, with a progress bar.
    Purge(PurgeArgs),
    /// Print a new random master key (base64 of 32 bytes) for VETO_MASTER_KEY.
    GenMasterKey,
    /// Master key operations.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Re-encrypt every stored secret (signing keys, session keys, PKCE verifiers of pending
    /// logins) from the previous master key to the new one, row by row in bounded transactions,
    /// while servers keep serving. Run it once every node runs with the new key as
    /// VETO_MASTER_KEY and the old one as VETO_MASTER_KEY_PREVIOUS; afterwards drop
    /// VETO_MASTER_KEY_PREVIOUS. Re-running it is harmless. See docs/deployment.md.
    Rotate(RotateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MasterKeyArgs {
    /// Master key: base64 of 32 random bytes (`veto gen-master-key`). Encrypts signing keys,
    /// session keys and pending PKCE verifiers at rest. From the environment only: on the
    /// command line it is refused (any local user can read a process's arguments).
    #[arg(long, env = "VETO_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// File holding the master key in base64.
    #[arg(long, env = "VETO_MASTER_KEY_FILE", conflicts_with = "master_key")]
    pub master_key_file: Option<PathBuf>,
    /// The master key being rotated away from (base64): what it sealed still opens, nothing new
    /// is sealed with it. Set only during a master key rotation. From the environment only.
    #[arg(long, env = "VETO_MASTER_KEY_PREVIOUS", hide_env_values = true)]
    pub master_key_previous: Option<String>,
    /// File holding the previous master key in base64.
    #[arg(
        long,
        env = "VETO_MASTER_KEY_PREVIOUS_FILE",
        conflicts_with = "master_key_previous"
    )]
    pub master_key_previous_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub keys: MasterKeyArgs,
    /// Rows per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store (and, without VETO_MASTER_KEY, of the generated master key).
    #[arg(long, env = "VETO_DATA_DIR", default_value = "./veto-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` selects PostgreSQL instead of the embedded store.
    #[arg(long, env = "VETO_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on; port 0 picks a free port (the chosen address is printed on stdout).
    #[arg(long, env = "VETO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL of this service as clients see it; tokens carry `iss` = `<public url>/t/<tenant>`.
    /// Default: `http://<listen address>`.
    #[arg(long, env = "VETO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Optional Redis (`redis://host:port/db`): change notifications between nodes, and a
    /// mirror of revocations as keys for consumers that read Redis. Never the source of truth.
    #[arg(long, env = "VETO_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// How old this node's revocation state may get (no successful read of the change feed,
    /// e.g. the database is down) before it fails closed: every check answers inactive with
    /// reason `index_stale`, and /readyz answers 503. E.g. 5s, 1500ms.
    #[arg(long, env = "VETO_MAX_STALENESS", default_value = "5s", value_parser = parse_positive_duration)]
    pub max_staleness: std::time::Duration,
    /// RISK: keep answering checks from stale state instead of failing closed. A token revoked
    /// on another node while this one is cut off from the database is then ACCEPTED here until
    /// it expires or the node catches up. Only for deployments that prefer availability over
    /// revocation; /readyz still reports 503 while stale.
    #[arg(long, env = "VETO_FAIL_OPEN", default_value_t = false)]
    pub fail_open: bool,
    /// How often the change feed is read without a notification: bounds the delay a lost
    /// notification can cause, and the lag of an idle node.
    #[arg(long, env = "VETO_FEED_POLL_INTERVAL", default_value = "500ms", value_parser = parse_positive_duration)]
    pub feed_poll_interval: std::time::Duration,
    /// How often a revocation stream (GET /v1/tenants/{t}/revocations/stream) sends a heartbeat
    /// while this node's state is fresh. Subscribers (veto-verify) count their state's age from
    /// the last one, so keep it well below their staleness bound (default 5s).
    #[arg(long, env = "VETO_STREAM_HEARTBEAT", default_value = "1s", value_parser = parse_positive_duration)]
    pub stream_heartbeat: std::time::Duration,
    #[command(flatten)]
    pub keys: MasterKeyArgs,
    /// Secret of an admin API key that must exist after start (created if missing). From the
    /// environment only: on the command line it is refused.
    #[arg(long, env = "VETO_BOOTSTRAP_ADMIN_KEY", hide_env_values = true)]
    pub bootstrap_admin_key: Option<String>,
    /// How often expired ledger rows are purged: seconds, or a number with s, m, h or d.
    #[arg(long, env = "VETO_PURGE_INTERVAL", default_value = "1h", value_parser = parse_positive_duration)]
    pub purge_interval: std::time::Duration,
    /// Longest token lifetime that may be issued, in seconds.
    #[arg(long, env = "VETO_MAX_TOKEN_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(60..=31_536_000))]
    pub max_token_ttl_seconds: i64,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "VETO_CLOCK_SKEW_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(0..=300))]
    pub clock_skew_seconds: i64,
    /// Request body limit in bytes.
    #[arg(long, env = "VETO_BODY_LIMIT", default_value_t = 1024 * 1024, value_parser = positive_usize)]
    pub body_limit: usize,
    /// Most client connections open at once; a connection beyond it is closed at once. Lowered
    /// (with a warning) to fit the process's open-file limit less 256 descriptors for the
    /// database, Redis and files; see docs/deployment.md for the limit a deployment needs.
    #[arg(long, env = "VETO_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = positive_usize)]
    pub max_connections: usize,
    /// Most connections open at once from one client address (IPv6: one /64), so that one
    /// client cannot take every slot. Behind a reverse proxy every client has the proxy's
    /// address: raise it to the proxy's connection pool, or 0 to turn it off.
    #[arg(long, env = "VETO_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub max_connections_per_ip: usize,
    /// How long a client has to send a request's headers, and how long a kept-alive connection
    /// may sit idle between requests, before it is closed.
    #[arg(long, env = "VETO_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_timeout: std::time::Duration,
    /// How long a client has to send a whole request body: 408 beyond.
    #[arg(long, env = "VETO_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub body_timeout: std::time::Duration,
    /// Rate limit, per client address (IPv6: per /64), of requests with missing or invalid
    /// credentials (401) and of unauthenticated self-logout (`POST /t/{tenant}/oauth2/revoke`):
    /// tokens refilled per minute. Beyond it: 429 with Retry-After. Callers with a valid key
    /// are never limited. 0 turns rate limiting off.
    #[arg(long, env = "VETO_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_per_minute: u32,
    /// Bucket size of that rate limit: how many such requests a client may send at once.
    /// 0 turns rate limiting off.
    #[arg(long, env = "VETO_RATE_LIMIT_BURST", default_value_t = 60)]
    pub rate_limit_burst: u32,
    /// Session rows kept in memory so that validating a session cookie reads no database
    /// (kept current by the change feed; a few hundred bytes per row, at most about 1.5 KiB).
    /// Least useful rows are evicted beyond it, and cost one database read on their next
    /// validation. 0 turns the cache off.
    #[arg(long, env = "VETO_SESSION_CACHE_SIZE", default_value_t = 100_000)]
    pub session_cache_size: usize,
    /// Entries per OAuth Token Status List (a power of two from 131072 to 67108864): each token
    /// issued with a status list entry hides among this many. A new list starts when the
    /// current one is full.
    #[arg(long, env = "VETO_STATUS_LIST_SIZE", default_value_t = 1 << 17, value_parser = power_of_two_list_size)]
    pub status_list_size: u32,
    /// How long a relying party may keep a status list before fetching it again (its `ttl`
    /// claim and `Cache-Control: max-age`), 1 s to 10 min: the longest a revocation may go
    /// unseen by a verifier that honours it.
    #[arg(long, env = "VETO_STATUS_LIST_TTL", default_value = "60s", value_parser = parse_positive_duration)]
    pub status_list_ttl: std::time::Duration,
}

/// The sizes `veto_core::status_list::StatusList` holds: fewer entries would tell too much
/// about each token's holder (docs/security.md).
fn power_of_two_list_size(s: &str) -> Result<u32, String> {
    use veto_core::status_list::{MAX_ENTRIES, MIN_ENTRIES};
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if n.is_power_of_two() && (MIN_ENTRIES..=MAX_ENTRIES).contains(&(n as usize)) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is not a power of two from {MIN_ENTRIES} to {MAX_ENTRIES}; try 131072 (2^17)"
        ))
    }
}

#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Keep rows whose token expired less than this many seconds ago. At least the clock-skew
    /// leeway: a token is accepted that long after it expires, and purging its row before then
    /// would let it through again.
    #[arg(long, default_value_t = 3_600)]
    pub safety_margin_seconds: i64,
    /// The servers' clock-skew leeway, the smallest margin allowed.
    #[arg(long, env = "VETO_CLOCK_SKEW_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(0..=300))]
    pub clock_skew_seconds: i64,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// The server's longest token lifetime: sessions and refresh families are kept this much
    /// longer than the margin, until every token carrying their id has expired.
    #[arg(long, env = "VETO_MAX_TOKEN_TTL_SECONDS", default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(60..=31_536_000))]
    pub max_token_ttl_seconds: i64,
}

/// Settings that are secrets, by argument id, with where to give them instead.
const SECRETS: [(&str, &str); 3] = [
    ("master_key", "VETO_MASTER_KEY or VETO_MASTER_KEY_FILE"),
    (
        "master_key_previous",
        "VETO_MASTER_KEY_PREVIOUS or VETO_MASTER_KEY_PREVIOUS_FILE",
    ),
    ("bootstrap_admin_key", "VETO_BOOTSTRAP_ADMIN_KEY"),
];

/// Refuses a secret given as a command-line flag: every local user can read a process's
/// arguments (`/proc/<pid>/cmdline`, `ps`), and shells keep them in their history. The flags
/// stay defined so that `--help` documents the variables, but only the environment (or a file)
/// may carry the value.
pub fn refuse_secrets_on_the_command_line(m: &clap::ArgMatches) -> Result<(), String> {
    if let Some((_, sub)) = m.subcommand() {
        refuse_secrets_on_the_command_line(sub)?;
    }
    for (id, instead) in SECRETS {
        let given = m.ids().any(|i| i.as_str() == id);
        if given && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            let flag = id.replace('_', "-");
            return Err(format!(
                "--{flag} on the command line is readable by every local user (ps, /proc/<pid>/cmdline); set {instead} instead"
            ));
        }
    }
    Ok(())
}

/// A count that must be at least 1.
fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// A duration that must not be zero.
pub fn parse_positive_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// `90`, `90s`, `250ms`, `15m`, `1h`, `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 30s, 15m, 1h"))?;
    let mult_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit in {s:?}; use ms, s, m, h or d")),
    };
    if n == 0 {
        return Err("the interval must be positive".into());
    }
    Ok(std::time::Duration::from_millis(n.saturating_mul(mult_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
