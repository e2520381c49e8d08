//! Tenants, API keys (authentication, scopes, isolation), signing keys, JWKS and metadata.
mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn first_start_bootstraps_default_tenant_and_admin_key_file() {
    // No VETO_BOOTSTRAP_ADMIN_KEY: a key is generated and written with mode 0600.
    let srv = Server::start_with(&[("VETO_BOOTSTRAP_ADMIN_KEY", "")]).await;
    let path = srv.dir.path().join("bootstrap-admin.key");
    let key = std::fs::read_to_string(&path).expect("bootstrap-admin.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (s, b) = srv
        .send("GET", "/v1/tenants/default", Some(key.trim()), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["id"], "default");
    assert!(srv.dir.path().join("master.key").exists());
}

#[tokio::test]
async fn tenant_lifecycle_and_validation() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (s, b) = srv.post("/v1/tenants", json!({"id": "acme"})).await;
    assert_problem(s, &b, 409);
    let (s, b) = srv.post("/v1/tenants", json!({"id": "Not_Valid"})).await;
    assert_problem(s, &b, 400);
    let (s, b) = srv
        .post("/v1/tenants", json!({"id": "ok", "extra": true}))
        .await;
    assert_problem(s, &b, 400);
    assert!(b["detail"].as_str().unwrap().contains("extra"), "{b}");
    let (s, b) = srv.get("/v1/tenants/acme").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (b["id"].clone(), b["suspended"].clone()),
        (json!("acme"), json!(false))
    );
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
    let (s, b) = srv.get("/v1/tenants/nope").await;
    assert_problem(s, &b, 404);
    // A new tenant starts with one active ES256 key.
    let (_, keys) = srv.get("/v1/tenants/acme/keys").await;
    let items = keys["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["alg"].clone(), items[0]["status"].clone()),
        (json!("ES256"), json!("active"))
    );
}

#[tokio::test]
async fn authentication_scopes_and_isolation() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    srv.create_tenant("globex").await;
    // 401 without or with an unknown key, with WWW-Authenticate: Bearer.
    for key in [None, Some("vk_unknown")] {
        let resp = {
            let mut r = srv.http.get(srv.url("/v1/tenants/acme"));
            if let Some(k) = key {
                r = r.bearer_auth(k);
            }
            r.send().await.unwrap()
        };
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    let (_, issuer) = srv.create_api_key("acme", &["tokens:issue"]).await;
    let (_, verifier) = srv.create_api_key("acme", &["tokens:verify"]).await;
    // Any key of the tenant reads the tenant; another tenant's key is 403.
    assert_eq!(
        srv.send("GET", "/v1/tenants/acme", Some(&issuer), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        srv.send("GET", "/v1/tenants/globex", Some(&issuer), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Scope checks.
    let body = json!({"sub": "u"});
    let (s, tok) = srv
        .send(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&issuer),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = srv
        .send(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&verifier),
            Some(body.clone()),
        )
        .await;
    assert_problem(s, &b, 403);
    let (s, _) = srv
        .send(
            "POST",
            "/v1/tenants/globex/tokens",
            Some(&issuer),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let verify = json!({"token": tok["token"]});
    let (s, _) = srv
        .send(
            "POST",
            "/v1/tenants/acme/tokens/verify",
            Some(&issuer),
            Some(verify.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = srv
        .send(
            "POST",
            "/v1/tenants/acme/tokens/verify",
            Some(&verifier),
            Some(verify),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Tenant keys never manage tenants, even a key with every tenant scope.
    let (_, all) = srv
        .create_api_key("acme", &["keys:manage", "tokens:revoke", "audit:read"])
        .await;
    let (s, _) = srv
        .send("POST", "/v1/tenants", Some(&all), Some(json!({"id": "x"})))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = srv
        .send(
            "POST",
            "/v1/tenants/acme/suspend",
            Some(&all),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "x", "scopes": ["tenants:manage"]}),
        )
        .await;
    assert_problem(s, &b, 400);
    let (s, b) = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "x", "scopes": ["nope"]}),
        )
        .await;
    assert_problem(s, &b, 400);
}

#[tokio::test]
async fn api_keys_list_without_secrets_and_delete_stops_them() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (id, key) = srv.create_api_key("acme", &["tokens:issue"]).await;
    let (s, list) = srv.get("/v1/tenants/acme/api-keys").await;
    assert_eq!(s, StatusCode::OK);
    let text = list.to_string();
    assert!(text.contains(&id) && !text.contains(&key), "{text}");
    assert!(list["items"][0].get("key").is_none());
    assert_eq!(list["next_cursor"], json!(null));
    let (s, _) = srv
        .send(
            "DELETE",
            &format!("/v1/tenants/acme/api-keys/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = srv
        .send(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&key),
            Some(json!({"sub": "u"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = srv
        .send(
            "DELETE",
            &format!("/v1/tenants/acme/api-keys/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_algorithm_signs_and_verifies_and_jwks_shows_only_public_keys() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let algs = [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
    ];
    for alg in algs {
        let kid = srv.create_key("acme", alg).await;
        let issued = srv.issue("acme", json!({"sub": "u", "alg": alg})).await;
        assert_eq!(
            (issued["alg"].as_str(), issued["kid"].as_str()),
            (Some(alg), Some(kid.as_str()))
        );
        let (h, _) = decode(issued["token"].as_str().unwrap());
        assert_eq!(
            (h["alg"].as_str(), h["typ"].as_str()),
            (Some(alg), Some("at+jwt"))
        );
        assert_eq!(
            srv.reason("acme", issued["token"].as_str().unwrap()).await,
            None,
            "{alg}"
        );
    }
    let (s, jwks) = srv
        .send("GET", "/t/acme/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let keys = jwks["keys"].as_array().unwrap();
    // 7 asymmetric keys created + the tenant's initial ES256 key; no HMAC key.
    assert_eq!(keys.len(), 8, "{jwks}");
    for k in keys {
        assert_eq!(k["use"], "sig");
        assert!(
            k.get("d").is_none() && k.get("k").is_none() && k.get("p").is_none(),
            "private part in {k}"
        );
        assert!(!k["alg"].as_str().unwrap().starts_with("HS"));
        if k["kty"] == "OKP" {
            assert_eq!(
                (k["crv"].as_str(), k["alg"].as_str()),
                (Some("Ed25519"), Some("EdDSA"))
            );
        }
    }
    let (_, list) = srv.get("/v1/tenants/acme/keys").await;
    let text = list.to_string();
    assert!(
        !text.contains("encrypted") && !text.contains("private"),
        "{text}"
    );
    let (s, b) = srv
        .post("/v1/tenants/acme/keys", json!({"alg": "none"}))
        .await;
    assert_problem(s, &b, 400);
}

#[tokio::test]
async fn rotation_retires_and_revocation_rejects_at_once() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let old_token = srv.token("acme", "u").await;
    let old_kid = decode(&old_token).0["kid"].as_str().unwrap().to_owned();
    let (s, new) = srv
        .post("/v1/tenants/acme/keys/rotate", json!({"alg": "ES256"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{new}");
    let (_, list) = srv.get("/v1/tenants/acme/keys").await;
    let status_of = |kid: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of(&old_kid), "retired");
    assert_eq!(status_of(new["kid"].as_str().unwrap()), "active");
    // The retired key still verifies its tokens and stays in the JWKS; new tokens use the new key.
    assert_eq!(srv.reason("acme", &old_token).await, None);
    let new_token = srv.token("acme", "u").await;
    assert_eq!(decode(&new_token).0["kid"], new["kid"]);
    // Revoking the old key: its tokens fail at once, it leaves the JWKS.
    let (s, r) = srv
        .post(
            &format!("/v1/tenants/acme/keys/{old_kid}/revoke"),
            json!({"reason": "leaked"}),
        )
        .await;
    assert_eq!((s, r["status"].clone()), (StatusCode::OK, json!("revoked")));
    assert_eq!(
        srv.reason("acme", &old_token).await.as_deref(),
        Some("key_revoked")
    );
    assert_eq!(
        srv.introspect("acme", &old_token).await,
        json!({"active": false})
    );
    let (_, jwks) = srv
        .send("GET", "/t/acme/.well-known/jwks.json", None, None)
        .await;
    assert!(!jwks.to_string().contains(&old_kid));
    assert_eq!(srv.reason("acme", &new_token).await, None);
    let (s, _) = srv
        .post("/v1/tenants/acme/keys/k_unknown/revoke", json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn audience_bound_keys_sign_for_their_audience() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (s, bound) = srv
        .post(
            "/v1/tenants/acme/keys",
            json!({"alg": "ES256", "audience": "billing"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let t = srv
        .issue("acme", json!({"sub": "u", "aud": "billing"}))
        .await;
    assert_eq!(t["kid"], bound["kid"]);
    let t = srv.issue("acme", json!({"sub": "u", "aud": "other"})).await;
    assert_ne!(t["kid"], bound["kid"]);
}

#[tokio::test]
async fn metadata_names_the_endpoints() {
    let srv = Server::start().await;
    let (s, m) = srv
        .send(
            "GET",
            "/t/default/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let iss = format!("{}/t/default", srv.base);
    assert_eq!(m["issuer"], json!(iss));
    assert_eq!(m["jwks_uri"], json!(format!("{iss}/.well-known/jwks.json")));
    assert_eq!(
        m["revocation_endpoint"],
        json!(format!("{iss}/oauth2/revoke"))
    );
    assert_eq!(
        m["introspection_endpoint"],
        json!(format!("{iss}/oauth2/introspect"))
    );
    let (s, _) = srv
        .send("GET", "/t/nope/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
