//! Purge (API and CLI), health, metrics, OpenAPI and the audit trail.
mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn purge_removes_only_rows_past_expiry_plus_margin() {
    let srv = Server::start().await;
    let r = "/v1/tenants/default/revocations";
    srv.post(
        r,
        json!({"jti": "old", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    srv.post(
        r,
        json!({"jti": "live", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let (_, tenant_key) = srv.create_api_key("default", &["tokens:revoke"]).await;
    let (s, _) = srv
        .send(
            "POST",
            "/v1/admin/purge",
            Some(&tenant_key),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, out) = srv
        .post("/v1/admin/purge", json!({"safety_margin_seconds": 3600}))
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["deleted"]["revocations"], 1);
    assert_eq!(srv.get(&format!("{r}/old")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(srv.get(&format!("{r}/live")).await.0, StatusCode::OK);
    let (_, out) = srv.post("/v1/admin/purge", json!({})).await;
    assert_eq!(out["deleted"]["revocations"], 0);
    let (s, b) = srv
        .post("/v1/admin/purge", json!({"safety_margin_seconds": -1}))
        .await;
    assert_problem(s, &b, 400);
}

#[tokio::test]
async fn purge_from_the_command_line() {
    let srv = Server::start().await;
    let r = "/v1/tenants/default/revocations";
    for i in 0..25 {
        srv.post(
            r,
            json!({"jti": format!("old{i}"), "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    }
    srv.post(r, json!({"jti": "live"})).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veto"))
        .args(["purge", "--batch", "10", "--data-dir"])
        .arg(srv.dir.path())
        .output()
        .expect("veto purge");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(summary["deleted"]["revocations"], 25);
    assert_eq!(srv.get(&format!("{r}/old3")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(srv.get(&format!("{r}/live")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let srv = Server::start().await;
    assert_eq!(
        srv.send("GET", "/healthz", None, None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        srv.send("GET", "/readyz", None, None).await.0,
        StatusCode::OK
    );
    let t = srv.token("default", "u").await;
    srv.verify("default", &t).await;
    srv.post(
        "/v1/tenants/default/revocations",
        json!({"token": t, "reason": "logout"}),
    )
    .await;
    srv.verify("default", &t).await;
    let text = srv
        .http
        .get(srv.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "veto_http_requests_total",
        "veto_http_request_duration_seconds_bucket",
        "veto_tokens_issued_total{alg=\"ES256\"} 1",
        "veto_checks_total{outcome=\"active\"} 1",
        "veto_checks_total{outcome=\"revoked\"} 1",
        "veto_revocations_total{reason=\"logout\"} 1",
        "veto_revocation_index_size 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let (s, api) = srv.send("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let paths = api["paths"].as_object().unwrap();
    for p in [
        "/v1/tenants",
        "/v1/tenants/{tenant}/revocations",
        "/v1/tenants/{tenant}/revocations/batch",
        "/v1/tenants/{tenant}/tokens/verify",
        "/t/{tenant}/oauth2/introspect",
        "/t/{tenant}/oauth2/revoke",
        "/t/{tenant}/.well-known/jwks.json",
        "/v1/admin/purge",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let (s, b) = srv.get("/no/such/route").await;
    assert_problem(s, &b, 404);
}

#[tokio::test]
async fn audit_trail_records_actions() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    srv.create_key("acme", "EdDSA").await;
    let kid = srv
        .post("/v1/tenants/acme/keys/rotate", json!({"alg": "ES256"}))
        .await
        .1["kid"]
        .clone();
    srv.post(
        &format!("/v1/tenants/acme/keys/{}/revoke", kid.as_str().unwrap()),
        json!({"reason": "test"}),
    )
    .await;
    srv.post(
        "/v1/tenants/acme/revocations",
        json!({"jti": "j1", "reason": "logout"}),
    )
    .await;
    srv.post("/v1/tenants/acme/revocations", json!({"jti": "j1"}))
        .await;
    srv.post("/v1/tenants/acme/suspend", json!({"reason": "unpaid"}))
        .await;
    let (_, reader) = srv.create_api_key("acme", &["audit:read"]).await;
    let (s, page) = srv
        .send("GET", "/v1/tenants/acme/audit", Some(&reader), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "tenant.create",
        "key.create",
        "key.rotate",
        "key.revoke",
        "revocation.create",
        "tenant.suspend",
        "api_key.create",
    ] {
        assert!(actions.contains(&a), "no {a} in {actions:?}");
    }
    // The idempotent repeat wrote no second event.
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "revocation.create")
            .count(),
        1
    );
    let (_, only) = srv
        .get("/v1/tenants/acme/audit?action=key.revoke&limit=1")
        .await;
    let items = only["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["reason"].clone(), items[0]["target"].clone()),
        (json!("test"), kid)
    );
    for f in [
        "id", "at", "actor", "action", "target", "reason", "metadata",
    ] {
        assert!(items[0].get(f).is_some(), "audit event lacks {f}");
    }
    let (_, p1) = srv.get("/v1/tenants/acme/audit?limit=3").await;
    let c = p1["next_cursor"].as_str().expect("more pages");
    let (_, p2) = srv
        .get(&format!("/v1/tenants/acme/audit?limit=3&cursor={c}"))
        .await;
    assert_ne!(p1["items"][0]["id"], p2["items"][0]["id"]);
    let (s, _) = srv
        .send("GET", "/v1/tenants/default/audit", Some(&reader), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
