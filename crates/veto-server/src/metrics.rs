//! Prometheus metrics. Names are prefixed `veto_`; label values are bounded sets (route
//! templates, not raw paths; reasons from a closed enum) so cardinality cannot be driven by callers.
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the global recorder once per process and returns a handle to render it. A second
/// call (several servers in one test process) reuses a fresh, unregistered recorder's handle, so
/// it never fails.
pub fn install() -> PrometheusHandle {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("veto_feed_propagation_delay_seconds".into()),
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            )
        })
        .map(|b| b.build_recorder())
        .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
    let handle = recorder.handle();
    // Err only when a recorder is already installed: keep that one.
    let _ = metrics::set_global_recorder(recorder);
    handle
}

/// Counts and times every request by route template, method and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("veto_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("veto_http_request_duration_seconds", "route" => route, "method" => method)
        .record(start.elapsed().as_secs_f64());
    resp
}

pub fn token_issued(alg: &str) {
    metrics::counter!("veto_tokens_issued_total", "alg" => alg.to_owned()).increment(1);
}

pub fn issue_failed(why: &'static str) {
    metrics::counter!("veto_token_issue_failures_total", "reason" => why).increment(1);
}

pub fn check(outcome: &'static str) {
    metrics::counter!("veto_checks_total", "outcome" => outcome).increment(1);
}

/// One more revocation in the ledger, labelled by the class of its reason (a closed vocabulary,
/// `veto_core::revocation::reason_class`) and its kind (`permanent` or `suspension`). Reasons
/// themselves are free text chosen by tenants: as label values they would let any caller mint
/// series without bound, and would show one tenant's words to whoever reads `/metrics`. They
/// stay in the ledger and the audit trail.
pub fn revoked(reason: Option<&str>, until: Option<time::OffsetDateTime>, n: u64) {
    let kind = if until.is_some() {
        "suspension"
    } else {
        "permanent"
    };
    let reason = veto_core::revocation::reason_class(reason);
    metrics::counter!("veto_revocations_total", "reason" => reason, "kind" => kind).increment(n);
}

/// Client connections open right now (`conn.rs`).
pub fn connections_open(n: usize) {
    metrics::gauge!("veto_connections_open").set(n as f64);
}

/// A connection closed at once because a cap was reached (`limit`: which one).
pub fn connection_refused(limit: &'static str) {
    metrics::counter!("veto_connections_refused_total", "limit" => limit).increment(1);
}

pub fn set_index_size(n: usize) {
    metrics::gauge!("veto_revocation_index_size").set(n as f64);
}

/// Status list entries held (tokens issued with one and not purged yet), all tenants.
pub fn set_status_list_entries(n: usize) {
    metrics::gauge!("veto_status_list_entries").set(n as f64);
}

/// A Status List Token served: `signed` anew, or the one signed before (`cached`).
pub fn status_list_served(how: &'static str) {
    metrics::counter!("veto_status_list_served_total", "how" => how).increment(1);
}

pub fn purged(table: &'static str, n: u64) {
    metrics::counter!("veto_purge_deleted_total", "table" => table).increment(n);
}

pub fn purge_run() {
    metrics::counter!("veto_purge_runs_total").increment(1);
}

/// Position of the last change applied from the change feed.
pub fn feed_position(position: i64) {
    metrics::gauge!("veto_index_position").set(position as f64);
}

/// Age of the in-memory revocation state (see `feed::Feed::lag`).
pub fn feed_lag(lag: std::time::Duration) {
    metrics::gauge!("veto_index_lag_seconds").set(lag.as_secs_f64());
}

/// Time from a change's commit to its application on this node.
/// A change not applied because its entity already reflected a newer one: a feed read that
/// raced this node's own write (mirror.rs). Normal in small numbers; each one is a state that
/// would otherwise have moved backwards for a moment.
pub fn change_skipped(kind: &str) {
    metrics::counter!("veto_changes_skipped_total", "kind" => kind.to_owned()).increment(1);
}

pub fn feed_delay(seconds: f64) {
    metrics::histogram!("veto_feed_propagation_delay_seconds").record(seconds.max(0.0));
}

/// A failed Redis operation (`publish`, `mirror`, `subscribe`): Redis is optional and never
/// decides a check, so failures are counted rather than failing requests.
pub fn redis_error(op: &'static str) {
    metrics::counter!("veto_redis_errors_total", "op" => op).increment(1);
}

/// A notification that woke the change-feed follower (`postgres`, `redis`).
pub fn feed_wakeup(source: &'static str) {
    metrics::counter!("veto_feed_wakeups_total", "source" => source).increment(1);
}

/// A request answered 429 by the rate limiter (`auth_failure`, `logout`).
pub fn rate_limited(kind: &'static str) {
    metrics::counter!("veto_rate_limited_total", "kind" => kind).increment(1);
}

/// Where a session validation found the session row: `hit` (memory), `miss` (not cached: read
/// from the store, then kept), `stale` (the feed is past its staleness bound: read from the
/// store whatever the cache holds).
pub fn session_lookup(outcome: &'static str) {
    metrics::counter!("veto_session_lookups_total", "source" => outcome).increment(1);
}

/// The node went stale for longer than the change log's retention and will not answer checks
/// until restarted (`feed`). 1 from then on.
pub fn feed_outlived() {
    metrics::gauge!("veto_feed_outlived").set(1.0);
}

/// Revocation streams open on this node (`delta` +1 when one opens, -1 when it ends).
pub fn stream_subscribers(delta: f64) {
    metrics::gauge!("veto_stream_subscribers").increment(delta);
}

/// A revocation stream that ended other than by shutdown: `gone` (the client left), `lagged`
/// (dropped for falling behind; it resumes), `store`, `no_tenant`, `key_deleted`.
pub fn stream_ended(why: &'static str) {
    metrics::counter!("veto_stream_ended_total", "why" => why).increment(1);
}
