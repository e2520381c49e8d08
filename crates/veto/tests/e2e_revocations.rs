//! The revocation ledger over HTTP, including durability across kill -9.
mod common;
use common::*;
use serde_json::json;

const R: &str = "/v1/tenants/default/revocations";

#[tokio::test]
async fn revoke_by_jti_is_idempotent_and_keeps_the_original() {
    let srv = Server::start().await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    let jti = tok["jti"].as_str().unwrap();
    let (s, first) = srv
        .post(
            R,
            json!({"jti": jti, "sub": "u", "reason": "logout", "metadata": {"ip": "10.0.0.1"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["status"].clone(), first["until"].clone()),
        (json!("revoked"), json!(null))
    );
    assert_eq!(first["metadata"]["ip"], "10.0.0.1");
    let (s, again) = srv
        .post(R, json!({"jti": jti, "reason": "something else"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        again, first,
        "a repeat returns the original record unchanged"
    );
    let v = srv.verify("default", tok["token"].as_str().unwrap()).await;
    assert_eq!(v["reason"], "revoked");
    assert_eq!(v["revocation"]["reason"], "logout");
    let (s, got) = srv.get(&format!("{R}/{jti}")).await;
    assert_eq!((s, got), (StatusCode::OK, first));
    let (s, b) = srv.get(&format!("{R}/unknown")).await;
    assert_problem(s, &b, 404);
}

#[tokio::test]
async fn revoke_by_token_takes_jti_sub_and_expiry_from_it() {
    let srv = Server::start().await;
    let tok = srv
        .issue("default", json!({"sub": "carol", "ttl_seconds": 300}))
        .await;
    let (s, rec) = srv.post(R, json!({"token": tok["token"]})).await;
    assert_eq!(s, StatusCode::CREATED, "{rec}");
    assert_eq!(
        (rec["jti"].clone(), rec["sub"].clone()),
        (tok["jti"].clone(), json!("carol"))
    );
    assert_eq!(rec["expires_at"], tok["expires_at"]);
    // A token that is not ours is a 400 that says why, and nothing is written.
    let (s, b) = srv.post(R, json!({"token": "garbage"})).await;
    assert_problem(s, &b, 400);
    let (s, b) = srv.post(R, json!({})).await;
    assert_problem(s, &b, 400);
    let (s, b) = srv
        .post(R, json!({"jti": "x", "token": tok["token"]}))
        .await;
    assert_problem(s, &b, 400);
    let (s, b) = srv.post(R, json!({"jti": "x", "metadata": [1]})).await;
    assert_problem(s, &b, 400);
    let (s, b) = srv
        .post(R, json!({"jti": "x", "until": "2001-01-01T00:00:00Z"}))
        .await;
    assert_problem(s, &b, 400);
    let (_, stats) = srv.get(&format!("{R}/stats")).await;
    assert_eq!(stats["revoked"], 1);
}

#[tokio::test]
async fn batch_is_all_or_nothing() {
    let srv = Server::start().await;
    let items: Vec<_> = (0..50)
        .map(|i| json!({"jti": format!("j{i}"), "reason": "bulk"}))
        .collect();
    let (s, b) = srv
        .post(&format!("{R}/batch"), json!({"revocations": items}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"created": 50, "existing": 0}));
    let (_, b) = srv
        .post(
            &format!("{R}/batch"),
            json!({"revocations": [{"jti": "j0"}, {"jti": "new-1"}]}),
        )
        .await;
    assert_eq!(b, json!({"created": 1, "existing": 1}));
    // One invalid item: 400 naming its index, nothing written.
    let (s, b) = srv
        .post(
            &format!("{R}/batch"),
            json!({"revocations": [{"jti": "ok-1"}, {"jti": "ok-2"}, {"sub": "no jti"}]}),
        )
        .await;
    assert_problem(s, &b, 400);
    assert_eq!(b["index"], 2);
    assert_eq!(srv.get(&format!("{R}/ok-1")).await.0, StatusCode::NOT_FOUND);
    let too_many: Vec<_> = (0..10_001).map(|i| json!({"jti": i.to_string()})).collect();
    let (s, _) = srv
        .post(&format!("{R}/batch"), json!({"revocations": too_many}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_paginates_and_filters_and_stats_count() {
    let srv = Server::start().await;
    let (_, other_key) = srv.create_api_key("default", &["tokens:revoke"]).await;
    for i in 0..5 {
        srv.post(
            R,
            json!({"jti": format!("a{i}"), "sub": "alice", "reason": "logout"}),
        )
        .await;
    }
    srv.post(
        R,
        json!({"jti": "b0", "sub": "bob", "reason": "compromised"}),
    )
    .await;
    srv.send(
        "POST",
        R,
        Some(&other_key),
        Some(json!({"jti": "c0", "until": "2099-01-01T00:00:00Z"})),
    )
    .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let (s, page) = srv.get(&format!("{R}?limit=2{q}")).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|i| i["jti"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a0", "a1", "a2", "a3", "a4", "b0", "c0"]);
    let (_, bob) = srv.get(&format!("{R}?sub=bob")).await;
    assert_eq!(bob["items"].as_array().unwrap().len(), 1);
    let (_, logout) = srv.get(&format!("{R}?reason=logout")).await;
    assert_eq!(logout["items"].as_array().unwrap().len(), 5);
    let other_id = srv.get(&format!("{R}/c0")).await.1["revoked_by"].clone();
    let (_, by) = srv
        .get(&format!("{R}?revoked_by={}", other_id.as_str().unwrap()))
        .await;
    assert_eq!(by["items"].as_array().unwrap().len(), 1);
    let (s, b) = srv.get(&format!("{R}?limit=0")).await;
    assert_problem(s, &b, 400);
    let (s, b) = srv.get(&format!("{R}?cursor=not-a-cursor")).await;
    assert_problem(s, &b, 400);
    let (_, stats) = srv.get(&format!("{R}/stats")).await;
    assert_eq!(
        (stats["revoked"].clone(), stats["suspended"].clone()),
        (json!(6), json!(1))
    );
    assert_eq!(stats["by_reason"]["logout"], 5);
    assert_eq!(stats["last_24h"], 7);
}

#[tokio::test]
async fn suspensions_lift_early_or_by_themselves() {
    let srv = Server::start().await;
    let t1 = srv.issue("default", json!({"sub": "u"})).await;
    let t2 = srv.issue("default", json!({"sub": "u"})).await;
    let until = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (s, rec) = srv
        .post(
            R,
            json!({"jti": t1["jti"], "until": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        (s, rec["status"].clone()),
        (StatusCode::CREATED, json!("suspended"))
    );
    srv.post(R, json!({"jti": t2["jti"], "until": until})).await;
    assert_eq!(
        srv.reason("default", t1["token"].as_str().unwrap())
            .await
            .as_deref(),
        Some("suspended")
    );
    assert_eq!(
        srv.reason("default", t2["token"].as_str().unwrap())
            .await
            .as_deref(),
        Some("suspended")
    );
    let jti1 = t1["jti"].as_str().unwrap();
    let (s, _) = srv
        .send("DELETE", &format!("{R}/{jti1}"), Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        srv.reason("default", t1["token"].as_str().unwrap()).await,
        None
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(
        srv.reason("default", t2["token"].as_str().unwrap()).await,
        None
    );
    // A permanent revocation cannot be lifted.
    srv.post(R, json!({"jti": "perm"})).await;
    let (s, b) = srv
        .send("DELETE", &format!("{R}/perm"), Some(ADMIN), None)
        .await;
    assert_problem(s, &b, 409);
    let (s, _) = srv
        .send("DELETE", &format!("{R}/never"), Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revocations_survive_kill_9() {
    let mut srv = Server::start().await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    let other = srv.issue("default", json!({"sub": "bulk"})).await;
    let subj = srv.token("default", "mallory").await;
    srv.post(R, json!({"token": tok["token"]})).await;
    srv.post(
        &format!("{R}/batch"),
        json!({"revocations": [{"jti": other["jti"]}]}),
    )
    .await;
    srv.post("/v1/tenants/default/subjects/mallory/revoke-all", json!({}))
        .await;
    srv.crash_and_restart();
    assert_eq!(
        srv.reason("default", tok["token"].as_str().unwrap())
            .await
            .as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.reason("default", other["token"].as_str().unwrap())
            .await
            .as_deref(),
        Some("revoked")
    );
    assert_eq!(
        srv.reason("default", &subj).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(
        srv.introspect("default", tok["token"].as_str().unwrap())
            .await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let srv = Server::start().await;
    let big = "x".repeat(1024 * 1024 + 10);
    let (s, b) = srv.post(R, json!({"jti": "j", "reason": big})).await;
    assert_problem(s, &b, 413);
    assert_eq!(srv.get(&format!("{R}/j")).await.0, StatusCode::NOT_FOUND);
}
