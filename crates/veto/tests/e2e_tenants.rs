//! Tenants: creation, validation, reading, suspension, tenant revoke-all, bootstrap.
mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn default_tenant_exists_after_first_start() {
    let srv = Server::start().await;
    let t = srv.get("/v1/tenants/default").await.expect(StatusCode::OK);
    assert_eq!(t["id"], "default");
    assert_eq!(t["suspended"], false);
    assert!(t.get("display_name").is_some(), "{t}");
    rfc3339(&t["created_at"]);
}

#[tokio::test]
async fn bootstrap_admin_key_is_generated_into_a_0600_file_when_none_is_given() {
    use std::os::unix::fs::PermissionsExt;
    let mut srv = Server::start_with(&[("VETO_BOOTSTRAP_ADMIN_KEY", "")]).await;
    let path = srv.data_dir().join("bootstrap-admin.key");
    let key = std::fs::read_to_string(&path).expect("<data dir>/bootstrap-admin.key");
    let key = key.trim().to_owned();
    assert!(!key.is_empty());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // It is an admin key: it creates tenants and reads any tenant.
    let r = srv
        .call(
            "POST",
            "/v1/tenants",
            Some(&key),
            Some(json!({"id": "acme", "display_name": "Acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = srv
        .call("GET", "/v1/tenants/default", Some(&key), None)
        .await;
    assert_eq!(r.expect(StatusCode::OK)["id"], "default");
    // The secret is shown once on stderr...
    assert!(srv.stderr().contains(&key), "key not printed on stderr");
    // ...and a restart neither replaces it nor prints a new one.
    srv.restart(false);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        key,
        "bootstrap key file rewritten on restart"
    );
    let r = srv.call("GET", "/v1/tenants/acme", Some(&key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn bootstrap_admin_key_from_the_environment_is_an_admin_key() {
    let srv = Server::start_with(&[("VETO_BOOTSTRAP_ADMIN_KEY", "my-chosen-secret-42")]).await;
    let r = srv
        .call(
            "POST",
            "/v1/tenants",
            Some("my-chosen-secret-42"),
            Some(json!({"id": "acme", "display_name": "Acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // The harness's usual admin secret is not a key on this server.
    let r = srv.call("GET", "/v1/tenants/acme", Some(ADMIN), None).await;
    assert_problem(&r, 401);
}

#[tokio::test]
async fn create_answers_201_with_the_tenant_and_get_reads_it_back() {
    let srv = Server::start().await;
    let r = srv
        .post(
            "/v1/tenants",
            json!({"id": "acme", "display_name": "Acme Corp"}),
        )
        .await;
    let created = r.expect(StatusCode::CREATED);
    assert_eq!(created["id"], "acme");
    assert_eq!(created["display_name"], "Acme Corp");
    assert_eq!(created["suspended"], false);
    let got = srv.get("/v1/tenants/acme").await.expect(StatusCode::OK);
    assert_eq!(got["id"], "acme");
    assert_eq!(got["display_name"], "Acme Corp");
    assert_eq!(got["suspended"], false);
    assert_eq!(got["created_at"], created["created_at"]);
    let age = time::OffsetDateTime::now_utc() - rfc3339(&got["created_at"]);
    assert!(age.whole_seconds().abs() < 300, "created_at {age} ago");
}

#[tokio::test]
async fn a_tenant_id_is_created_once() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let r = srv
        .post(
            "/v1/tenants",
            json!({"id": "acme", "display_name": "Again"}),
        )
        .await;
    assert_problem(&r, 409);
    let got = srv.get("/v1/tenants/acme").await.expect(StatusCode::OK);
    assert_eq!(got["display_name"], "acme", "the original was overwritten");
    let r = srv
        .post("/v1/tenants", json!({"id": "default", "display_name": "x"}))
        .await;
    assert_problem(&r, 409);
}

#[tokio::test]
async fn tenant_ids_follow_the_pattern() {
    let srv = Server::start().await;
    let max = format!("a{}", "b".repeat(62));
    for ok in ["a", "0", "a-b", "acme-2", "x-", max.as_str()] {
        let r = srv
            .post("/v1/tenants", json!({"id": ok, "display_name": ok}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{ok}: {}", r.text);
    }
    let too_long = format!("a{}", "b".repeat(63));
    for bad in [
        "",
        "-a",
        "Acme",
        "a_b",
        "a b",
        "a.b",
        "a/b",
        "ümlaut",
        too_long.as_str(),
    ] {
        let r = srv
            .post("/v1/tenants", json!({"id": bad, "display_name": "x"}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "id {bad:?}: {}", r.text);
        assert_problem_names(&r, 400, "id");
    }
}

#[tokio::test]
async fn bad_create_bodies_are_400_and_name_the_field() {
    let srv = Server::start().await;
    let r = srv
        .post(
            "/v1/tenants",
            json!({"id": "acme", "display_name": "A", "colour": "red"}),
        )
        .await;
    assert_problem_names(&r, 400, "colour");
    let r = srv.post("/v1/tenants", json!({"display_name": "A"})).await;
    assert_problem_names(&r, 400, "id");
    let r = srv
        .post("/v1/tenants", json!({"id": 42, "display_name": "A"}))
        .await;
    assert_problem_names(&r, 400, "id");
    let req = srv
        .http
        .post(srv.url("/v1/tenants"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{\"id\": \"acme\",");
    assert_problem(&srv.send("truncated json", req).await, 400);
    // Nothing was written by any of these.
    assert_problem(&srv.get("/v1/tenants/acme").await, 404);
}

#[tokio::test]
async fn unknown_tenant_is_404_everywhere() {
    let srv = Server::start().await;
    for (method, path, body) in [
        ("GET", "/v1/tenants/nope", None),
        (
            "POST",
            "/v1/tenants/nope/suspend",
            Some(json!({"reason": "x"})),
        ),
        ("POST", "/v1/tenants/nope/resume", Some(json!({}))),
        (
            "POST",
            "/v1/tenants/nope/revoke-all",
            Some(json!({"reason": "x"})),
        ),
        ("GET", "/v1/tenants/nope/keys", None),
        ("POST", "/v1/tenants/nope/tokens", Some(json!({"sub": "u"}))),
        (
            "POST",
            "/v1/tenants/nope/tokens/verify",
            Some(json!({"token": "a.b.c"})),
        ),
        (
            "POST",
            "/v1/tenants/nope/revocations",
            Some(json!({"jti": "j"})),
        ),
        ("GET", "/v1/tenants/nope/revocations", None),
        ("GET", "/t/nope/.well-known/jwks.json", None),
        (
            "GET",
            "/t/nope/.well-known/oauth-authorization-server",
            None,
        ),
    ] {
        let r = srv.call(method, path, Some(ADMIN), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert_problem(&r, 404);
    }
}

#[tokio::test]
async fn suspend_and_resume_answer_the_tenant() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let t = srv
        .post("/v1/tenants/acme/suspend", json!({"reason": "unpaid"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (t["id"].clone(), t["suspended"].clone()),
        (json!("acme"), json!(true))
    );
    let got = srv.get("/v1/tenants/acme").await.expect(StatusCode::OK);
    assert_eq!(got["suspended"], true);
    let t = srv
        .post("/v1/tenants/acme/resume", json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(t["suspended"], false);
    assert_eq!(
        srv.get("/v1/tenants/acme").await.expect(StatusCode::OK)["suspended"],
        false
    );
    // Other tenants are not touched.
    assert_eq!(
        srv.get("/v1/tenants/default").await.expect(StatusCode::OK)["suspended"],
        false
    );
}

#[tokio::test]
async fn suspension_survives_a_crash() {
    let mut srv = Server::start().await;
    srv.create_tenant("acme").await;
    let tok = srv.token("acme", "u").await;
    srv.post("/v1/tenants/acme/suspend", json!({"reason": "fraud"}))
        .await
        .expect(StatusCode::OK);
    srv.crash_and_restart();
    assert_eq!(
        srv.get("/v1/tenants/acme").await.expect(StatusCode::OK)["suspended"],
        true
    );
    assert_eq!(
        srv.reason("acme", &tok).await.as_deref(),
        Some("tenant_suspended")
    );
}

#[tokio::test]
async fn tenant_management_needs_an_admin_key() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    // A key with every tenant-level scope is still not an admin key.
    let (_, key) = srv
        .create_api_key(
            "acme",
            &[
                "keys:manage",
                "tokens:issue",
                "tokens:verify",
                "tokens:revoke",
                "audit:read",
            ],
        )
        .await;
    for (path, body) in [
        ("/v1/tenants", json!({"id": "evil", "display_name": "Evil"})),
        ("/v1/tenants/acme/suspend", json!({"reason": "x"})),
        ("/v1/tenants/acme/resume", json!({})),
        ("/v1/tenants/acme/revoke-all", json!({"reason": "x"})),
    ] {
        let r = srv.call("POST", path, Some(&key), Some(body)).await;
        assert_problem(&r, 403);
    }
    assert_problem(&srv.get("/v1/tenants/evil").await, 404);
    assert_eq!(
        srv.get("/v1/tenants/acme").await.expect(StatusCode::OK)["suspended"],
        false
    );
    // But it reads its own tenant.
    let r = srv.call("GET", "/v1/tenants/acme", Some(&key), None).await;
    assert_eq!(r.expect(StatusCode::OK)["id"], "acme");
}

#[tokio::test]
async fn revoke_all_answers_200_and_cuts_off_only_earlier_tokens() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let before = srv.token("acme", "u").await;
    let r = srv
        .post("/v1/tenants/acme/revoke-all", json!({"reason": "breach"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        r.json.is_object(),
        "revoke-all answers the resulting object: {}",
        r.text
    );
    let after = srv.token("acme", "u").await;
    assert_eq!(
        srv.reason("acme", &before).await.as_deref(),
        Some("tenant_revoked")
    );
    assert_eq!(srv.reason("acme", &after).await, None);
    let other = srv.token("default", "u").await;
    assert_eq!(srv.reason("default", &other).await, None);
}
