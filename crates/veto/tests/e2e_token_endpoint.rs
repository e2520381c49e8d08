//! The RFC 6749 token endpoint, `POST /t/{tenant}/oauth2/token`: the `refresh_token` grant
//! (the same rotation and reuse detection as `/v1/tenants/{tenant}/tokens/refresh`) and the
//! `client_credentials` grant, with RFC 6749 §5.2's error codes and `Cache-Control: no-store`.
mod common;
use common::*;
use serde_json::{Value, json};

async fn token_request(srv: &Server, tenant: &str, auth: Auth<'_>, form: &[(&str, &str)]) -> Resp {
    oauth(srv, tenant, "token", auth, form).await
}

/// An RFC 6749 §5.2 error: status, `error`, a non-empty `error_description`.
#[track_caller]
fn assert_oauth_error(r: &Resp, status: u16, error: &str, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text);
    assert_eq!(r.json["error"], json!(error), "{what}: {}", r.text);
    assert!(
        r.json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: {}",
        r.text
    );
    assert!(r.json.get("access_token").is_none(), "{what}: {}", r.text);
}

/// A successful token answer (RFC 6749 §5.1), its body.
#[track_caller]
fn assert_token_answer(r: &Resp) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json["token_type"], "Bearer", "{}", r.text);
    assert!(
        r.json["expires_in"].as_i64().is_some_and(|s| s > 0),
        "{}",
        r.text
    );
    assert!(r.json["access_token"].is_string(), "{}", r.text);
    r.json.clone()
}

/// A request that is wrong: what, its form, the `error` it must get.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

async fn refresh_token(srv: &Server, tenant: &str, claims: Value) -> String {
    let t = srv
        .issue(
            tenant,
            json!({"sub": "alice", "aud": "api", "token_use": "refresh", "claims": claims}),
        )
        .await;
    str_of(&t["token"])
}

#[tokio::test]
async fn refresh_token_grant_rotates_and_a_reused_token_revokes_the_family() {
    let srv = Server::start().await;
    let (id, secret) = srv.create_api_key("default", &["tokens:issue"]).await;
    let r0 = refresh_token(&srv, "default", json!({"scope": "read write"})).await;

    let first = assert_token_answer(
        &token_request(
            &srv,
            "default",
            Auth::Basic(&id, &secret),
            &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
        )
        .await,
    );
    let r1 = str_of(&first["refresh_token"]);
    assert_ne!(r1, r0);
    assert_eq!(first["scope"], "read write");
    let access = str_of(&first["access_token"]);
    let (header, claims) = decode(&access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "api");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(srv.reason("default", &access).await, None);

    // The next rotation works with the key as Bearer too.
    let second = assert_token_answer(
        &token_request(
            &srv,
            "default",
            Auth::Bearer(&secret),
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await,
    );
    let r2 = str_of(&second["refresh_token"]);

    // r0 was rotated: presenting it again is reuse, and the whole family goes.
    let reuse = token_request(
        &srv,
        "default",
        Auth::Basic(&id, &secret),
        &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
    )
    .await;
    assert_oauth_error(&reuse, 400, "invalid_grant", "reuse");
    assert_eq!(reuse.header("cache-control"), Some("no-store"));
    let after = token_request(
        &srv,
        "default",
        Auth::Basic(&id, &secret),
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_oauth_error(&after, 400, "invalid_grant", "the family's newest token");
    assert!(srv.reason("default", &access).await.is_some());
    assert!(
        srv.reason("default", &str_of(&second["access_token"]))
            .await
            .is_some()
    );
    // The same family through the management route: revoked there as well.
    let r = srv
        .post(
            "/v1/tenants/default/tokens/refresh",
            json!({"refresh_token": r2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn a_token_rotated_by_the_management_route_is_reuse_at_the_token_endpoint() {
    let srv = Server::start().await;
    let r0 = refresh_token(&srv, "default", json!({})).await;
    srv.post(
        "/v1/tenants/default/tokens/refresh",
        json!({"refresh_token": r0}),
    )
    .await
    .expect(StatusCode::OK);
    let r = token_request(
        &srv,
        "default",
        Auth::Bearer(ADMIN),
        &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant", "reuse");
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope_but_never_widen_it() {
    let srv = Server::start().await;
    let r0 = refresh_token(&srv, "default", json!({"scope": "read write"})).await;
    let refresh = async |token: &str, scope: &str| {
        token_request(
            &srv,
            "default",
            Auth::Bearer(ADMIN),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("scope", scope),
            ],
        )
        .await
    };
    // Beyond the grant: refused, and nothing rotated.
    for wider in ["read admin", "admin"] {
        assert_oauth_error(&refresh(&r0, wider).await, 400, "invalid_scope", wider);
    }
    assert_oauth_error(
        &refresh(&r0, "read  write").await,
        400,
        "invalid_scope",
        "two spaces",
    );
    let narrow = assert_token_answer(&refresh(&r0, "read").await);
    assert_eq!(narrow["scope"], "read");
    assert_eq!(decode(&str_of(&narrow["access_token"])).1["scope"], "read");
    // The next refresh token still holds the whole grant.
    let r1 = str_of(&narrow["refresh_token"]);
    assert_eq!(decode(&r1).1["scope"], "read write");
    let all = assert_token_answer(
        &token_request(
            &srv,
            "default",
            Auth::Bearer(ADMIN),
            &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
        )
        .await,
    );
    assert_eq!(all["scope"], "read write");
    // A refresh token granted no scope grants none.
    let bare = refresh_token(&srv, "default", json!({})).await;
    assert_oauth_error(&refresh(&bare, "read").await, 400, "invalid_scope", "bare");
}

#[tokio::test]
async fn client_credentials_issues_an_access_token_for_the_client_itself() {
    let srv = Server::start().await;
    let (id, secret) = srv.create_api_key("default", &["tokens:issue"]).await;
    let r = token_request(
        &srv,
        "default",
        Auth::Basic(&id, &secret),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "reports:read reports:write"),
            ("resource", "https://api.example/reports"),
        ],
    )
    .await;
    let body = assert_token_answer(&r);
    assert_eq!(r.header("pragma"), Some("no-cache"));
    // RFC 6749 §4.4.3: no refresh token for client credentials.
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["scope"], "reports:read reports:write");
    let access = str_of(&body["access_token"]);
    let (header, claims) = decode(&access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], json!(id));
    assert_eq!(claims["client_id"], json!(id));
    assert_eq!(claims["aud"], "https://api.example/reports");
    assert_eq!(claims["scope"], "reports:read reports:write");
    assert_eq!(claims["iss"], json!(srv.issuer("default")));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        body["expires_in"].as_i64().unwrap()
    );
    let v = srv
        .post(
            "/v1/tenants/default/tokens/verify",
            json!({"token": access, "audience": "https://api.example/reports"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(v["active"], true, "{v}");
    let i = srv.introspect("default", &access).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], json!(id));
    assert_eq!(i["scope"], "reports:read reports:write");

    // Bearer works too; several resources make an audience list; no scope, no scope member.
    let r = token_request(
        &srv,
        "default",
        Auth::Bearer(&secret),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://a.example"),
            ("resource", "https://b.example"),
        ],
    )
    .await;
    let body = assert_token_answer(&r);
    assert!(body.get("scope").is_none(), "{body}");
    let claims = decode(&str_of(&body["access_token"])).1;
    assert_eq!(
        claims["aud"],
        json!(["https://a.example", "https://b.example"])
    );
    assert!(claims.get("scope").is_none());
    assert_eq!(claims["sub"], json!(id));
}

#[tokio::test]
async fn token_requests_that_are_wrong_get_rfc_6749_error_codes_and_rotate_nothing() {
    let srv = Server::start().await;
    let r0 = refresh_token(&srv, "default", json!({})).await;
    let access = srv.token("default", "alice").await;
    let (id, _) = srv.create_api_key("default", &["tokens:issue"]).await;
    let cases: Vec<Case> = vec![
        (
            "no grant_type",
            vec![("refresh_token", &r0)],
            "invalid_request",
        ),
        (
            "password grant",
            vec![
                ("grant_type", "password"),
                ("username", "a"),
                ("password", "b"),
            ],
            "unsupported_grant_type",
        ),
        (
            "authorization_code grant",
            vec![("grant_type", "authorization_code"), ("code", "x")],
            "unsupported_grant_type",
        ),
        (
            "no refresh_token",
            vec![("grant_type", "refresh_token")],
            "invalid_request",
        ),
        (
            "empty refresh_token",
            vec![("grant_type", "refresh_token"), ("refresh_token", "")],
            "invalid_request",
        ),
        (
            "garbage refresh_token",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "garbage"),
            ],
            "invalid_grant",
        ),
        (
            "an access token as refresh_token",
            vec![("grant_type", "refresh_token"), ("refresh_token", &access)],
            "invalid_grant",
        ),
        (
            "grant_type twice",
            vec![
                ("grant_type", "refresh_token"),
                ("grant_type", "refresh_token"),
                ("refresh_token", &r0),
            ],
            "invalid_request",
        ),
        (
            "a scope with a quote",
            vec![("grant_type", "client_credentials"), ("scope", "a\"b")],
            "invalid_scope",
        ),
        (
            "an empty scope",
            vec![("grant_type", "client_credentials"), ("scope", "")],
            "invalid_scope",
        ),
        (
            "a relative resource",
            vec![("grant_type", "client_credentials"), ("resource", "/api")],
            "invalid_target",
        ),
        (
            "a resource with a fragment",
            vec![
                ("grant_type", "client_credentials"),
                ("resource", "https://api.example/#x"),
            ],
            "invalid_target",
        ),
        (
            "a resource on a refresh",
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", &r0),
                ("resource", "https://api.example/"),
            ],
            "invalid_target",
        ),
        (
            "another client's client_id",
            vec![("grant_type", "client_credentials"), ("client_id", &id)],
            "invalid_request",
        ),
    ];
    for (what, form, error) in cases {
        let r = token_request(&srv, "default", Auth::Bearer(ADMIN), &form).await;
        assert_oauth_error(&r, 400, error, what);
    }
    // Not a form.
    let r = srv
        .send(
            "json",
            srv.http
                .post(srv.url("/t/default/oauth2/token"))
                .bearer_auth(ADMIN)
                .json(&json!({"grant_type": "client_credentials"})),
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_request", "a JSON body");
    // An unknown tenant, asked by a key that may ask anywhere.
    let r = token_request(
        &srv,
        "nope",
        Auth::Bearer(ADMIN),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_oauth_error(&r, 404, "invalid_request", "unknown tenant");
    // None of that rotated the refresh token.
    assert_token_answer(
        &token_request(
            &srv,
            "default",
            Auth::Bearer(ADMIN),
            &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
        )
        .await,
    );
}

#[tokio::test]
async fn the_token_endpoint_refuses_unauthenticated_and_unauthorised_clients() {
    let srv = Server::start().await;
    srv.create_tenant("other").await;
    let (id, secret) = srv.create_api_key("default", &["tokens:issue"]).await;
    let (weak_id, weak) = srv
        .create_api_key("default", &["tokens:verify", "tokens:revoke"])
        .await;
    let (_, foreign) = srv.create_api_key("other", &["tokens:issue"]).await;
    let r0 = refresh_token(&srv, "default", json!({})).await;
    let grants: [&[(&str, &str)]; 2] = [
        &[("grant_type", "client_credentials")],
        &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
    ];
    for form in grants {
        let what = form[0].1;
        let r = token_request(&srv, "default", Auth::None, form).await;
        assert_oauth_error(&r, 401, "invalid_client", what);
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(www.contains("Basic") && www.contains("Bearer"), "{www}");
        assert!(!www.contains("error="), "no credentials, no error: {www}");

        let r = token_request(&srv, "default", Auth::Basic(&id, "wrong"), form).await;
        assert_oauth_error(&r, 401, "invalid_client", what);
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(www.starts_with("Basic realm="), "{www}");

        let r = token_request(&srv, "default", Auth::Bearer("vk_unknown"), form).await;
        assert_oauth_error(&r, 401, "invalid_client", what);
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(www.starts_with(r#"Bearer error="invalid_token""#), "{www}");

        for (who, auth) in [
            ("without tokens:issue", Auth::Basic(&weak_id, &weak)),
            ("of another tenant", Auth::Bearer(&foreign)),
        ] {
            let r = token_request(&srv, "default", auth, form).await;
            assert_oauth_error(&r, 403, "unauthorized_client", &format!("{what} {who}"));
        }
    }
    // The refresh token was never rotated by any of them.
    assert_token_answer(
        &token_request(
            &srv,
            "default",
            Auth::Basic(&id, &secret),
            &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
        )
        .await,
    );
}

#[tokio::test]
async fn a_suspended_tenant_gets_no_tokens_from_the_token_endpoint() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let r0 = refresh_token(&srv, "acme", json!({})).await;
    srv.post("/v1/tenants/acme/suspend", json!({"reason": "test"}))
        .await
        .expect(StatusCode::OK);
    let r = token_request(
        &srv,
        "acme",
        Auth::Bearer(ADMIN),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request", "client_credentials");
    assert!(r.text.contains("suspended"), "{}", r.text);
    let r = token_request(
        &srv,
        "acme",
        Auth::Bearer(ADMIN),
        &[("grant_type", "refresh_token"), ("refresh_token", &r0)],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant", "refresh_token");
}
