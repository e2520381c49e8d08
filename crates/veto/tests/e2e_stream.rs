//! Positions and the revocation stream (docs/stream.md) against the real binary: every write
//! answer names its position, verify and session validation wait for a `min_position`, and a
//! subscriber gets a snapshot, every change in log order, heartbeats, and resumes where it
//! left off. Two-node cases run on the backend `VETO_E2E_BACKEND` selects.
mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: &str = "default";

/// A key that may read the stream (and verify) in `tenant`, and nothing else.
async fn verify_key(s: &Server, tenant: &str) -> String {
    s.create_api_key(tenant, &["tokens:verify"]).await.1
}

fn strings(v: &Value) -> Vec<String> {
    let mut all: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(str_of).collect())
        .unwrap_or_default();
    all.sort();
    all
}

#[tokio::test]
async fn every_write_answer_names_a_position_and_verify_names_the_one_it_judged_on() {
    let s = Server::start().await;
    let tok = s.token(T, "ann").await;
    let claims = decode(&tok).1;
    let r = s
        .revoke(T, json!({"jti": claims["jti"], "reason": "logout"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let p1 = r.header("veto-position").expect("Veto-Position").to_owned();
    // A repeat changes nothing but still names a position at least as new.
    let r = s.revoke(T, json!({"jti": claims["jti"]})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("veto-position").is_some());
    let v = s
        .post(
            &format!("/v1/tenants/{T}/tokens/verify"),
            json!({"token": tok, "min_position": p1}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["reason"], "revoked");
    assert!(v["position"].is_string(), "{v}");
    // Reads and failed writes carry none.
    assert!(
        s.get(&format!("/v1/tenants/{T}"))
            .await
            .header("veto-position")
            .is_none()
    );
    let bad = s.revoke(T, json!({"jti": ""})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.header("veto-position").is_none());
    // Session writes name one too.
    let r = s
        .post(
            &format!("/v1/tenants/{T}/sessions"),
            json!({"actor_id": "ann", "actor_type": "user"}),
        )
        .await;
    assert!(r.header("veto-position").is_some(), "{}", r.text);
    let p = r.header("veto-position").map(str::to_owned);
    let created = r.expect(StatusCode::CREATED);
    let v = s
        .post(
            &format!("/v1/tenants/{T}/sessions/validate"),
            json!({"cookie": created["cookie"], "min_position": p}),
        )
        .await
        .expect(StatusCode::OK);
    assert!(v["position"].is_string(), "{v}");
}

#[tokio::test]
async fn a_min_position_veto_never_wrote_is_a_400_and_one_it_cannot_reach_a_503() {
    let s = Server::start().await;
    let tok = s.token(T, "ann").await;
    for bad in ["", "7", "-1:2", "x:y", "1:2:3", "0-1"] {
        let r = s
            .post(
                &format!("/v1/tenants/{T}/tokens/verify"),
                json!({"token": tok, "min_position": bad}),
            )
            .await;
        assert_problem_names(&r, 400, "min_position");
    }
    // Far beyond anything written: the node waits its bound, then says so.
    let r = s
        .post_expecting_outage(
            &format!("/v1/tenants/{T}/tokens/verify"),
            json!({"token": tok, "min_position": "999999999999:1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.json["reason"], "not_caught_up", "{}", r.text);
}

#[tokio::test]
async fn the_stream_is_for_verify_keys_of_the_tenant() {
    let s = Server::start().await;
    s.create_tenant("acme").await;
    let path = format!("/v1/tenants/{T}/revocations/stream");
    assert_problem(&s.call("GET", &path, None, None).await, 401);
    let revoker = s.create_api_key(T, &["tokens:revoke"]).await.1;
    assert_problem(&s.call("GET", &path, Some(&revoker), None).await, 403);
    let other = verify_key(&s, "acme").await;
    assert_problem(&s.call("GET", &path, Some(&other), None).await, 403);
    let r = s.get("/v1/tenants/nope/revocations/stream").await;
    assert_problem(&r, 404);
    let r = s
        .send(
            "stream",
            s_get(&s, &path).header("Last-Event-ID", "not-a-position"),
        )
        .await;
    assert_problem_names(&r, 400, "Last-Event-ID");
}

fn s_get(s: &Server, path: &str) -> reqwest::RequestBuilder {
    client().get(s.url(path)).bearer_auth(ADMIN)
}

#[tokio::test]
async fn a_subscriber_gets_the_whole_state_then_every_change_in_order() {
    let s = Server::start().await;
    let key = verify_key(&s, T).await;
    // State before subscribing: a revocation, a suspension, a subject cutoff, a revoked
    // session, a revoked key.
    s.revoke(T, json!({"jti": "before-1"}))
        .await
        .expect(StatusCode::CREATED);
    s.revoke(T, json!({"jti": "held", "until": in_seconds(3_600)}))
        .await
        .expect(StatusCode::CREATED);
    s.post(
        &format!("/v1/tenants/{T}/subjects/bob/revoke-all"),
        json!({}),
    )
    .await
    .expect(StatusCode::OK);
    let ses = s
        .post(
            &format!("/v1/tenants/{T}/sessions"),
            json!({"actor_id": "cy", "actor_type": "user"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let sid = str_of(&ses["session"]["id"]);
    s.post(
        &format!("/v1/tenants/{T}/sessions/{sid}/revoke"),
        json!({"reason": "x"}),
    )
    .await
    .expect(StatusCode::OK);
    let leaked = s.create_key(T, "ES256").await;
    s.post(
        &format!("/v1/tenants/{T}/keys/{leaked}/revoke"),
        json!({"reason": "leak"}),
    )
    .await
    .expect(StatusCode::OK);

    let mut events = EventStream::open(&s, T, &key, None).await;
    let (position, snap) = events.snapshot().await;
    assert_eq!(snap["tenant_suspended"], false);
    let jtis: Vec<String> = snap["revocations"]
        .as_array()
        .expect("revocations")
        .iter()
        .map(|r| str_of(&r["jti"]))
        .collect();
    assert!(jtis.contains(&"before-1".to_owned()) && jtis.contains(&"held".to_owned()));
    let held = snap["revocations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["jti"] == "held")
        .expect("held");
    assert!(held["until"].is_i64(), "a suspension names its end: {held}");
    assert_eq!(snap["subject_cutoffs"][0]["sub"], "bob");
    assert_eq!(strings(&snap["revoked_sessions"]), vec![sid]);
    assert_eq!(strings(&snap["revoked_keys"]), vec![leaked]);

    // Every later change, in log order, each with its position as id.
    s.revoke(T, json!({"jti": "after-1", "reason": "logout"}))
        .await
        .expect(StatusCode::CREATED);
    s.delete(&format!("/v1/tenants/{T}/revocations/held")).await;
    s.post(&format!("/v1/tenants/{T}/revoke-all"), json!({}))
        .await
        .expect(StatusCode::OK);
    let mut seen = Vec::new();
    let mut ids = vec![position];
    while seen.len() < 3 {
        let e = events.next_change().await;
        assert_eq!(e.event, "change", "{e:?}");
        assert_eq!(e.data["position"].as_str(), Some(e.id.as_str()));
        ids.push(e.id.clone());
        seen.push(e.data);
    }
    assert_eq!(seen[0]["kind"], "revocation");
    assert_eq!(
        (&seen[0]["jti"], &seen[0]["until"]),
        (&json!("after-1"), &Value::Null)
    );
    assert_eq!(
        (&seen[1]["kind"], &seen[1]["jti"]),
        (&json!("revocation.lift"), &json!("held"))
    );
    assert_eq!(seen[2]["kind"], "tenant.cutoff");
    assert!(seen[2]["not_before_iat"].is_i64());
    // Positions increase: resuming from any of them skips nothing and repeats nothing.
    let order: Vec<(i64, i64)> = ids.iter().map(|p| parse_position(p)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // And a heartbeat while the node is fresh, naming its position.
    loop {
        let e = events
            .next_within(Duration::from_secs(10))
            .await
            .expect("stream open");
        if e.event == "heartbeat" {
            assert!(e.data["age_ms"].is_u64(), "{e:?}");
            assert_eq!(e.data["position"].as_str(), Some(e.id.as_str()));
            break;
        }
    }
}

/// Only for ordering assertions in tests: clients treat positions as opaque.
fn parse_position(p: &str) -> (i64, i64) {
    let (x, n) = p.split_once(':').expect("x:n");
    (x.parse().expect("xid"), n.parse().expect("position"))
}

#[tokio::test]
async fn a_subscriber_that_comes_back_gets_only_what_it_missed() {
    let s = Server::start().await;
    let key = verify_key(&s, T).await;
    s.revoke(T, json!({"jti": "one"}))
        .await
        .expect(StatusCode::CREATED);
    let mut events = EventStream::open(&s, T, &key, None).await;
    let (position, _) = events.snapshot().await;
    drop(events);
    s.revoke(T, json!({"jti": "two"}))
        .await
        .expect(StatusCode::CREATED);
    s.revoke(T, json!({"jti": "three"}))
        .await
        .expect(StatusCode::CREATED);

    let mut events = EventStream::open(&s, T, &key, Some(&position)).await;
    let first = events.next_change().await;
    assert_eq!(
        (first.event.as_str(), &first.data["jti"]),
        ("change", &json!("two"))
    );
    let second = events.next_change().await;
    assert_eq!(second.data["jti"], "three");

    // `?from=` does the same; a position the log no longer reaches back to (or never held)
    // starts over with a snapshot.
    let r = client()
        .get(s.url(&format!(
            "/v1/tenants/{T}/revocations/stream?from={}",
            second.id
        )))
        .bearer_auth(&key)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status(), StatusCode::OK);
    drop(r);
    let mut events = EventStream::open(&s, T, &key, Some("0:0")).await;
    let (_, snap) = events.snapshot().await;
    let jtis: Vec<String> = snap["revocations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| str_of(&r["jti"]))
        .collect();
    for j in ["one", "two", "three"] {
        assert!(jtis.contains(&j.to_owned()), "{j} in {jtis:?}");
    }
}

#[tokio::test]
async fn the_stream_survives_a_restart_by_resuming_from_its_position() {
    let mut s = Server::start().await;
    let key = verify_key(&s, T).await;
    let mut events = EventStream::open(&s, T, &key, None).await;
    let (position, _) = events.snapshot().await;
    drop(events);
    s.restart(false);
    s.revoke(T, json!({"jti": "after-restart"}))
        .await
        .expect(StatusCode::CREATED);
    let mut events = EventStream::open(&s, T, &key, Some(&position)).await;
    let e = events.next_change().await;
    assert_eq!(
        (e.event.as_str(), &e.data["jti"]),
        ("change", &json!("after-restart"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_node_reaches_the_stream_of_another_and_its_min_position() {
    let a = Server::start().await;
    let b = a.start_node(&[]).await;
    let key = verify_key(&a, T).await;
    // B learns of the key through the feed.
    eventually_within("B knows the new key", Duration::from_secs(10), || async {
        b.call("GET", &format!("/v1/tenants/{T}"), Some(&key), None)
            .await
            .status
            == StatusCode::OK
    })
    .await;
    let mut events = EventStream::open(&b, T, &key, None).await;
    events.snapshot().await;
    for i in 0..20 {
        let tok = a.token(T, &format!("user-{i}")).await;
        let jti = decode(&tok).1["jti"].clone();
        let r = a.revoke(T, json!({"jti": jti})).await;
        let p = r.header("veto-position").expect("position").to_owned();
        r.expect(StatusCode::CREATED);
        // Read-your-writes on the other node: with A's position, B never answers from before.
        let v = b
            .post(
                &format!("/v1/tenants/{T}/tokens/verify"),
                json!({"token": tok, "min_position": p}),
            )
            .await
            .expect(StatusCode::OK);
        assert_eq!(v["reason"], "revoked", "round {i}: {v}");
        let e = events.next_change().await;
        assert_eq!(
            (e.event.as_str(), &e.data["jti"]),
            ("change", &jti),
            "round {i}"
        );
    }
}

#[tokio::test]
async fn deleting_the_api_key_ends_its_streams() {
    let s = Server::start().await;
    let (id, key) = s.create_api_key(T, &["tokens:verify"]).await;
    let mut events = EventStream::open(&s, T, &key, None).await;
    events.snapshot().await;
    let r = s.delete(&format!("/v1/tenants/{T}/api-keys/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // Heartbeats may still be in flight; then the stream ends (within a heartbeat).
    while let Some(e) = events.next_within(Duration::from_secs(10)).await {
        assert_eq!(e.event, "heartbeat", "{e:?}");
    }
    let again = s
        .call(
            "GET",
            &format!("/v1/tenants/{T}/revocations/stream"),
            Some(&key),
            None,
        )
        .await;
    assert_problem(&again, 401);
}
