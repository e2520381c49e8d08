//! Several `veto` nodes on one store: every write reaches every node through the change feed,
//! a node cut off from the database fails closed and recovers on its own, a crash loses no
//! acknowledged revocation. Runs on the backend `VETO_E2E_BACKEND` selects (two processes on
//! one SQLite file, or on one PostgreSQL database); the database-outage tests need PostgreSQL
//! and use a TCP proxy between the node and the server that the test can cut.
mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Longest a change may take to reach another node in these tests: far above the expected
/// delay (a notification, or the 500 ms poll), so that a slow CI machine does not fail them; the
/// measured delay is a benchmark (scripts/bench/propagation.py), never asserted here.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, PROPAGATION_LIMIT, check).await
}

async fn reason_becomes(node: &Server, tenant: &str, token: &str, want: &str) {
    eventually(&format!("{} rejects with {want}", node.base), || async {
        node.reason(tenant, token).await.as_deref() == Some(want)
    })
    .await;
}

#[tokio::test]
async fn a_revocation_on_one_node_is_enforced_by_the_other() {
    let a = Server::start().await;
    let b = a.start_node(&[]).await;
    let tok = a.token("default", "alice").await;
    assert_eq!(b.reason("default", &tok).await, None, "B accepts A's token");
    a.revoke("default", json!({"token": tok, "reason": "logout"}))
        .await
        .expect(StatusCode::CREATED);
    // Read-your-writes on A; B learns it through the feed.
    assert_eq!(a.reason("default", &tok).await.as_deref(), Some("revoked"));
    reason_becomes(&b, "default", &tok, "revoked").await;
    assert_eq!(
        b.introspect("default", &tok).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn every_kind_of_state_change_reaches_the_other_node() {
    let a = Server::start().await;
    let b = a.start_node(&[]).await;

    // A tenant created on A exists on B, with its keys: B verifies A's tokens of it.
    a.create_tenant("acme").await;
    let t1 = a.token("acme", "bob").await;
    eventually("B knows tenant acme and its key", || async {
        b.get("/v1/tenants/acme").await.status == StatusCode::OK
            && b.reason("acme", &t1).await.is_none()
    })
    .await;

    // Subject revoke-all.
    a.post(
        "/v1/tenants/acme/subjects/bob/revoke-all",
        json!({"reason": "password change"}),
    )
    .await
    .expect(StatusCode::OK);
    reason_becomes(&b, "acme", &t1, "subject_revoked").await;

    // Temporary suspension, then its lift.
    let t2 = a.token("acme", "carol").await;
    let (_, jti) = jti_of(&t2);
    let until = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    a.revoke("acme", json!({"jti": jti, "until": until}))
        .await
        .expect(StatusCode::CREATED);
    reason_becomes(&b, "acme", &t2, "suspended").await;
    let lift = a
        .delete(&format!("/v1/tenants/acme/revocations/{jti}"))
        .await;
    assert!(lift.status.is_success(), "lift: {}", lift.text);
    eventually("B sees the lift", || async {
        b.reason("acme", &t2).await.is_none()
    })
    .await;

    // An API key created on A authenticates on B; deleted on A, it stops on B.
    let (id, secret) = a.create_api_key("acme", &["tokens:verify"]).await;
    let verify_on_b_with_key = || async {
        b.call(
            "POST",
            "/v1/tenants/acme/tokens/verify",
            Some(&secret),
            Some(json!({"token": t2})),
        )
        .await
        .status
    };
    eventually("B accepts A's new API key", || async {
        verify_on_b_with_key().await == StatusCode::OK
    })
    .await;
    a.delete(&format!("/v1/tenants/acme/api-keys/{id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    eventually("B refuses the deleted API key", || async {
        verify_on_b_with_key().await == StatusCode::UNAUTHORIZED
    })
    .await;

    // Key revocation: every token of the key fails on B.
    let kid = decode(&t2).0["kid"].as_str().unwrap().to_owned();
    a.post(
        &format!("/v1/tenants/acme/keys/{kid}/revoke"),
        json!({"reason": "leaked"}),
    )
    .await
    .expect(StatusCode::OK);
    reason_becomes(&b, "acme", &t2, "key_revoked").await;

    // Tenant suspension and tenant-wide revoke-all.
    let t3 = a.token("default", "dave").await;
    a.post("/v1/tenants/default/suspend", json!({"reason": "unpaid"}))
        .await
        .expect(StatusCode::OK);
    reason_becomes(&b, "default", &t3, "tenant_suspended").await;
    a.post("/v1/tenants/default/resume", json!({}))
        .await
        .expect(StatusCode::OK);
    eventually("B sees the resume", || async {
        b.reason("default", &t3).await.is_none()
    })
    .await;
    a.post(
        "/v1/tenants/default/revoke-all",
        json!({"reason": "breach"}),
    )
    .await
    .expect(StatusCode::OK);
    reason_becomes(&b, "default", &t3, "tenant_revoked").await;
}

fn jti_of(token: &str) -> (Value, String) {
    let (_, claims) = decode(token);
    let jti = claims["jti"].as_str().expect("jti").to_owned();
    (claims, jti)
}

#[tokio::test]
async fn concurrent_writers_on_three_nodes_reach_every_node() {
    // Positions that commit out of order must not be skipped: many concurrent revocations on
    // every node, then every node must reject every token.
    let a = Server::start().await;
    let b = a.start_node(&[]).await;
    let c = a.start_node(&[]).await;
    let reqs: Vec<Value> = (0..600)
        .map(|i| json!({"sub": format!("u{i}"), "ttl_seconds": 3600}))
        .collect();
    let mut tokens = Vec::new();
    for chunk in reqs.chunks(300) {
        let r = a
            .post(
                "/v1/tenants/default/tokens/batch",
                json!({"requests": chunk}),
            )
            .await
            .expect(StatusCode::OK);
        for item in r["results"].as_array().unwrap() {
            tokens.push(item["token"].as_str().expect("issued").to_owned());
        }
    }
    let nodes = [&a, &b, &c];
    // 24 concurrent writers, 8 per node, each revoking its share one request at a time.
    let mut writers = Vec::new();
    for w in 0..24 {
        let node = nodes[w % 3];
        let base = node.base.clone();
        let mine: Vec<String> = tokens.iter().skip(w).step_by(24).cloned().collect();
        writers.push(tokio::spawn(async move {
            let http = client();
            for t in mine {
                let r = http
                    .post(format!("{base}/v1/tenants/default/revocations"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"token": t}))
                    .send()
                    .await
                    .expect("revoke");
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    for node in nodes {
        for t in &tokens {
            reason_becomes(node, "default", t, "revoked").await;
        }
    }
}

#[tokio::test]
async fn acknowledged_revocations_survive_kill_9_during_a_burst() {
    let mut a = Server::start().await;
    let reqs: Vec<Value> = (0..400).map(|i| json!({"sub": format!("u{i}")})).collect();
    let r = a
        .post(
            "/v1/tenants/default/tokens/batch",
            json!({"requests": reqs}),
        )
        .await
        .expect(StatusCode::OK);
    let tokens: Vec<String> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["token"].as_str().unwrap().to_owned())
        .collect();
    // 16 concurrent writers; each records the tokens whose revocation was acknowledged.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..16 {
        let base = a.base.clone();
        let mine: Vec<String> = tokens.iter().skip(w).step_by(16).cloned().collect();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let http = client();
            for t in mine {
                let sent = http
                    .post(format!("{base}/v1/tenants/default/revocations"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"token": t}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == StatusCode::CREATED => acked.lock().unwrap().push(t),
                    // The server died under us: stop.
                    _ => return,
                }
            }
        }));
    }
    // Let the burst run, then kill -9 in the middle of it.
    eventually("some revocations acknowledged", || async {
        acked.lock().unwrap().len() >= 50
    })
    .await;
    a.crash_and_restart();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 50);
    for t in &acked {
        assert_eq!(
            a.reason("default", t).await.as_deref(),
            Some("revoked"),
            "an acknowledged revocation was lost in the crash"
        );
    }
}

/// `url` with its host:port replaced by the proxy's.
fn via_proxy(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (auth_host, path) = rest.split_once('/').unwrap();
    let (auth, host) = auth_host
        .rsplit_once('@')
        .map_or(("", auth_host), |(a, h)| (a, h));
    let at = if auth.is_empty() { "" } else { "@" };
    (
        format!("{scheme}://{auth}{at}127.0.0.1:{port}/{path}"),
        host.to_owned(),
    )
}

/// The database-outage tests need PostgreSQL whatever `VETO_E2E_BACKEND` says.
async fn postgres_url() -> String {
    fresh_database().await
}

/// Node A on a fresh PostgreSQL database, and node B on the same database through a proxy the
/// test can cut; B polls the feed every 100 ms, with `VETO_MAX_STALENESS` = `staleness` and
/// the extra `env`.
async fn pair_with_cuttable_b(staleness: &str, env: &[(&str, &str)]) -> (Server, Server, Proxy) {
    let db = postgres_url().await;
    let a = Server::start_with(&[("VETO_DATABASE_URL", &db)]).await;
    let (_, target) = via_proxy(&db, 0);
    let proxy = Proxy::start(target).await;
    let (b_url, _) = via_proxy(&db, proxy.port);
    let mut b_env = vec![
        ("VETO_DATABASE_URL", b_url.as_str()),
        ("VETO_MAX_STALENESS", staleness),
        ("VETO_FEED_POLL_INTERVAL", "100ms"),
    ];
    b_env.extend_from_slice(env);
    let b = a.start_node(&b_env).await;
    (a, b, proxy)
}

// Multi-threaded: starting a node blocks its thread until the node listens, and the proxy's
// tasks must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_fails_closed_then_recovers_by_itself() {
    let (a, b, proxy) = pair_with_cuttable_b("1s", &[]).await;
    let tok = a.token("default", "erin").await;
    let other = a.token("default", "frank").await;
    let (session, cookie) = open_session(&a, "erin").await;
    eventually("B ready and accepting", || async {
        b.get("/readyz").await.status == StatusCode::OK
            && b.reason("default", &tok).await.is_none()
            && validate_session(&b, &cookie).await.status == StatusCode::OK
    })
    .await;

    proxy.cut();
    // While cut off, A revokes; B cannot know. Past the staleness bound B rejects everything
    // with index_stale (fail closed), and says it is not ready.
    a.revoke("default", json!({"token": tok}))
        .await
        .expect(StatusCode::CREATED);
    a.post(
        &format!("/v1/tenants/default/sessions/{session}/revoke"),
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("B fails closed", || async {
        b.reason("default", &other).await.as_deref() == Some("index_stale")
    })
    .await;
    assert_eq!(
        b.reason("default", &tok).await.as_deref(),
        Some("index_stale")
    );
    assert_eq!(
        b.introspect("default", &other).await,
        json!({"active": false})
    );
    assert_eq!(
        b.get("/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // B holds the session in memory, but memory that stale is not trusted: it asks the
    // database, which it cannot reach.
    assert_problem(&validate_session(&b, &cookie).await, 503);
    // Writes on B get a 503 problem and write nothing.
    let w = b
        .post_expecting_outage(
            "/v1/tenants/default/revocations",
            json!({"jti": "while-cut"}),
        )
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text);
    assert_problem(&w, 503);
    assert_problem(
        &a.get("/v1/tenants/default/revocations/while-cut").await,
        404,
    );
    // Nor does a stale node issue: it cannot know whether the tenant was suspended meanwhile.
    let issued = b
        .post_expecting_outage("/v1/tenants/default/tokens", json!({"sub": "while-cut"}))
        .await;
    assert_problem(&issued, 503);

    // The database comes back: B catches up on its own, then reports ready again.
    proxy.restore();
    eventually("B recovers", || async {
        b.get("/readyz").await.status == StatusCode::OK
    })
    .await;
    assert_eq!(b.reason("default", &tok).await.as_deref(), Some("revoked"));
    assert_eq!(b.reason("default", &other).await, None);
    assert_eq!(
        validate_session(&b, &cookie).await.json["reason"],
        "revoked"
    );
}

// Multi-threaded: starting a node blocks its thread until the node listens, and the proxy's
// tasks must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_is_an_explicit_setting() {
    let (a, b, proxy) = pair_with_cuttable_b("1s", &[("VETO_FAIL_OPEN", "true")]).await;
    let tok = a.token("default", "gina").await;
    eventually("B accepts", || async {
        b.reason("default", &tok).await.is_none()
    })
    .await;
    proxy.cut();
    eventually("B not ready", || async {
        b.get("/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // Stale, and still answering from memory: the documented risk of VETO_FAIL_OPEN.
    assert_eq!(b.reason("default", &tok).await, None);
    assert!(b.stderr().contains("VETO_FAIL_OPEN"), "no warning logged");
}

/// Opens a session of `actor` on `node`; `(id, cookie)`.
async fn open_session(node: &Server, actor: &str) -> (String, String) {
    let s = node
        .post(
            "/v1/tenants/default/sessions",
            json!({"actor_id": actor, "actor_type": "user"}),
        )
        .await
        .expect(StatusCode::CREATED);
    (str_of(&s["session"]["id"]), str_of(&s["cookie"]))
}

/// Validates `cookie` on `node` without touching; the status and, on 401, the reason.
async fn validate_session(node: &Server, cookie: &str) -> Resp {
    node.post_expecting_outage(
        "/v1/tenants/default/sessions/validate",
        json!({"cookie": cookie, "touch": false}),
    )
    .await
}

/// How many session validations `node` answered with the row from `source` (`hit`: memory,
/// `miss` or `stale`: the store).
async fn session_lookups(node: &Server, source: &str) -> f64 {
    sum_samples(&prometheus_samples(&node.metrics().await), |n, l| {
        n == "veto_session_lookups_total" && l.iter().any(|(k, v)| k == "source" && v == source)
    })
}

#[tokio::test]
async fn a_session_revoked_on_one_node_is_refused_by_the_other_that_holds_it_in_memory() {
    let a = Server::start().await;
    let b = a.start_node(&[]).await;
    let (id, cookie) = open_session(&a, "hana").await;
    // B learns the tenant's new session key through the feed, then reads the row once.
    eventually("B validates A's session", || async {
        validate_session(&b, &cookie).await.status == StatusCode::OK
    })
    .await;
    let hits = session_lookups(&b, "hit").await;
    let misses = session_lookups(&b, "miss").await;
    for _ in 0..5 {
        assert_eq!(validate_session(&b, &cookie).await.status, StatusCode::OK);
    }
    assert_eq!(
        session_lookups(&b, "hit").await - hits,
        5.0,
        "answered from memory"
    );
    assert_eq!(session_lookups(&b, "miss").await, misses, "no store read");

    a.post(
        &format!("/v1/tenants/default/sessions/{id}/revoke"),
        json!({"reason": "stolen laptop"}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("B refuses the revoked session", || async {
        let r = validate_session(&b, &cookie).await;
        r.status == StatusCode::UNAUTHORIZED && r.json["reason"] == "revoked"
    })
    .await;

    // Logout everywhere on B reaches A's memory the same way.
    let (_, cookie2) = open_session(&a, "ivan").await;
    assert_eq!(validate_session(&a, &cookie2).await.status, StatusCode::OK);
    b.post(
        "/v1/tenants/default/actors/user/ivan/sessions/revoke-all",
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    eventually("A refuses ivan's session", || async {
        validate_session(&a, &cookie2).await.json["reason"] == "revoked"
    })
    .await;
}

// Multi-threaded: starting a node blocks its thread until the node listens, and the proxy's
// tasks must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_validates_the_sessions_it_holds_until_it_goes_stale() {
    // A staleness bound long enough for the assertions below to run inside it.
    let (a, b, proxy) = pair_with_cuttable_b("60s", &[]).await;
    let (_, held) = open_session(&a, "jo").await;
    let (_, unseen) = open_session(&a, "kim").await;
    eventually("B validates jo's session", || async {
        validate_session(&b, &held).await.status == StatusCode::OK
    })
    .await;

    proxy.cut();
    // Memory answers for the session B holds: no database needed.
    let r = validate_session(&b, &held).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["session"]["actor_id"], "jo");
    // A session B never read needs the database: a 503 problem, never a guess.
    let r = validate_session(&b, &unseen).await;
    assert_problem(&r, 503);

    proxy.restore();
    eventually("B reads kim's session again", || async {
        validate_session(&b, &unseen).await.status == StatusCode::OK
    })
    .await;
}

// Multi-threaded: starting a node blocks its thread until the node listens, and the proxy's
// tasks must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_for_longer_than_the_change_log_keeps_changes_stays_closed_until_restarted()
{
    // B's wall clock comes from a file libfaketime re-reads every second: the test moves it a
    // day ahead while B is cut off, as if the outage had lasted that long. (The change log keeps
    // changes for a day; what B missed may be gone, so catching up must not make it fresh.)
    let clock = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(clock.path(), "+0").unwrap();
    let clock_path = clock.path().display().to_string();
    let (_a, mut b, proxy) = pair_with_cuttable_b(
        "1s",
        &[
            ("LD_PRELOAD", faketime_lib()),
            ("FAKETIME_TIMESTAMP_FILE", &clock_path),
            ("FAKETIME_CACHE_DURATION", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            // B's own purge would see a day-old log through its clock: keep it out of this.
            ("VETO_PURGE_INTERVAL", "30d"),
        ],
    )
    .await;
    eventually("B ready", || async {
        b.get("/readyz").await.status == StatusCode::OK
    })
    .await;

    proxy.cut();
    std::fs::write(clock.path(), "+25h").unwrap();
    eventually("B stale", || async {
        b.get("/readyz").await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    proxy.restore();
    // B reads the feed again, but stays failed closed and says why.
    eventually("B says it must be restarted", || async {
        let r = b.get("/readyz").await;
        r.status == StatusCode::SERVICE_UNAVAILABLE
            && r.json["detail"].to_string().contains("restart it")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = b.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.text.contains("restart it"), "{}", r.text);
    assert!(b.stderr().contains("restart it to reload the state"));
    let gauge = sum_samples(&prometheus_samples(&b.metrics().await), |n, _| {
        n == "veto_feed_outlived"
    });
    assert_eq!(gauge, 1.0, "veto_feed_outlived");
    assert_eq!(
        b.get("/healthz").await.status,
        StatusCode::OK,
        "the process runs"
    );
    let issued = b
        .post_expecting_outage("/v1/tenants/default/tokens", json!({"sub": "late"}))
        .await;
    assert_problem(&issued, 503);

    // A restart loads the whole state and the node is ready again (its clock still a day on).
    b.restart(true);
    eventually("B ready after the restart", || async {
        b.get("/readyz").await.status == StatusCode::OK
    })
    .await;
}

// Multi-threaded: starting a node blocks its thread until the node listens, and the proxy's
// tasks must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_reach_a_min_position_says_so_instead_of_answering_from_before_it() {
    // A staleness bound far beyond the test: B would go on answering from memory, so only
    // `min_position` stands between its old state and the client.
    let (a, b, proxy) = pair_with_cuttable_b("1h", &[]).await;
    let tok = a.token("default", "hal").await;
    eventually("B accepts", || async {
        b.reason("default", &tok).await.is_none()
    })
    .await;
    proxy.cut();
    let r = a.revoke("default", json!({"token": tok})).await;
    let position = r.header("veto-position").expect("Veto-Position").to_owned();
    r.expect(StatusCode::CREATED);
    let verify = |min: Option<&str>| {
        b.post_expecting_outage(
            "/v1/tenants/default/tokens/verify",
            json!({"token": tok, "min_position": min}),
        )
    };
    // Without a position B answers from what it has (its bound has not passed)...
    let stale = verify(None).await;
    assert_eq!(stale.json["active"], true, "{}", stale.text);
    // ...with A's, it refuses to answer from before it.
    let r = verify(Some(&position)).await;
    assert_problem(&r, 503);
    assert_eq!(r.json["reason"], "not_caught_up", "{}", r.text);
    proxy.restore();
    eventually("B reaches A's position", || async {
        verify(Some(&position)).await.status == StatusCode::OK
    })
    .await;
    assert_eq!(verify(Some(&position)).await.json["reason"], "revoked");
}
