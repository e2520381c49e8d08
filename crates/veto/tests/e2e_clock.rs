//! A node's wall clock stepped forward or back (an NTP correction, a VM resumed) against the real
//! binary: how fresh the node's state is does not depend on it. The age of the state is measured
//! on the monotonic clock (docs/architecture.md, "Freshness"); the wall clock is for token times.
//!
//! The server runs under libfaketime (`LD_PRELOAD`, the Debian package `libfaketime`, which
//! `scripts/test.sh` installs), its wall clock read from a file the test rewrites; with
//! `FAKETIME_NO_CACHE` every clock read sees the file as it is. `FAKETIME_DONT_FAKE_MONOTONIC`
//! leaves the monotonic clocks alone, as a real step of the system clock does.
//!
//! The feed is read at start-up and then only hourly (`VETO_FEED_POLL_INTERVAL`, and no writes
//! between the steps and the checks), so that nothing but the clock moves the node's age between
//! a step and the checks after it.
mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: &str = "default";
const HOUR: i64 = 3_600;

/// A wall clock libfaketime reads from a file: `+0`, `+1h`, `-1h` (relative to the real one).
struct Clock(tempfile::NamedTempFile);

impl Clock {
    fn new() -> Clock {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), "+0").expect("write clock");
        Clock(file)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// From the next clock read of the server on, its wall clock is `offset` from the real one.
    fn set(&self, offset: &str) {
        std::fs::write(self.path(), offset).expect("write clock");
    }
}

/// A server on the backend the run selects, under libfaketime with `clock`, reading the feed
/// at start-up and then hourly.
async fn start(clock: &Clock, max_staleness: &str) -> Server {
    let path = clock.path().display().to_string();
    Server::start_with(&[
        ("LD_PRELOAD", faketime_lib()),
        ("FAKETIME_TIMESTAMP_FILE", &path),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ("VETO_FEED_POLL_INTERVAL", "1h"),
        ("VETO_MAX_STALENESS", max_staleness),
        // Nothing but the clock: no purge deciding what a day-old log holds.
        ("VETO_PURGE_INTERVAL", "30d"),
    ])
    .await
}

fn real_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The server is current: ready, its lag far from the step's hour, a long-lived token and one
/// issued now both active, the new one stamped with the server's (stepped) wall clock, and a
/// stream subscriber told the same age in its heartbeat.
async fn assert_current(srv: &Server, long_lived: &str, offset: i64, bound_ms: u64) {
    let r = srv.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let lag = r.json["index_lag_seconds"]
        .as_f64()
        .expect("index_lag_seconds");
    assert!(lag * 1000.0 <= bound_ms as f64, "{}", r.text);
    assert_eq!(
        srv.reason(T, long_lived).await,
        None,
        "the long-lived token"
    );

    let issued = srv
        .issue(T, json!({"sub": "now", "ttl_seconds": 600}))
        .await;
    let token = str_of(&issued["token"]);
    let (_, claims) = decode(&token);
    let iat = claims["iat"].as_i64().expect("iat");
    // The step took: the new token carries the server's wall clock (a minute of slack either
    // way for the time the test takes).
    let expected = real_now() + offset;
    assert!(
        (expected - 60..=expected + 60).contains(&iat),
        "iat {iat}, expected about {expected}"
    );
    assert_eq!(srv.reason(T, &token).await, None, "a token issued now");

    // Opened after the checks above: a subscriber wakes the feed on writes, and no feed read
    // may hide a wrong age there.
    let key = srv.create_api_key(T, &["tokens:verify"]).await.1;
    let mut events = EventStream::open(srv, T, &key, None).await;
    events.snapshot().await;
    let beat = loop {
        let e = events
            .next_within(Duration::from_secs(30))
            .await
            .expect("the stream ended");
        if e.event == "heartbeat" {
            break e;
        }
    };
    let age = beat.data["age_ms"].as_u64().expect("age_ms");
    assert!(age <= bound_ms, "{beat:?}");
}

#[tokio::test]
async fn a_wall_clock_stepped_forward_or_back_leaves_a_current_node_current() {
    let clock = Clock::new();
    // Ten minutes: far beyond the test, far below the steps.
    let bound_ms = 600_000;
    let srv = start(&clock, "10m").await;
    let r = srv.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let long_lived = str_of(
        &srv.issue(T, json!({"sub": "long", "ttl_seconds": 3 * HOUR}))
            .await["token"],
    );
    assert_eq!(srv.reason(T, &long_lived).await, None);

    // An hour forward: the state is no older for it, and the token, valid for three hours,
    // is still active at the new wall time.
    clock.set("+1h");
    assert_current(&srv, &long_lived, HOUR, bound_ms).await;

    // Two hours back (an hour behind the real time): no fresher and no staler either.
    clock.set("-1h");
    assert_current(&srv, &long_lived, -HOUR, bound_ms).await;
}

#[tokio::test]
async fn a_wall_clock_stepped_back_does_not_make_a_stale_node_current() {
    let clock = Clock::new();
    let mut srv = start(&clock, "10m").await;
    let token = srv.token(T, "kept").await;
    assert_eq!(srv.reason(T, &token).await, None);

    // Restarted with a bound shorter than the feed's hourly reads: a second after start-up
    // the node is stale, as one cut off from its store would be.
    srv.restart_with(&[("VETO_MAX_STALENESS", "1s")]);
    eventually_within("stale", Duration::from_secs(60), || async {
        srv.get("/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE
            && srv.reason(T, &token).await.as_deref() == Some("index_stale")
    })
    .await;

    // An hour back: the state is as old as it was, not "from the future", so the node still
    // fails closed.
    clock.set("-1h");
    let r = srv.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(
        r.json["detail"]
            .to_string()
            .contains("beyond the staleness bound"),
        "{}",
        r.text
    );
    assert_eq!(
        srv.reason(T, &token).await.as_deref(),
        Some("index_stale"),
        "a stale node answers from memory"
    );
}
