//! RFC 7662 introspection and RFC 7009 revocation.
mod common;
use base64::Engine;
use common::*;
use serde_json::{Value, json};

async fn introspect_as(
    srv: &Server,
    auth: Option<(&str, &str)>,
    body: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = srv
        .http
        .post(srv.url("/t/default/oauth2/introspect"))
        .form(body);
    match auth {
        Some(("bearer", k)) => req = req.bearer_auth(k),
        Some((id, secret)) => {
            // RFC 6749 §2.3.1: each part form-urlencoded, then joined and base64'd.
            let enc = |s: &str| serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned();
            let cred = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(id),
                enc(secret)
            ));
            req = req.header("authorization", format!("Basic {cred}"));
        }
        None => {}
    }
    let resp = req.send().await.unwrap();
    let s = resp.status();
    (s, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn introspection_authenticates_and_answers_rfc7662() {
    let srv = Server::start().await;
    let (id, key) = srv.create_api_key("default", &["tokens:verify"]).await;
    let (_, no_scope) = srv.create_api_key("default", &["tokens:issue"]).await;
    let tok = srv
        .issue(
            "default",
            json!({"sub": "u", "aud": "api", "claims": {"scope": "read write"}}),
        )
        .await;
    let t = tok["token"].as_str().unwrap();
    let (s, v) = introspect_as(
        &srv,
        Some(("bearer", &key)),
        &[("token", t), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["active"], true);
    let (_, c) = decode(t);
    for f in [
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        assert_eq!(v[f], c[f], "{f}");
    }
    assert!(v.get("token_type").is_some());
    let (s, v2) = introspect_as(&srv, Some((&id, &key)), &[("token", t)]).await;
    assert_eq!((s, v2["active"].clone()), (StatusCode::OK, json!(true)));
    // Wrong pairing of id and secret, no credentials, unknown key: 401 in OAuth's shape.
    for auth in [
        Some(("ak_other", key.as_str())),
        None,
        Some(("bearer", "vk_nope")),
    ] {
        let (s, e) = introspect_as(&srv, auth, &[("token", t)]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(e["error"], "invalid_client");
    }
    let (s, _) = introspect_as(&srv, Some(("bearer", &no_scope)), &[("token", t)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = introspect_as(&srv, Some(("bearer", &key)), &[]).await;
    assert_eq!(
        (s, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    let (s, e) = introspect_as(&srv, Some(("bearer", &key)), &[("token", t), ("token", t)]).await;
    assert_eq!(
        (s, e["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );
    // Anything not active is exactly {"active": false}.
    srv.post("/v1/tenants/default/revocations", json!({"token": t}))
        .await;
    let (_, v) = introspect_as(&srv, Some(("bearer", &key)), &[("token", t)]).await;
    assert_eq!(v, json!({"active": false}));
    let (_, v) = introspect_as(&srv, Some(("bearer", &key)), &[("token", "garbage")]).await;
    assert_eq!(v, json!({"active": false}));
}

#[tokio::test]
async fn revocation_endpoint_follows_rfc7009() {
    let srv = Server::start().await;
    let (_, revoker) = srv.create_api_key("default", &["tokens:revoke"]).await;
    // Self-logout: no credentials, the token itself is the proof.
    let mine = srv.token("default", "u").await;
    assert_eq!(
        srv.oauth_revoke("default", &mine, None).await,
        StatusCode::OK
    );
    assert_eq!(
        srv.reason("default", &mine).await.as_deref(),
        Some("revoked")
    );
    // Already revoked, unknown, garbage: still 200.
    for t in [mine.as_str(), "garbage", "a.b.c"] {
        assert_eq!(srv.oauth_revoke("default", t, None).await, StatusCode::OK);
    }
    // A caller with tokens:revoke revokes any token of the tenant.
    let other = srv.token("default", "v").await;
    assert_eq!(
        srv.oauth_revoke("default", &other, Some(&revoker)).await,
        StatusCode::OK
    );
    assert_eq!(
        srv.reason("default", &other).await.as_deref(),
        Some("revoked")
    );
    let resp = srv
        .http
        .post(srv.url("/t/default/oauth2/revoke"))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"], "invalid_request");
    assert!(e["error_description"].as_str().unwrap().contains("token"));
    // An unknown hint is ignored.
    let third = srv.token("default", "w").await;
    let resp = srv
        .http
        .post(srv.url("/t/default/oauth2/revoke"))
        .form(&[("token", third.as_str()), ("token_type_hint", "banana")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "");
    assert_eq!(
        srv.reason("default", &third).await.as_deref(),
        Some("revoked")
    );
    // Bad credentials are 401, not silently treated as none.
    assert_eq!(
        srv.oauth_revoke("default", &third, Some("vk_wrong")).await,
        StatusCode::UNAUTHORIZED
    );
}
