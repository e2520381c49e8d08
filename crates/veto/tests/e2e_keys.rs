//! Signing keys: every algorithm, rotation, revocation, listing without private material, the
//! JWKS (RFC 7517) and authorization-server metadata (RFC 8414).
mod common;
use common::*;
use serde_json::{Value, json};

const ALGS: [&str; 10] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// Member names that would mean private or secret key material in a JWK or a key listing.
const PRIVATE_MEMBERS: [&str; 12] = [
    "d",
    "p",
    "q",
    "dp",
    "dq",
    "qi",
    "oth",
    "k",
    "private_key",
    "secret",
    "private",
    "key_material",
];

fn status_of(list: &[Value], kid: &str) -> Value {
    list.iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("{kid} not in {list:?}"))["status"]
        .clone()
}

async fn jwks(srv: &Server, tenant: &str) -> Vec<Value> {
    let r = srv
        .get_public(&format!("/t/{tenant}/.well-known/jwks.json"))
        .await;
    let b = r.expect(StatusCode::OK);
    b["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys array: {b}"))
        .clone()
}

#[tokio::test]
async fn a_new_tenant_starts_with_one_active_es256_key() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let items = srv.get("/v1/tenants/acme/keys").await.items();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["alg"], "ES256");
    assert_eq!(items[0]["status"], "active");
    let kid = str_of(&items[0]["kid"]);
    let issued = srv.issue("acme", json!({"sub": "u"})).await;
    assert_eq!(
        (issued["alg"].clone(), issued["kid"].clone()),
        (json!("ES256"), json!(kid))
    );
}

#[tokio::test]
async fn every_algorithm_creates_a_key_that_signs_verifiable_tokens() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    for alg in ALGS {
        let r = srv.post("/v1/tenants/acme/keys", json!({"alg": alg})).await;
        let key = r.expect(StatusCode::CREATED);
        assert_eq!(key["alg"], alg);
        assert_eq!(key["status"], "active");
        rfc3339(&key["created_at"]);
        let kid = str_of(&key["kid"]);
        let issued = srv
            .issue("acme", json!({"sub": "u", "aud": "api", "alg": alg}))
            .await;
        assert_eq!(
            (issued["alg"].as_str(), issued["kid"].as_str()),
            (Some(alg), Some(kid.as_str()))
        );
        let token = str_of(&issued["token"]);
        let (h, _) = decode(&token);
        assert_eq!(h["alg"], alg);
        assert_eq!(h["kid"], kid.as_str());
        assert_eq!(h["typ"], "at+jwt");
        assert_eq!(srv.reason("acme", &token).await, None, "{alg}");
        assert_eq!(
            srv.introspect("acme", &token).await["active"],
            true,
            "{alg}"
        );
    }
    let kids: Vec<Value> = srv.get("/v1/tenants/acme/keys").await.items();
    assert_eq!(kids.len(), 11, "10 created + the initial ES256 key");
}

#[tokio::test]
async fn unknown_algorithms_and_bad_bodies_are_400() {
    let srv = Server::start().await;
    for body in [
        json!({"alg": "none"}),
        json!({"alg": "HS1"}),
        json!({"alg": "ES512K"}),
        json!({"alg": ""}),
        json!({"alg": 256}),
        json!({}),
        json!({"alg": "ES256", "private_key": "-----BEGIN PRIVATE KEY-----"}),
    ] {
        let r = srv.post("/v1/tenants/default/keys", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert_problem(&r, 400);
    }
    assert_eq!(srv.get("/v1/tenants/default/keys").await.items().len(), 1);
}

#[tokio::test]
async fn jwks_publishes_public_asymmetric_keys_only() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let mut hmac_kids = Vec::new();
    for alg in ALGS {
        let kid = srv.create_key("acme", alg).await;
        if alg.starts_with("HS") {
            hmac_kids.push(kid);
        }
    }
    let r = srv.get_public("/t/acme/.well-known/jwks.json").await;
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .contains("json"),
        "{:?}",
        r.header("content-type")
    );
    let keys = jwks(&srv, "acme").await;
    // 7 asymmetric keys created + the tenant's initial ES256 key.
    assert_eq!(keys.len(), 8, "{keys:?}");
    let listed = srv.get("/v1/tenants/acme/keys").await.items();
    let mut algs: Vec<String> = Vec::new();
    for k in &keys {
        let obj = k.as_object().unwrap();
        for m in PRIVATE_MEMBERS {
            assert!(!obj.contains_key(m), "private member {m} in {k}");
        }
        assert_eq!(k["use"], "sig", "{k}");
        let kid = str_of(&k["kid"]);
        assert!(!hmac_kids.contains(&kid), "HMAC key in the JWKS: {k}");
        let alg = str_of(&k["alg"]);
        // The JWKS and the key list agree on kid and alg.
        let l = listed
            .iter()
            .find(|l| l["kid"] == kid.as_str())
            .expect("listed");
        assert_eq!(l["alg"], alg.as_str());
        match alg.as_str() {
            "RS256" | "RS384" | "RS512" | "PS256" => {
                assert_eq!(k["kty"], "RSA", "{k}");
                let n = b64_decode(&str_of(&k["n"]));
                assert!(n.len() >= 256, "RSA modulus of {} bits", n.len() * 8);
                assert_eq!(b64_decode(&str_of(&k["e"])), [1, 0, 1]);
            }
            "ES256" | "ES384" => {
                let (crv, len) = if alg == "ES256" {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                assert_eq!(
                    (k["kty"].as_str(), k["crv"].as_str()),
                    (Some("EC"), Some(crv)),
                    "{k}"
                );
                assert_eq!(b64_decode(&str_of(&k["x"])).len(), len);
                assert_eq!(b64_decode(&str_of(&k["y"])).len(), len);
            }
            "EdDSA" => {
                assert_eq!(
                    (k["kty"].as_str(), k["crv"].as_str()),
                    (Some("OKP"), Some("Ed25519")),
                    "{k}"
                );
                assert_eq!(b64_decode(&str_of(&k["x"])).len(), 32);
            }
            other => panic!("unexpected alg {other} in the JWKS"),
        }
        algs.push(alg);
    }
    algs.sort();
    assert_eq!(
        algs,
        [
            "ES256", "ES256", "ES384", "EdDSA", "PS256", "RS256", "RS384", "RS512"
        ]
    );
    // The JWKS is public: no credentials needed, and the same with them.
    let with_auth = srv
        .get("/t/acme/.well-known/jwks.json")
        .await
        .expect(StatusCode::OK);
    assert_eq!(with_auth["keys"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn the_key_list_never_carries_private_material() {
    let srv = Server::start().await;
    for alg in ALGS {
        srv.create_key("default", alg).await;
    }
    let list = srv.get("/v1/tenants/default/keys").await;
    let items = list.items();
    assert_eq!(items.len(), 11);
    for k in &items {
        let obj = k.as_object().unwrap();
        for m in PRIVATE_MEMBERS {
            assert!(!obj.contains_key(m), "member {m} in {k}");
        }
        for (name, _) in obj {
            let n = name.to_lowercase();
            assert!(
                !n.contains("private") && !n.contains("secret") && !n.contains("encrypted"),
                "member {name} in {k}"
            );
        }
        for f in ["kid", "alg", "status", "created_at"] {
            assert!(obj.contains_key(f), "{f} missing in {k}");
        }
    }
    assert!(!list.text.contains("PRIVATE KEY"), "{}", list.text);
}

#[tokio::test]
async fn rotation_retires_the_previous_key_which_still_verifies() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let eddsa = srv.create_key("acme", "EdDSA").await;
    let old_token = srv.token("acme", "u").await;
    let old_kid = str_of(&decode(&old_token).0["kid"]);
    let r = srv
        .post("/v1/tenants/acme/keys/rotate", json!({"alg": "ES256"}))
        .await;
    let new = r.expect(StatusCode::CREATED);
    assert_eq!(
        (new["alg"].clone(), new["status"].clone()),
        (json!("ES256"), json!("active"))
    );
    let new_kid = str_of(&new["kid"]);
    assert_ne!(new_kid, old_kid);
    let list = srv.get("/v1/tenants/acme/keys").await.items();
    assert_eq!(status_of(&list, &old_kid), "retired");
    assert_eq!(status_of(&list, &new_kid), "active");
    // Rotation is per algorithm: the EdDSA key is untouched.
    assert_eq!(status_of(&list, &eddsa), "active");
    // The retired key signs nothing more, but its tokens still verify and it stays published.
    for _ in 0..3 {
        let t = srv.issue("acme", json!({"sub": "u"})).await;
        assert_eq!(t["kid"], new_kid.as_str());
    }
    assert_eq!(srv.reason("acme", &old_token).await, None);
    let published: Vec<Value> = jwks(&srv, "acme")
        .await
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert!(published.contains(&json!(old_kid)), "{published:?}");
    assert!(published.contains(&json!(new_kid)), "{published:?}");
    // Rotating to an unknown algorithm is a 400, and changes nothing.
    let r = srv
        .post("/v1/tenants/acme/keys/rotate", json!({"alg": "XX1"}))
        .await;
    assert_problem(&r, 400);
    assert_eq!(
        status_of(&srv.get("/v1/tenants/acme/keys").await.items(), &new_kid),
        "active"
    );
}

#[tokio::test]
async fn the_newest_eligible_active_key_signs() {
    // Keys created in quick succession (the same second, typically): each new one signs at
    // once, and the list shows it first (newest first), whatever the clock's resolution.
    let srv = Server::start().await;
    let first = str_of(&srv.get("/v1/tenants/default/keys").await.items()[0]["kid"]);
    let mut created = vec![first.clone()];
    for round in 0..5 {
        let kid = srv.create_key("default", "ES256").await;
        let signed_by = srv.issue("default", json!({"sub": "u"})).await["kid"].clone();
        assert_eq!(
            signed_by,
            kid.as_str(),
            "round {round}: not the newest key signs"
        );
        let list = srv.get("/v1/tenants/default/keys").await.items();
        assert_eq!(
            list[0]["kid"],
            kid.as_str(),
            "round {round}: list not newest first"
        );
        created.push(kid);
    }
    let list = srv.get("/v1/tenants/default/keys").await.items();
    let listed: Vec<String> = list.iter().map(|k| str_of(&k["kid"])).collect();
    created.reverse();
    assert_eq!(listed, created, "key list not newest first");
    // Creating keys retires nothing.
    assert_eq!(status_of(&list, &first), "active");
}

#[tokio::test]
async fn a_revoked_key_rejects_its_tokens_at_once_and_leaves_the_jwks() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let old_token = srv.token("acme", "u").await;
    let old_kid = str_of(&decode(&old_token).0["kid"]);
    srv.post("/v1/tenants/acme/keys/rotate", json!({"alg": "ES256"}))
        .await
        .expect(StatusCode::CREATED);
    let new_token = srv.token("acme", "u").await;
    let hs_kid = srv.create_key("acme", "HS256").await;
    let hs_token = str_of(&srv.issue("acme", json!({"sub": "u", "alg": "HS256"})).await["token"]);

    let r = srv
        .post(
            &format!("/v1/tenants/acme/keys/{old_kid}/revoke"),
            json!({"reason": "leaked"}),
        )
        .await;
    let revoked = r.expect(StatusCode::OK);
    assert_eq!(
        (revoked["kid"].clone(), revoked["status"].clone()),
        (json!(old_kid), json!("revoked"))
    );
    assert_eq!(
        srv.reason("acme", &old_token).await.as_deref(),
        Some("key_revoked")
    );
    assert_eq!(
        srv.introspect("acme", &old_token).await,
        json!({"active": false})
    );
    assert!(
        !jwks(&srv, "acme")
            .await
            .iter()
            .any(|k| k["kid"] == old_kid.as_str()),
        "revoked key still published"
    );
    assert_eq!(
        status_of(&srv.get("/v1/tenants/acme/keys").await.items(), &old_kid),
        "revoked"
    );
    // Other keys' tokens are unaffected.
    assert_eq!(srv.reason("acme", &new_token).await, None);
    assert_eq!(srv.reason("acme", &hs_token).await, None);
    // An HMAC key is revoked the same way.
    srv.post(
        &format!("/v1/tenants/acme/keys/{hs_kid}/revoke"),
        json!({"reason": "rotated out"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        srv.reason("acme", &hs_token).await.as_deref(),
        Some("key_revoked")
    );
    // Once no HS256 key is active, issuing HS256 is refused (and says what to do).
    let r = srv
        .post(
            "/v1/tenants/acme/tokens",
            json!({"sub": "u", "alg": "HS256"}),
        )
        .await;
    assert_problem(&r, 409);
    // Unknown kid, and a kid of another tenant: 404.
    let default_kid = str_of(&srv.get("/v1/tenants/default/keys").await.items()[0]["kid"]);
    for kid in ["k_unknown", default_kid.as_str()] {
        let r = srv
            .post(
                &format!("/v1/tenants/acme/keys/{kid}/revoke"),
                json!({"reason": "x"}),
            )
            .await;
        assert_problem(&r, 404);
    }
    assert_eq!(
        srv.reason("default", &srv.token("default", "u").await)
            .await,
        None
    );
}

#[tokio::test]
async fn key_revocation_survives_a_crash() {
    let mut srv = Server::start().await;
    let token = srv.token("default", "u").await;
    let kid = str_of(&decode(&token).0["kid"]);
    srv.create_key("default", "EdDSA").await;
    srv.post(
        &format!("/v1/tenants/default/keys/{kid}/revoke"),
        json!({"reason": "leak"}),
    )
    .await
    .expect(StatusCode::OK);
    srv.crash_and_restart();
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("key_revoked")
    );
    assert!(
        !jwks(&srv, "default")
            .await
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    );
    // Keys were decrypted again after the restart: the remaining key still signs.
    let t = srv
        .issue("default", json!({"sub": "u", "alg": "EdDSA"}))
        .await;
    assert_eq!(srv.reason("default", &str_of(&t["token"])).await, None);
}

#[tokio::test]
async fn audience_bound_keys_sign_for_their_audience_only() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let general = str_of(&srv.get("/v1/tenants/acme/keys").await.items()[0]["kid"]);
    let bound = srv
        .post(
            "/v1/tenants/acme/keys",
            json!({"alg": "ES256", "audience": "billing"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let bound_kid = str_of(&bound["kid"]);
    // Bound to billing: it signs billing tokens even though it is not the only active key...
    let t = srv
        .issue("acme", json!({"sub": "u", "aud": "billing"}))
        .await;
    assert_eq!(t["kid"], bound_kid.as_str());
    // ...and never tokens for another audience, although it is the newest.
    let t = srv
        .issue("acme", json!({"sub": "u", "aud": "reports"}))
        .await;
    assert_eq!(t["kid"], general.as_str());
    assert_eq!(srv.reason("acme", &str_of(&t["token"])).await, None);
}

#[tokio::test]
async fn metadata_follows_rfc8414() {
    let srv = Server::start().await;
    let m = srv
        .get_public("/t/default/.well-known/oauth-authorization-server")
        .await
        .expect(StatusCode::OK);
    let iss = srv.issuer("default");
    assert_eq!(m["issuer"], iss.as_str());
    assert_eq!(m["jwks_uri"], format!("{iss}/.well-known/jwks.json"));
    assert_eq!(m["revocation_endpoint"], format!("{iss}/oauth2/revoke"));
    assert_eq!(
        m["introspection_endpoint"],
        format!("{iss}/oauth2/introspect")
    );
    // The advertised JWKS URI works as advertised.
    let jwks_uri = str_of(&m["jwks_uri"]);
    let path = jwks_uri
        .strip_prefix(&srv.base)
        .expect("jwks_uri on this server");
    assert_eq!(srv.get_public(path).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_public_url_is_the_base_of_issuer_and_endpoints() {
    let srv = Server::start_with(&[("VETO_PUBLIC_URL", "https://auth.example.test")]).await;
    let m = srv
        .get_public("/t/default/.well-known/oauth-authorization-server")
        .await
        .expect(StatusCode::OK);
    assert_eq!(m["issuer"], "https://auth.example.test/t/default");
    assert_eq!(
        m["jwks_uri"],
        "https://auth.example.test/t/default/.well-known/jwks.json"
    );
    let t = srv.token("default", "u").await;
    assert_eq!(decode(&t).1["iss"], "https://auth.example.test/t/default");
    assert_eq!(srv.reason("default", &t).await, None);
}
