//! Issuance (single and batch), and every verify reason a user can provoke through the API.
mod common;
use common::*;
use serde_json::json;

/// The registered claims veto sets, and the ones it sets for clients and refresh tokens: an
/// access token carrying `token_use: "refresh"` would confuse whoever reads it.
const RESERVED: [&str; 13] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "tid",
    "sid",
    "client_id",
    "token_use",
    "fam",
    "gen",
];

#[tokio::test]
async fn an_issued_token_carries_the_contract_claims() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (key_id, key) = srv.create_api_key("acme", &["tokens:issue"]).await;
    let body = json!({
        "sub": "user-1",
        "aud": ["a", "b"],
        "ttl_seconds": 600,
        "claims": {"role": "admin", "scope": "read write", "n": 7, "nested": {"x": [1, 2]}}
    });
    let r = srv
        .call("POST", "/v1/tenants/acme/tokens", Some(&key), Some(body))
        .await
        .expect(StatusCode::CREATED);
    let token = str_of(&r["token"]);
    let (h, c) = decode(&token);
    // RFC 9068 header.
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["kid"], r["kid"]);
    assert_eq!(r["alg"], "ES256");
    // Registered and veto claims.
    assert_eq!(c["iss"], srv.issuer("acme").as_str());
    assert_eq!(c["sub"], "user-1");
    assert_eq!(c["aud"], json!(["a", "b"]));
    assert_eq!(c["tid"], "acme");
    assert_eq!(
        c["client_id"],
        key_id.as_str(),
        "client_id defaults to the API key's id"
    );
    let jti = uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).expect("jti is a UUID");
    assert_eq!(jti.get_version_num(), 4, "jti is a UUID v4");
    assert_eq!(r["jti"], c["jti"]);
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 600);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((iat - now).abs() < 300, "iat {iat} vs now {now}");
    assert!(c.get("nbf").is_none() && c.get("sid").is_none(), "{c}");
    // Custom claims, as given.
    assert_eq!(c["role"], "admin");
    assert_eq!(c["scope"], "read write");
    assert_eq!(c["n"], 7);
    assert_eq!(c["nested"], json!({"x": [1, 2]}));
    // The response's times are the token's, as RFC 3339.
    assert_eq!(rfc3339(&r["issued_at"]).unix_timestamp(), iat);
    assert_eq!(rfc3339(&r["expires_at"]).unix_timestamp(), exp);
    // The token verifies and verify returns exactly its claims.
    let v = srv.verify("acme", &token).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["claims"], c);
}

#[tokio::test]
async fn nbf_sid_and_client_id_appear_only_when_given() {
    let srv = Server::start().await;
    let r = srv
        .issue(
            "default",
            json!({"sub": "u", "aud": "api", "nbf": "2026-01-01T00:00:00Z", "sid": "ses-abc", "client_id": "web-app"}),
        )
        .await;
    let (_, c) = decode(&str_of(&r["token"]));
    assert_eq!(c["nbf"], 1_767_225_600);
    assert_eq!(c["sid"], "ses-abc");
    assert_eq!(c["client_id"], "web-app");
    assert_eq!(c["aud"], "api", "a single audience stays a string");
}

#[tokio::test]
async fn every_reserved_claim_is_refused_as_a_custom_claim() {
    let srv = Server::start().await;
    for name in RESERVED {
        let r = srv
            .post(
                "/v1/tenants/default/tokens",
                json!({"sub": "u", "claims": {name: "x"}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}: {}", r.text);
        assert_problem_names(&r, 400, name);
    }
}

#[tokio::test]
async fn bad_issue_requests_are_400_and_name_the_problem() {
    let srv = Server::start_with(&[("VETO_MAX_TOKEN_TTL_SECONDS", "3600")]).await;
    for (body, needle) in [
        (json!({"sub": "u", "ttl_seconds": 0}), "ttl_seconds"),
        (json!({"sub": "u", "ttl_seconds": -5}), "ttl_seconds"),
        (json!({"sub": "u", "ttl_seconds": 3601}), "ttl_seconds"),
        (json!({"sub": "u", "ttl_seconds": "900"}), "ttl_seconds"),
        (json!({"sub": "u", "alg": "none"}), "alg"),
        (json!({"sub": "u", "alg": "HS1"}), "alg"),
        (json!({"sub": ""}), "sub"),
        (json!({"sub": 5}), "sub"),
        (json!({}), "sub"),
        (json!({"sub": "u", "aud": 5}), "aud"),
        (json!({"sub": "u", "nbf": "yesterday"}), "nbf"),
        (json!({"sub": "u", "claims": [1, 2]}), "claims"),
        (json!({"sub": "u", "colour": "red"}), "colour"),
    ] {
        let r = srv.post("/v1/tenants/default/tokens", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_problem_names(&r, 400, needle);
    }
    // The maximum itself is fine.
    let t = srv
        .issue("default", json!({"sub": "u", "ttl_seconds": 3600}))
        .await;
    let (_, c) = decode(&str_of(&t["token"]));
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    // Not JSON at all.
    let req = srv
        .http
        .post(srv.url("/v1/tenants/default/tokens"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json");
    assert_problem(&srv.send("not json", req).await, 400);
    // No active key of the requested alg: the tenant's state is the problem.
    let r = srv
        .post(
            "/v1/tenants/default/tokens",
            json!({"sub": "u", "alg": "RS256"}),
        )
        .await;
    assert_problem(&r, 409);
}

#[tokio::test]
async fn batch_issue_answers_each_item_in_order() {
    let srv = Server::start().await;
    srv.create_key("default", "EdDSA").await;
    let r = srv
        .post(
            "/v1/tenants/default/tokens/batch",
            json!({"requests": [
                {"sub": "a", "aud": "api"},
                {"sub": "b", "claims": {"jti": "mine"}},
                {"sub": "c", "alg": "EdDSA", "ttl_seconds": 60},
                {"nope": 1},
                {"sub": "e", "alg": "RS256"},
            ]}),
        )
        .await
        .expect(StatusCode::OK);
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 5);
    let a = str_of(&results[0]["token"]);
    assert_eq!(decode(&a).1["sub"], "a");
    assert_eq!(srv.reason("default", &a).await, None);
    let c = str_of(&results[2]["token"]);
    let (ch, cc) = decode(&c);
    assert_eq!(
        (ch["alg"].as_str(), cc["sub"].as_str()),
        (Some("EdDSA"), Some("c"))
    );
    assert_eq!(results[2]["alg"], "EdDSA");
    for i in [1, 3, 4] {
        let e = &results[i]["error"];
        assert!(results[i].get("token").is_none(), "#{i}: {}", results[i]);
        for f in ["type", "title", "status", "detail"] {
            assert!(e.get(f).is_some(), "#{i} error lacks {f}: {e}");
        }
    }
    assert_eq!(results[1]["error"]["status"], 400);
    assert!(
        results[1]["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("jti")
    );
    assert_eq!(results[3]["error"]["status"], 400);
    assert_eq!(results[4]["error"]["status"], 409);
    // Every successful item has its own jti.
    assert_ne!(results[0]["jti"], results[2]["jti"]);
}

#[tokio::test]
async fn batch_issue_takes_at_most_1000_requests() {
    let srv = Server::start_with(&[("VETO_LOG", "error")]).await;
    let reqs: Vec<_> = (0..1000).map(|i| json!({"sub": format!("u{i}")})).collect();
    let r = srv
        .post(
            "/v1/tenants/default/tokens/batch",
            json!({"requests": reqs}),
        )
        .await
        .expect(StatusCode::OK);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    assert_eq!(decode(&str_of(&results[999]["token"])).1["sub"], "u999");
    let reqs: Vec<_> = (0..1001).map(|i| json!({"sub": format!("u{i}")})).collect();
    let r = srv
        .post(
            "/v1/tenants/default/tokens/batch",
            json!({"requests": reqs}),
        )
        .await;
    assert_problem_names(&r, 400, "1000");
}

#[tokio::test]
async fn an_expired_token_is_expired() {
    // No leeway, so that a 1-second token is expired 2 seconds later (the default leeway is
    // there for real clocks; `veto serve --clock-skew-seconds`).
    let srv = Server::start_with(&[("VETO_CLOCK_SKEW_SECONDS", "0")]).await;
    let short = srv
        .issue("default", json!({"sub": "u", "ttl_seconds": 1}))
        .await;
    let long = srv.token("default", "u").await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let token = str_of(&short["token"]);
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("expired")
    );
    assert_eq!(
        srv.introspect("default", &token).await,
        json!({"active": false})
    );
    assert_eq!(srv.reason("default", &long).await, None);
}

#[tokio::test]
async fn a_token_before_its_nbf_is_not_yet_valid() {
    let srv = Server::start().await;
    let future = srv
        .issue(
            "default",
            json!({"sub": "u", "nbf": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let past = srv
        .issue(
            "default",
            json!({"sub": "u", "nbf": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        srv.reason("default", &str_of(&future["token"]))
            .await
            .as_deref(),
        Some("not_yet_valid")
    );
    assert_eq!(srv.reason("default", &str_of(&past["token"])).await, None);
}

#[tokio::test]
async fn audience_is_checked_when_the_caller_names_one() {
    let srv = Server::start().await;
    let single = srv.token("default", "u").await; // aud "api"
    let multi = str_of(
        &srv.issue("default", json!({"sub": "u", "aud": ["api", "admin"]}))
            .await["token"],
    );
    let verify = |token: &str, aud: &str| {
        srv.post(
            "/v1/tenants/default/tokens/verify",
            json!({"token": token, "audience": aud}),
        )
    };
    let v = verify(&single, "other").await.expect(StatusCode::OK);
    assert_eq!(
        verdict(v),
        json!({"active": false, "reason": "wrong_audience"})
    );
    let v = verify(&single, "api").await.expect(StatusCode::OK);
    assert_eq!(
        (v["active"].clone(), v["claims"]["sub"].clone()),
        (json!(true), json!("u"))
    );
    assert_eq!(
        verify(&multi, "admin").await.expect(StatusCode::OK)["active"],
        true
    );
    let v = verify(&multi, "billing").await.expect(StatusCode::OK);
    assert_eq!(v["reason"], "wrong_audience");
    // Without an audience in the question, any audience is fine.
    assert_eq!(srv.reason("default", &single).await, None);
}

#[tokio::test]
async fn a_token_from_another_issuer_is_wrong_issuer() {
    // The issuer is `<public url>/t/<tenant>`: once the public URL changes, tokens that name the
    // old issuer are refused although their key is still known and their signature good.
    let mut srv = Server::start_with(&[("VETO_PUBLIC_URL", "https://old.example.test")]).await;
    let token = srv.token("default", "u").await;
    assert_eq!(
        decode(&token).1["iss"],
        "https://old.example.test/t/default"
    );
    assert_eq!(srv.reason("default", &token).await, None);
    srv.restart_with(&[("VETO_PUBLIC_URL", "https://new.example.test")]);
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("wrong_issuer")
    );
    assert_eq!(
        srv.introspect("default", &token).await,
        json!({"active": false})
    );
    let fresh = srv.token("default", "u").await;
    assert_eq!(srv.reason("default", &fresh).await, None);
}

#[tokio::test]
async fn a_token_of_tenant_a_is_not_accepted_at_tenant_b() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let acme = srv.token("acme", "u").await;
    // Tenant B does not know tenant A's signing key: it is rejected before its issuer is read.
    assert_eq!(
        srv.reason("default", &acme).await.as_deref(),
        Some("unknown_key")
    );
    assert_eq!(
        srv.introspect("default", &acme).await,
        json!({"active": false})
    );
    assert_eq!(srv.reason("acme", &acme).await, None);
}

#[tokio::test]
async fn verify_requests_are_validated() {
    let srv = Server::start().await;
    let p = "/v1/tenants/default/tokens/verify";
    let t = srv.token("default", "u").await;
    assert_problem_names(&srv.post(p, json!({})).await, 400, "token");
    assert_problem_names(&srv.post(p, json!({"token": 5})).await, 400, "token");
    assert_problem_names(
        &srv.post(p, json!({"token": t, "extra": 1})).await,
        400,
        "extra",
    );
    assert_problem_names(
        &srv.post(p, json!({"token": t, "audience": ["a"]})).await,
        400,
        "audience",
    );
    // A bad token is a good question: 200, malformed.
    for bad in ["", "x", "a.b.c"] {
        let v = srv
            .post(p, json!({"token": bad}))
            .await
            .expect(StatusCode::OK);
        assert_eq!(
            verdict(v),
            json!({"active": false, "reason": "malformed"}),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_suspended_tenant_verifies_nothing_and_issues_nothing() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let before = srv.token("acme", "u").await;
    srv.post("/v1/tenants/acme/suspend", json!({"reason": "unpaid"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        srv.reason("acme", &before).await.as_deref(),
        Some("tenant_suspended")
    );
    assert_eq!(
        srv.introspect("acme", &before).await,
        json!({"active": false})
    );
    let r = srv
        .post("/v1/tenants/acme/tokens", json!({"sub": "u"}))
        .await;
    assert_problem(&r, 409);
    let r = srv
        .post(
            "/v1/tenants/acme/tokens/batch",
            json!({"requests": [{"sub": "u"}]}),
        )
        .await;
    assert!(
        r.status == StatusCode::CONFLICT || r.json["results"][0]["error"]["status"] == 409,
        "batch issue while suspended: {}",
        r.text
    );
    // Other tenants keep working.
    let other = srv.token("default", "u").await;
    assert_eq!(srv.reason("default", &other).await, None);
    srv.post("/v1/tenants/acme/resume", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(srv.reason("acme", &before).await, None);
    let after = srv.token("acme", "u").await;
    assert_eq!(srv.reason("acme", &after).await, None);
}

#[tokio::test]
async fn tenant_revoke_all_rejects_earlier_tokens_only() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let a1 = srv.token("acme", "alice").await;
    let b1 = srv.token("acme", "bob").await;
    srv.post("/v1/tenants/acme/revoke-all", json!({"reason": "breach"}))
        .await
        .expect(StatusCode::OK);
    // Issued right after, possibly within the same second: valid.
    let a2 = srv.token("acme", "alice").await;
    assert_eq!(
        srv.reason("acme", &a1).await.as_deref(),
        Some("tenant_revoked")
    );
    assert_eq!(
        srv.reason("acme", &b1).await.as_deref(),
        Some("tenant_revoked")
    );
    assert_eq!(srv.introspect("acme", &a1).await, json!({"active": false}));
    assert_eq!(srv.reason("acme", &a2).await, None);
    let other = srv.token("default", "alice").await;
    assert_eq!(srv.reason("default", &other).await, None);
}

#[tokio::test]
async fn subject_revoke_all_logs_out_everywhere() {
    let srv = Server::start().await;
    let a1 = srv.token("default", "alice").await;
    let a2 = str_of(
        &srv.issue("default", json!({"sub": "alice", "aud": "other"}))
            .await["token"],
    );
    let bob = srv.token("default", "bob").await;
    let r = srv
        .post(
            "/v1/tenants/default/subjects/alice/revoke-all",
            json!({"reason": "password changed"}),
        )
        .await
        .expect(StatusCode::OK);
    assert!(r.is_object(), "{r}");
    let a3 = srv.token("default", "alice").await;
    assert_eq!(
        srv.reason("default", &a1).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(
        srv.reason("default", &a2).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(
        srv.introspect("default", &a1).await,
        json!({"active": false})
    );
    assert_eq!(
        srv.reason("default", &a3).await,
        None,
        "a token issued after the cutoff"
    );
    assert_eq!(srv.reason("default", &bob).await, None);
}

#[tokio::test]
async fn cutoffs_survive_a_crash() {
    let mut srv = Server::start().await;
    srv.create_tenant("acme").await;
    let alice = srv.token("default", "alice").await;
    let acme = srv.token("acme", "u").await;
    srv.post(
        "/v1/tenants/default/subjects/alice/revoke-all",
        json!({"reason": "x"}),
    )
    .await
    .expect(StatusCode::OK);
    srv.post("/v1/tenants/acme/revoke-all", json!({"reason": "x"}))
        .await
        .expect(StatusCode::OK);
    srv.crash_and_restart();
    assert_eq!(
        srv.reason("default", &alice).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(
        srv.reason("acme", &acme).await.as_deref(),
        Some("tenant_revoked")
    );
    let fresh = srv.token("default", "alice").await;
    assert_eq!(srv.reason("default", &fresh).await, None);
}
