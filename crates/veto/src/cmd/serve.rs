//! `veto serve`: open the store, build the in-memory state, bootstrap, listen.
use std::io::Write;
use std::sync::Arc;

use tokio::net::TcpListener;
use veto_server::config::StalePolicy;
use veto_server::redis::RedisBus;
use veto_server::service::bootstrap::AdminKey;
use veto_server::{AppState, Config};

use crate::cli::ServeArgs;
use crate::setup;

pub async fn run(args: ServeArgs) -> Result<(), String> {
    let opened = setup::open_store(&args.store).await?;
    let master = setup::master_keys(&args.keys, &args.store.data_dir)?;

    // Bind before building the state: the default public URL is the bound address (port 0
    // picks one), and a port already in use should fail fast, before any work.
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let mut config = Config::new(&public_url);
    config.max_token_ttl = args.max_token_ttl_seconds;
    config.key_retention = args.max_token_ttl_seconds + 3_600;
    config.body_limit = args.body_limit;
    config.leeway = args.clock_skew_seconds;
    config.purge_interval = args.purge_interval;
    config.max_staleness = args.max_staleness;
    config.feed_poll_interval = args.feed_poll_interval;
    config.stream_heartbeat = args.stream_heartbeat;
    config.rate_limit_per_minute = args.rate_limit_per_minute;
    config.rate_limit_burst = args.rate_limit_burst;
    config.session_cache_capacity = args.session_cache_size;
    config.status_list_size = args.status_list_size;
    let ttl = args.status_list_ttl.as_secs();
    if !(1..=600).contains(&ttl) {
        return Err(format!(
            "--status-list-ttl must be from 1s to 10m, not {ttl} s"
        ));
    }
    config.status_list_ttl = ttl as i64;
    if args.fail_open {
        tracing::warn!(
            "VETO_FAIL_OPEN is set: when this node's revocation state is stale it keeps accepting tokens, including ones revoked elsewhere since"
        );
        config.stale_policy = StalePolicy::FailOpen;
    }

    let started = std::time::Instant::now();
    let metrics = veto_server::metrics::install();
    // Owned here and dropped (aborted) when serving ends: see `Background`.
    let mut background = Background::default();
    spawn_metrics_upkeep(&mut background, metrics.clone());
    let state = AppState::load(config, opened.store.clone(), master, metrics).await?;
    // Catch up with the change feed before answering anything: the snapshot plus every change
    // since is the current state, and /readyz reports ready only once this has succeeded.
    if let Err(e) = state.catch_up().await {
        tracing::warn!(error = %e, "cannot read the change feed yet; not ready until it can");
    }
    background.0.spawn(state.clone().follow_changes());
    let feed = state.clone();
    let wake: veto_store::Wake = Arc::new(move || {
        veto_server::metrics::feed_wakeup("database");
        feed.feed.wake();
    });
    if let Some(signals) = opened.store.change_signals(wake) {
        background.0.spawn(signals);
    }
    if let Some(url) = args.redis_url.clone() {
        spawn_redis(&mut background, url, state.clone());
    }
    tracing::info!(
        revocations = state.index.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "revocation index built"
    );

    state
        .ensure_default_tenant()
        .await
        .map_err(|e| format!("cannot create the default tenant: {}", e.problem().detail))?;
    match state
        .ensure_admin_key(args.bootstrap_admin_key.as_deref())
        .await
        .map_err(|e| {
            format!(
                "cannot create the bootstrap admin key: {}",
                e.problem().detail
            )
        })? {
        AdminKey::FromEnv | AdminKey::Existing => {}
        AdminKey::Generated(secret) => {
            let path = args.store.data_dir.join("bootstrap-admin.key");
            setup::write_secret_file(&path, &secret)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            // Shown once, on stderr only (never through tracing, whose output may be shipped).
            eprintln!(
                "\nveto: created an admin API key (shown only now, also saved to {} with mode 0600):\n\n    {secret}\n",
                path.display()
            );
        }
    }

    spawn_purge(&mut background, state.clone());

    let limits = connection_limits(&args);
    let feed = state.feed.clone();
    let app = veto_server::app(state);
    tracing::info!(%addr, %public_url, "veto listening");
    // The test harness and scripts wait for this exact line on stdout.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();

    let app = veto_server::conn::app_layers(app, &limits);
    // Revocation streams never end by themselves: told to close, they end at once instead of
    // holding the drain up to its bound.
    let closing = async move {
        shutdown().await;
        feed.close();
    };
    veto_server::conn::serve(listener, app, limits, closing, DRAIN).await;
    background.stop().await;
    Ok(())
}

/// How long open requests may take to finish after a shutdown signal.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The connection settings, with the cap lowered to fit the open-file limit (raised first to
/// the hard limit, which needs no privilege).
fn connection_limits(args: &ServeArgs) -> veto_server::conn::ConnLimits {
    let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; assuming 1024");
            1_024
        }
    };
    let (max_connections, lowered) =
        veto_server::conn::fit_to_fd_limit(args.max_connections, nofile);
    if lowered {
        tracing::warn!(
            requested = args.max_connections,
            max_connections,
            open_file_limit = nofile,
            "VETO_MAX_CONNECTIONS lowered to fit the open-file limit; raise the limit (e.g. LimitNOFILE= in systemd, ulimit -n) to allow more"
        );
    }
    veto_server::conn::ConnLimits {
        max_connections,
        max_per_ip: args.max_connections_per_ip,
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
    }
}

/// The node's background tasks (feed follower, notification listeners, purge, metrics upkeep),
/// owned by `run` for as long as it serves, like mini-redis's `DbDropGuard`: when serving ends,
/// or `run` returns early with an error, they stop with it instead of outliving the server
/// inside the runtime. Stopping aborts them at their next await point; that is safe because
/// each of them writes only in whole transactions (a purge batch cut short is rolled back).
#[derive(Default)]
struct Background(tokio::task::JoinSet<()>);

impl Background {
    async fn stop(mut self) {
        self.0.abort_all();
        while self.0.join_next().await.is_some() {}
        tracing::info!("background tasks stopped");
    }
}

/// The Prometheus recorder keeps every histogram sample until it is drained, which a scrape or
/// an upkeep pass does: without this task a node nobody scrapes grows by every request it serves
/// (found by the soak, scripts/load/soak.sh).
fn spawn_metrics_upkeep(
    tasks: &mut Background,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) {
    tasks.0.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Connects to Redis in the background: veto starts and serves without it (it is never the
/// source of truth), and keeps trying until Redis answers.
fn spawn_redis(tasks: &mut Background, url: String, state: AppState) {
    tasks.0.spawn(async move {
        let mut warned = false;
        loop {
            match RedisBus::connect(&url).await {
                Ok(bus) => {
                    tracing::info!("connected to Redis: notifications and revocation mirror on");
                    let feed = state.feed.clone();
                    let wakeups = bus.wakeups(move || feed.wake());
                    state.set_redis(bus);
                    // This task follows the subscription from now on.
                    return wakeups.await;
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "Redis unavailable; serving without it and retrying every 5 s");
                }
                Err(_) => {}
            }
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    });
}

/// The scheduled purge sweep. The first sweep runs one interval after start, so a restart loop
/// cannot turn into a purge loop.
fn spawn_purge(tasks: &mut Background, state: AppState) {
    tasks.0.spawn(async move {
        let period = state.config.purge_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.purge(state.config.purge_margin).await {
                Ok(c) => tracing::info!(
                    revocations = c.revocations,
                    cutoffs = c.cutoffs,
                    signing_keys = c.signing_keys,
                    status_entries = c.status_entries,
                    "scheduled purge done"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduled purge failed; will retry next interval")
                }
            }
        }
    });
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
