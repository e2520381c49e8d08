//! API keys: creation, listing without secrets, deletion, caller authentication (401), scopes
//! and tenant isolation (403).
mod common;
use common::*;
use serde_json::{Value, json};

/// A JSON array of strings, sorted (the order of scopes carries no meaning).
fn sorted(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(str_of)
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn create_shows_the_secret_once_and_list_never_does() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let created = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "billing backend", "scopes": ["tokens:issue", "tokens:verify"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["name"], "billing backend");
    assert_eq!(
        sorted(&created["scopes"]),
        ["tokens:issue", "tokens:verify"]
    );
    let id = str_of(&created["id"]);
    let secret = str_of(&created["key"]);
    assert!(secret.len() >= 20, "a guessable secret: {secret}");
    assert_ne!(id, secret);

    let list = srv.get("/v1/tenants/acme/api-keys").await;
    assert!(
        !list.text.contains(&secret),
        "secret in list: {}",
        list.text
    );
    let items = list.items();
    assert_eq!(list.json["next_cursor"], json!(null));
    let mine = items
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {}", list.text));
    assert_eq!(mine["name"], "billing backend");
    assert_eq!(sorted(&mine["scopes"]), ["tokens:issue", "tokens:verify"]);
    assert!(mine.get("key").is_none(), "{mine}");
    // Another tenant's list does not show it.
    let other = srv.get("/v1/tenants/default/api-keys").await;
    assert!(!other.text.contains(&id), "{}", other.text);
}

#[tokio::test]
async fn every_contract_scope_can_be_granted_but_not_tenants_manage() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let r = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "all", "scopes": TENANT_SCOPES}),
        )
        .await
        .expect(StatusCode::CREATED);
    let mut want = TENANT_SCOPES.to_vec();
    want.sort();
    assert_eq!(sorted(&r["scopes"]), want);
    let r = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "x", "scopes": ["tenants:manage"]}),
        )
        .await;
    assert_problem_names(&r, 400, "tenants:manage");
    let r = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "x", "scopes": ["tokens:everything"]}),
        )
        .await;
    assert_problem_names(&r, 400, "tokens:everything");
    let r = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "x", "scopes": ["tokens:issue"], "admin": true}),
        )
        .await;
    assert_problem_names(&r, 400, "admin");
    let r = srv
        .post(
            "/v1/tenants/acme/api-keys",
            json!({"name": "x", "scopes": "tokens:issue"}),
        )
        .await;
    assert_problem_names(&r, 400, "scopes");
    // None of the rejected keys was written.
    assert_eq!(srv.get("/v1/tenants/acme/api-keys").await.items().len(), 1);
}

#[tokio::test]
async fn missing_or_unknown_credentials_are_401_with_www_authenticate_bearer() {
    let srv = Server::start().await;
    let (_, real) = srv.create_api_key("default", &["tokens:issue"]).await;
    let url = srv.url("/v1/tenants/default");
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("no header", srv.http.get(&url)),
        (
            "unknown key",
            srv.http
                .get(&url)
                .bearer_auth("vk_not_a_key_of_this_server"),
        ),
        (
            "empty bearer",
            srv.http.get(&url).header("authorization", "Bearer "),
        ),
        (
            "basic scheme",
            srv.http.get(&url).basic_auth("admin", Some(ADMIN)),
        ),
        (
            "no scheme",
            srv.http.get(&url).header("authorization", ADMIN),
        ),
        (
            "real key with a character more",
            srv.http.get(&url).bearer_auth(format!("{real}x")),
        ),
        (
            "real key truncated",
            srv.http.get(&url).bearer_auth(&real[..real.len() - 1]),
        ),
    ];
    for (what, req) in cases {
        let r = srv.send(what, req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert_problem(&r, 401);
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(
            www.starts_with("Bearer"),
            "{what}: WWW-Authenticate {www:?}"
        );
    }
    // The same on a write: nothing happens without credentials.
    let r = srv
        .call(
            "POST",
            "/v1/tenants",
            None,
            Some(json!({"id": "x", "display_name": "x"})),
        )
        .await;
    assert_problem(&r, 401);
    assert_problem(&srv.get("/v1/tenants/x").await, 404);
}

/// `(scopes that may call it, method, path, body, status with such a scope)`.
type Route = (
    &'static [&'static str],
    &'static str,
    String,
    Option<Value>,
    u16,
);

/// A request a key with the right scope may make on tenant `t`, and the status it then gets.
fn scoped_routes(t: &str, token: &str, n: usize) -> Vec<Route> {
    vec![
        (
            &["keys:manage"],
            "POST",
            format!("/v1/tenants/{t}/keys"),
            Some(json!({"alg": "HS256"})),
            201,
        ),
        (
            &["keys:manage"],
            "GET",
            format!("/v1/tenants/{t}/keys"),
            None,
            200,
        ),
        (
            &["keys:manage"],
            "POST",
            format!("/v1/tenants/{t}/keys/rotate"),
            Some(json!({"alg": "EdDSA"})),
            201,
        ),
        (
            &["keys:manage"],
            "GET",
            format!("/v1/tenants/{t}/api-keys"),
            None,
            200,
        ),
        (
            &["keys:manage"],
            "POST",
            format!("/v1/tenants/{t}/api-keys"),
            Some(json!({"name": format!("made-{n}"), "scopes": ["tokens:verify"]})),
            201,
        ),
        (
            &["tokens:issue"],
            "POST",
            format!("/v1/tenants/{t}/tokens"),
            Some(json!({"sub": "someone"})),
            201,
        ),
        (
            &["tokens:issue"],
            "POST",
            format!("/v1/tenants/{t}/tokens/batch"),
            Some(json!({"requests": [{"sub": "someone"}]})),
            200,
        ),
        (
            &["tokens:verify"],
            "POST",
            format!("/v1/tenants/{t}/tokens/verify"),
            Some(json!({"token": token})),
            200,
        ),
        (
            &["tokens:revoke"],
            "POST",
            format!("/v1/tenants/{t}/revocations"),
            Some(json!({"jti": format!("scope-test-{n}")})),
            201,
        ),
        (
            &["tokens:revoke"],
            "POST",
            format!("/v1/tenants/{t}/revocations/batch"),
            Some(json!({"revocations": [{"jti": format!("scope-batch-{n}")}]})),
            200,
        ),
        (
            &["tokens:revoke"],
            "POST",
            format!("/v1/tenants/{t}/subjects/nobody-{n}/revoke-all"),
            Some(json!({"reason": "test"})),
            200,
        ),
        (
            &["tokens:revoke", "audit:read"],
            "GET",
            format!("/v1/tenants/{t}/revocations"),
            None,
            200,
        ),
        (
            &["tokens:revoke", "audit:read"],
            "GET",
            format!("/v1/tenants/{t}/revocations/stats"),
            None,
            200,
        ),
        (
            &["audit:read"],
            "GET",
            format!("/v1/tenants/{t}/audit"),
            None,
            200,
        ),
    ]
}

#[tokio::test]
async fn each_route_needs_its_scope() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let token = srv.token("acme", "someone-else").await;
    let scopes = [
        "keys:manage",
        "tokens:issue",
        "tokens:verify",
        "tokens:revoke",
        "audit:read",
    ];
    let mut keys = Vec::new();
    for s in scopes {
        keys.push((s, srv.create_api_key("acme", &[s]).await.1));
    }
    let mut n = 0;
    for (scope, key) in &keys {
        for (allowed, method, path, body, ok) in scoped_routes("acme", &token, n) {
            n += 1;
            let r = srv.call(method, &path, Some(key), body).await;
            if allowed.contains(scope) {
                assert_eq!(
                    r.status.as_u16(),
                    ok,
                    "{scope} on {method} {path}: {}",
                    r.text
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{scope} on {method} {path}: {}",
                    r.text
                );
                assert_problem(&r, 403);
            }
        }
        // Any key of the tenant reads the tenant.
        let r = srv.call("GET", "/v1/tenants/acme", Some(key), None).await;
        assert_eq!(r.expect(StatusCode::OK)["id"], "acme");
    }
    // The refused writes wrote nothing: only tokens:revoke's own revocations exist.
    let stats = srv
        .get("/v1/tenants/acme/revocations/stats")
        .await
        .expect(StatusCode::OK);
    assert_eq!(stats["revoked"], 2, "{stats}");
}

#[tokio::test]
async fn a_key_of_one_tenant_is_403_on_another() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    srv.create_tenant("globex").await;
    let (_, acme_key) = srv.create_api_key("acme", &TENANT_SCOPES).await;
    let globex_token = srv.token("globex", "g-user").await;
    for (n, (_, method, path, body, _)) in scoped_routes("globex", &globex_token, 0)
        .into_iter()
        .enumerate()
    {
        let r = srv.call(method, &path, Some(&acme_key), body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "#{n} {method} {path}: {}",
            r.text
        );
        assert_problem(&r, 403);
    }
    let r = srv
        .call("GET", "/v1/tenants/globex", Some(&acme_key), None)
        .await;
    assert_problem(&r, 403);
    // Introspection at the other tenant: a valid key outside its tenant is 403 too.
    let req = srv
        .http
        .post(srv.url("/t/globex/oauth2/introspect"))
        .bearer_auth(&acme_key)
        .form(&[("token", globex_token.as_str())]);
    assert_eq!(
        srv.send("introspect", req).await.status,
        StatusCode::FORBIDDEN
    );
    // Nothing happened to globex.
    assert_eq!(srv.reason("globex", &globex_token).await, None);
    let stats = srv
        .get("/v1/tenants/globex/revocations/stats")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (stats["revoked"].clone(), stats["suspended"].clone()),
        (json!(0), json!(0))
    );
}

#[tokio::test]
async fn tenants_do_not_see_each_others_tokens_or_revocations() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    srv.create_tenant("globex").await;
    let acme = srv.issue("acme", json!({"sub": "u", "aud": "api"})).await;
    let token = str_of(&acme["token"]);
    let jti = str_of(&acme["jti"]);
    // acme's token is not a globex token.
    assert!(srv.reason("globex", &token).await.is_some());
    assert_eq!(
        srv.introspect("globex", &token).await,
        json!({"active": false})
    );
    // Revoking its jti at globex neither touches acme's token nor shows up at acme...
    srv.revoke("globex", json!({"jti": jti, "reason": "globex's own"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(srv.reason("acme", &token).await, None);
    assert_problem(
        &srv.get(&format!("/v1/tenants/acme/revocations/{jti}"))
            .await,
        404,
    );
    // ...and acme revoking the same jti creates acme's own record.
    let rec = srv
        .revoke("acme", json!({"jti": jti, "reason": "acme's own"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        (rec["tenant"].clone(), rec["reason"].clone()),
        (json!("acme"), json!("acme's own"))
    );
    assert_eq!(srv.reason("acme", &token).await.as_deref(), Some("revoked"));
    let g = srv
        .get(&format!("/v1/tenants/globex/revocations/{jti}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (g["tenant"].clone(), g["reason"].clone()),
        (json!("globex"), json!("globex's own"))
    );
    // Subject revoke-all at globex does not log acme's user out.
    let acme_u = srv.token("acme", "shared-name").await;
    srv.post(
        "/v1/tenants/globex/subjects/shared-name/revoke-all",
        json!({"reason": "x"}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(srv.reason("acme", &acme_u).await, None);
}

#[tokio::test]
async fn a_deleted_key_stops_working_at_once() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (id, key) = srv.create_api_key("acme", &["tokens:issue"]).await;
    let r = srv
        .call(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&key),
            Some(json!({"sub": "u"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // Only a key of the tenant with keys:manage (or an admin) deletes it.
    let (_, other) = srv.create_api_key("default", &["keys:manage"]).await;
    let r = srv
        .call(
            "DELETE",
            &format!("/v1/tenants/acme/api-keys/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_problem(&r, 403);
    let r = srv.delete(&format!("/v1/tenants/acme/api-keys/{id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(r.text.is_empty(), "204 with a body: {}", r.text);
    let r = srv
        .call(
            "POST",
            "/v1/tenants/acme/tokens",
            Some(&key),
            Some(json!({"sub": "u"})),
        )
        .await;
    assert_problem(&r, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap_or_default()
            .starts_with("Bearer")
    );
    let list = srv.get("/v1/tenants/acme/api-keys").await;
    assert!(!list.text.contains(&id), "{}", list.text);
    assert_problem(
        &srv.delete(&format!("/v1/tenants/acme/api-keys/{id}")).await,
        404,
    );
    assert_problem(
        &srv.delete("/v1/tenants/acme/api-keys/ak_never_existed")
            .await,
        404,
    );
}

#[tokio::test]
async fn deletion_and_keys_survive_a_crash() {
    let mut srv = Server::start().await;
    let (gone_id, gone) = srv.create_api_key("default", &["tokens:issue"]).await;
    let (_, kept) = srv.create_api_key("default", &["tokens:issue"]).await;
    srv.delete(&format!("/v1/tenants/default/api-keys/{gone_id}"))
        .await
        .expect(StatusCode::NO_CONTENT);
    srv.crash_and_restart();
    let body = json!({"sub": "u"});
    let r = srv
        .call(
            "POST",
            "/v1/tenants/default/tokens",
            Some(&kept),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = srv
        .call(
            "POST",
            "/v1/tenants/default/tokens",
            Some(&gone),
            Some(body),
        )
        .await;
    assert_problem(&r, 401);
}

#[tokio::test]
async fn api_key_secrets_are_stored_hashed_and_never_logged() {
    let srv = Server::start_with(&[("VETO_LOG", "trace")]).await;
    let (_, secret) = srv
        .create_api_key("default", &["tokens:issue", "tokens:verify"])
        .await;
    let t = srv
        .call(
            "POST",
            "/v1/tenants/default/tokens",
            Some(&secret),
            Some(json!({"sub": "u"})),
        )
        .await
        .expect(StatusCode::CREATED);
    srv.call(
        "POST",
        "/v1/tenants/default/tokens/verify",
        Some(&secret),
        Some(json!({"token": t["token"]})),
    )
    .await
    .expect(StatusCode::OK);
    assert!(!srv.stderr().contains(&secret), "API key secret in the log");
    // Nothing under the data directory holds the secret in clear (database, WAL, anything).
    let mut stack = vec![srv.data_dir().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "API key secret stored in clear in {}",
                    p.display()
                );
            }
        }
    }
}

/// RFC 6750 §3.1: the challenge says what was wrong with the credential. None presented: a
/// bare `Bearer` challenge (no error code); a key that is not good: `error="invalid_token"`; a
/// known key that may not do this: 403 with `error="insufficient_scope"` and the scope that
/// would allow it, when one scope would.
#[tokio::test]
async fn challenges_say_invalid_token_or_insufficient_scope_as_rfc_6750_does() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let (_, verifier) = srv.create_api_key("default", &["tokens:verify"]).await;
    let (_, foreign) = srv.create_api_key("acme", &["tokens:issue"]).await;
    let www = |r: &Resp| r.header("www-authenticate").unwrap_or_default().to_owned();

    for (what, r) in [
        (
            "no credentials",
            srv.call("GET", "/v1/tenants/default", None, None).await,
        ),
        (
            "another scheme",
            srv.send(
                "basic",
                srv.http
                    .get(srv.url("/v1/tenants/default"))
                    .basic_auth("admin", Some(ADMIN)),
            )
            .await,
        ),
    ] {
        assert_problem(&r, 401);
        assert_eq!(www(&r), "Bearer", "{what}");
    }
    for (what, key) in [("unknown key", "vk_unknown"), ("empty-ish key", "x")] {
        let r = srv
            .call("GET", "/v1/tenants/default", Some(key), None)
            .await;
        assert_problem(&r, 401);
        assert_eq!(www(&r), r#"Bearer error="invalid_token""#, "{what}");
    }
    let cases = [
        (
            "lacks tokens:issue",
            srv.call(
                "POST",
                "/v1/tenants/default/tokens",
                Some(&verifier),
                Some(json!({"sub": "u"})),
            )
            .await,
            r#"Bearer error="insufficient_scope", scope="tokens:issue""#,
        ),
        (
            "another tenant's key",
            srv.call(
                "POST",
                "/v1/tenants/default/tokens",
                Some(&foreign),
                Some(json!({"sub": "u"})),
            )
            .await,
            r#"Bearer error="insufficient_scope", scope="tokens:issue""#,
        ),
        (
            "admin only",
            srv.call(
                "POST",
                "/v1/tenants",
                Some(&verifier),
                Some(json!({"id": "x", "display_name": "x"})),
            )
            .await,
            r#"Bearer error="insufficient_scope", scope="tenants:manage""#,
        ),
        (
            // tokens:revoke or audit:read: alternatives, which RFC 6750's scope cannot say.
            "either of two scopes",
            srv.call(
                "GET",
                "/v1/tenants/default/revocations",
                Some(&verifier),
                None,
            )
            .await,
            r#"Bearer error="insufficient_scope""#,
        ),
    ];
    for (what, r, want) in cases {
        assert_problem(&r, 403);
        assert_eq!(www(&r), want, "{what}");
    }

    // The OAuth endpoints: the same codes, both schemes offered.
    let token = srv.token("default", "u").await;
    let introspect = |key: &str| {
        srv.http
            .post(srv.url("/t/default/oauth2/introspect"))
            .bearer_auth(key)
            .form(&[("token", token.as_str())])
    };
    let r = srv.send("introspect", introspect("vk_unknown")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&r),
        r#"Bearer error="invalid_token", Basic realm="veto""#
    );
    let (_, issuer) = srv.create_api_key("default", &["tokens:issue"]).await;
    let r = srv.send("introspect", introspect(&issuer)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["error"], "insufficient_scope");
    assert_eq!(
        www(&r),
        r#"Bearer error="insufficient_scope", scope="tokens:verify""#
    );
    // A credential that is fine but speaks for a user whose session is not: no challenge,
    // since the caller's own key was good (and the rate limiter must not count it).
    let r = srv
        .post(
            "/v1/tenants/default/sessions/validate",
            json!({"cookie": "ses-nope.k.sig"}),
        )
        .await;
    assert_problem(&r, 401);
    assert!(r.header("www-authenticate").is_none(), "{:?}", r.headers);
}
