//! Issuance and the verify reasons.
mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn issued_token_carries_the_contract_claims() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (key_id, key) = srv.create_api_key("acme", &["tokens:issue"]).await;
    let body = json!({"sub": "user-1", "aud": ["a", "b"], "ttl_seconds": 600, "claims": {"role": "admin"}});
    let (s, r) = srv
        .send("POST", "/v1/tenants/acme/tokens", Some(&key), Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    for f in ["token", "jti", "kid", "alg", "issued_at", "expires_at"] {
        assert!(r.get(f).is_some(), "missing {f}");
    }
    let (h, c) = decode(r["token"].as_str().unwrap());
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["kid"], r["kid"]);
    assert_eq!(c["iss"], json!(format!("{}/t/acme", srv.base)));
    assert_eq!(
        (c["sub"].clone(), c["aud"].clone()),
        (json!("user-1"), json!(["a", "b"]))
    );
    assert_eq!(
        (c["tid"].clone(), c["client_id"].clone()),
        (json!("acme"), json!(key_id))
    );
    assert_eq!(c["role"], "admin");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert!(c.get("nbf").is_none() && c.get("sid").is_none());
    let jti = uuid::Uuid::parse_str(c["jti"].as_str().unwrap()).expect("uuid jti");
    assert_eq!(jti.get_version_num(), 4);
    assert_eq!(r["jti"], c["jti"]);
    // nbf, sid and client_id only when given.
    let r = srv
        .issue(
            "acme",
            json!({"sub": "u", "nbf": "2026-01-01T00:00:00Z", "sid": "ses-1", "client_id": "web"}),
        )
        .await;
    let (_, c) = decode(r["token"].as_str().unwrap());
    assert_eq!(
        (c["sid"].clone(), c["client_id"].clone()),
        (json!("ses-1"), json!("web"))
    );
    assert_eq!(c["nbf"], json!(1_767_225_600));
}

#[tokio::test]
async fn bad_issue_requests_are_400_and_name_the_problem() {
    let srv = Server::start().await;
    for (body, needle) in [
        (json!({"sub": "u", "claims": {"exp": 1}}), "exp"),
        (json!({"sub": "u", "claims": {"iss": "x"}}), "iss"),
        (json!({"sub": "u", "ttl_seconds": 0}), "ttl_seconds"),
        (
            json!({"sub": "u", "ttl_seconds": 10_000_000}),
            "ttl_seconds",
        ),
        (json!({"sub": "u", "alg": "none"}), "alg"),
        (json!({"sub": ""}), "sub"),
        (json!({"sub": 5}), "sub"),
        (json!({}), "sub"),
        (json!({"sub": "u", "nbf": "yesterday"}), "nbf"),
    ] {
        let (s, b) = srv.post("/v1/tenants/default/tokens", body.clone()).await;
        assert_problem(s, &b, 400);
        assert!(
            b["detail"].as_str().unwrap().contains(needle),
            "{body} → {b}"
        );
    }
    let (s, b) = srv
        .post("/v1/tenants/nope/tokens", json!({"sub": "u"}))
        .await;
    assert_problem(s, &b, 404);
    // No active key of that alg: a conflict with the tenant's state, naming the fix.
    let (s, b) = srv
        .post(
            "/v1/tenants/default/tokens",
            json!({"sub": "u", "alg": "RS256"}),
        )
        .await;
    assert_problem(s, &b, 409);
    assert!(b["detail"].as_str().unwrap().contains("keys"));
    // Not JSON at all.
    let resp = srv
        .http
        .post(srv.url("/v1/tenants/default/tokens"))
        .bearer_auth(ADMIN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn batch_issue_reports_each_item_in_order() {
    let srv = Server::start().await;
    let (s, b) = srv
        .post(
            "/v1/tenants/default/tokens/batch",
            json!({"requests": [{"sub": "a"}, {"sub": "b", "claims": {"jti": "x"}}, {"sub": "c"}, {"nope": 1}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = b["results"].as_array().unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(decode(r[0]["token"].as_str().unwrap()).1["sub"], "a");
    assert_eq!(r[1]["error"]["status"], 400);
    assert_eq!(r[1]["error"]["index"], 1);
    assert_eq!(decode(r[2]["token"].as_str().unwrap()).1["sub"], "c");
    assert_eq!(r[3]["error"]["index"], 3);
    let (s, _) = srv
        .post("/v1/tenants/default/tokens/batch", json!({"requests": []}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn time_audience_and_issuer_reasons() {
    let mut srv = Server::start().await;
    let short = srv
        .issue("default", json!({"sub": "u", "ttl_seconds": 1}))
        .await;
    let future = srv
        .issue(
            "default",
            json!({"sub": "u", "nbf": "2099-01-01T00:00:00Z"}),
        )
        .await;
    let aud = srv.token("default", "u").await;
    assert_eq!(
        srv.reason("default", future["token"].as_str().unwrap())
            .await
            .as_deref(),
        Some("not_yet_valid")
    );
    let (_, v) = srv
        .post(
            "/v1/tenants/default/tokens/verify",
            json!({"token": aud, "audience": "other"}),
        )
        .await;
    assert_eq!(v, json!({"active": false, "reason": "wrong_audience"}));
    let (_, v) = srv
        .post(
            "/v1/tenants/default/tokens/verify",
            json!({"token": aud, "audience": "api"}),
        )
        .await;
    assert_eq!(v["active"], true);
    assert_eq!(v["claims"]["sub"], "u");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        srv.reason("default", short["token"].as_str().unwrap())
            .await
            .as_deref(),
        Some("expired")
    );
    // The issuer moves (a new public URL): old tokens name the wrong issuer.
    srv.restart_with(&[("VETO_PUBLIC_URL", "https://auth.example.com")]);
    assert_eq!(
        srv.reason("default", &aud).await.as_deref(),
        Some("wrong_issuer")
    );
}

#[tokio::test]
async fn tenant_suspension_and_tenant_revoke_all() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let before = srv.token("acme", "u").await;
    let (s, t) = srv
        .post("/v1/tenants/acme/suspend", json!({"reason": "unpaid"}))
        .await;
    assert_eq!((s, t["suspended"].clone()), (StatusCode::OK, json!(true)));
    assert_eq!(
        srv.reason("acme", &before).await.as_deref(),
        Some("tenant_suspended")
    );
    let (s, b) = srv
        .post("/v1/tenants/acme/tokens", json!({"sub": "u"}))
        .await;
    assert_problem(s, &b, 409);
    let (s, t) = srv.post("/v1/tenants/acme/resume", json!({})).await;
    assert_eq!((s, t["suspended"].clone()), (StatusCode::OK, json!(false)));
    assert_eq!(srv.reason("acme", &before).await, None);
    // Revoke-all: every token issued up to now fails; tokens issued afterwards do not,
    // even within the same second.
    let (s, r) = srv
        .post("/v1/tenants/acme/revoke-all", json!({"reason": "breach"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let after = srv.token("acme", "u").await;
    assert_eq!(
        srv.reason("acme", &before).await.as_deref(),
        Some("tenant_revoked")
    );
    assert_eq!(srv.reason("acme", &after).await, None);
    // Other tenants are untouched.
    let other = srv.token("default", "u").await;
    assert_eq!(srv.reason("default", &other).await, None);
}

#[tokio::test]
async fn subject_revoke_all_logs_out_everywhere() {
    let srv = Server::start().await;
    let a1 = srv.token("default", "alice").await;
    let a2 = srv.token("default", "alice").await;
    let bob = srv.token("default", "bob").await;
    let (s, r) = srv
        .post(
            "/v1/tenants/default/subjects/alice/revoke-all",
            json!({"reason": "password changed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["sub"], "alice");
    let a3 = srv.token("default", "alice").await;
    assert_eq!(
        srv.reason("default", &a1).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(
        srv.reason("default", &a2).await.as_deref(),
        Some("subject_revoked")
    );
    assert_eq!(srv.reason("default", &a3).await, None);
    assert_eq!(srv.reason("default", &bob).await, None);
}
