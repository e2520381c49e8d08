//! The public documents as off-the-shelf clients and browsers fetch them (issue 12): RFC 8414
//! metadata at the address RFC 8414 §3 derives from the issuer as well as the tenant's own,
//! its contents, HTTP validators (ETag, Last-Modified, 304) and CORS on exactly these routes.
mod common;
use common::*;
use serde_json::{Value, json};

const RFC8414_ADDRESS: &str = "/.well-known/oauth-authorization-server/t/acme";
const TENANT_ADDRESS: &str = "/t/acme/.well-known/oauth-authorization-server";
const JWKS: &str = "/t/acme/.well-known/jwks.json";

async fn get_with(srv: &Server, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = srv.http.get(srv.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    srv.send(path, req).await
}

#[tokio::test]
async fn metadata_is_served_where_rfc_8414_section_3_puts_it_and_at_the_tenant_address() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let derived = srv.get_public(RFC8414_ADDRESS).await.expect(StatusCode::OK);
    let own = srv.get_public(TENANT_ADDRESS).await.expect(StatusCode::OK);
    assert_eq!(derived, own, "the two addresses serve different documents");
    // RFC 8414 §3.3: the issuer in the document is the one the address was derived from.
    assert_eq!(derived["issuer"], json!(srv.issuer("acme")));
    // The address is the issuer's with the well-known segment between host and path.
    let issuer = srv.issuer("acme");
    let path = issuer.strip_prefix(&srv.public_url()).unwrap();
    assert_eq!(
        format!("/.well-known/oauth-authorization-server{path}"),
        RFC8414_ADDRESS
    );
    for unknown in [
        "/.well-known/oauth-authorization-server/t/nope",
        "/t/nope/.well-known/oauth-authorization-server",
    ] {
        assert_problem(&srv.get_public(unknown).await, 404);
    }
}

#[tokio::test]
async fn metadata_publishes_exactly_what_veto_offers() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let m = srv.get_public(RFC8414_ADDRESS).await.expect(StatusCode::OK);
    let iss = srv.issuer("acme");
    assert_eq!(m["jwks_uri"], json!(format!("{iss}/.well-known/jwks.json")));
    assert_eq!(m["token_endpoint"], json!(format!("{iss}/oauth2/token")));
    assert_eq!(
        m["revocation_endpoint"],
        json!(format!("{iss}/oauth2/revoke"))
    );
    assert_eq!(
        m["introspection_endpoint"],
        json!(format!("{iss}/oauth2/introspect"))
    );
    // Without grant_types_supported a client assumes authorization_code and implicit, and then
    // demands an authorization endpoint veto does not have.
    assert_eq!(
        m["grant_types_supported"],
        json!(["refresh_token", "client_credentials"])
    );
    assert!(m.get("authorization_endpoint").is_none(), "{m}");
    assert_eq!(m["response_types_supported"], json!([]));
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "bearer"])
    );
    assert_eq!(
        m["revocation_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "bearer", "none"])
    );
    assert_eq!(
        m["introspection_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "bearer"])
    );
    // These describe JWT client authentication, which veto does not offer.
    for absent in [
        "token_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
    ] {
        assert!(m.get(absent).is_none(), "{absent} in {m}");
    }
    // Every endpoint it names answers (a POST without credentials: 401, not 404).
    for field in [
        "token_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
    ] {
        let url = str_of(&m[field]);
        let r = srv
            .send(field, srv.http.post(&url).form(&[("token", "x")]))
            .await;
        assert_ne!(r.status, StatusCode::NOT_FOUND, "{field} {url}");
    }
    let jwks = srv.send("jwks", srv.http.get(str_of(&m["jwks_uri"]))).await;
    assert_eq!(jwks.status, StatusCode::OK);
}

/// The JWKS and the metadata: a strong ETag and a Last-Modified on every answer, and a 304
/// without a body when `If-None-Match` names the current version.
#[tokio::test]
async fn public_documents_carry_validators_and_answer_304_while_unchanged() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    for path in [JWKS, RFC8414_ADDRESS, TENANT_ADDRESS] {
        let first = srv.get_public(path).await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        let etag = first.header("etag").expect("ETag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
            "{path}: a strong entity tag, got {etag}"
        );
        let modified = first.header("last-modified").expect("Last-Modified");
        assert!(modified.ends_with(" GMT"), "{path}: {modified}");
        assert!(
            first
                .header("cache-control")
                .is_some_and(|c| c.contains("max-age")),
            "{path}"
        );
        for matching in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".into(),
        ] {
            let r = get_with(&srv, path, &[("if-none-match", &matching)]).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_MODIFIED,
                "{path} If-None-Match {matching}"
            );
            assert!(r.text.is_empty(), "{path}: a 304 with a body");
            assert_eq!(r.header("etag"), Some(etag.as_str()), "{path}");
            assert!(r.header("cache-control").is_some(), "{path}");
        }
        let r = get_with(&srv, path, &[("if-none-match", "\"something-else\"")]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.json, first.json, "{path}");
    }
}

#[tokio::test]
async fn a_key_change_changes_the_jwks_etag_and_a_stale_copy_is_refetched() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let before = srv.get_public(JWKS).await;
    let etag = before.header("etag").unwrap().to_owned();
    let kid = srv.create_key("acme", "EdDSA").await;
    let r = get_with(&srv, JWKS, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::OK, "a stale ETag got {}", r.status);
    let new_etag = r.header("etag").unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let kids: Vec<&Value> = r.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(kids.contains(&&json!(kid)), "{}", r.text);
    // Revoking the key takes it out, and the tag moves again.
    srv.post(
        &format!("/v1/tenants/acme/keys/{kid}/revoke"),
        json!({"reason": "test"}),
    )
    .await
    .expect(StatusCode::OK);
    let r = get_with(&srv, JWKS, &[("if-none-match", &new_etag)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains(&kid), "{}", r.text);
    assert_ne!(r.header("etag").unwrap(), new_etag);
}

#[tokio::test]
async fn browsers_may_read_public_documents_from_any_origin() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let origin = "https://app.example";
    for path in [JWKS, RFC8414_ADDRESS, TENANT_ADDRESS] {
        let r = get_with(&srv, path, &[("origin", origin)]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{path}");
        let exposed = r
            .header("access-control-expose-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(exposed.contains("etag"), "{path}: exposes {exposed:?}");
        assert!(
            r.header("access-control-allow-credentials").is_none(),
            "{path}"
        );
        // The preflight a page's fetch() with If-None-Match makes.
        let pre = srv
            .send(
                path,
                srv.http
                    .request(reqwest::Method::OPTIONS, srv.url(path))
                    .header("origin", origin)
                    .header("access-control-request-method", "GET")
                    .header("access-control-request-headers", "if-none-match"),
            )
            .await;
        assert!(pre.status.is_success(), "{path} preflight: {}", pre.status);
        assert_eq!(
            pre.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let methods = pre
            .header("access-control-allow-methods")
            .unwrap_or_default();
        assert!(methods.contains("GET"), "{path}: {methods}");
        assert!(
            pre.header("access-control-allow-headers").is_some(),
            "{path}"
        );
        // An OPTIONS without the preflight headers is not refused either.
        let plain = srv
            .send(
                path,
                srv.http.request(reqwest::Method::OPTIONS, srv.url(path)),
            )
            .await;
        assert!(plain.status.is_success(), "{path}: {}", plain.status);
        // Other methods are still refused as before.
        let post = srv.send(path, srv.http.post(srv.url(path))).await;
        assert_problem(&post, 405);
        // HEAD, the other method a browser may use.
        let head = srv
            .send(path, srv.http.head(srv.url(path)).header("origin", origin))
            .await;
        assert_eq!(head.status, StatusCode::OK, "{path}");
        assert_eq!(head.header("access-control-allow-origin"), Some("*"));
    }
}

#[tokio::test]
async fn credentialed_routes_never_answer_cors() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let token = srv.token("acme", "alice").await;
    let origin = "https://evil.example";
    let requests = [
        (
            "introspect",
            srv.http
                .post(srv.url("/t/acme/oauth2/introspect"))
                .bearer_auth(ADMIN)
                .form(&[("token", token.as_str())]),
        ),
        (
            "verify",
            srv.http
                .post(srv.url("/v1/tenants/acme/tokens/verify"))
                .bearer_auth(ADMIN)
                .json(&json!({"token": token})),
        ),
        (
            "token endpoint",
            srv.http
                .post(srv.url("/t/acme/oauth2/token"))
                .bearer_auth(ADMIN)
                .form(&[("grant_type", "client_credentials")]),
        ),
        (
            "tenant",
            srv.http.get(srv.url("/v1/tenants/acme")).bearer_auth(ADMIN),
        ),
    ];
    for (what, req) in requests {
        let r = srv.send(what, req.header("origin", origin)).await;
        assert!(r.status.is_success(), "{what}: {}", r.text);
        for h in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
        ] {
            assert!(r.header(h).is_none(), "{what} answered {h}");
        }
    }
    for path in [
        "/t/acme/oauth2/introspect",
        "/t/acme/oauth2/revoke",
        "/t/acme/oauth2/token",
        "/v1/tenants/acme/tokens/verify",
    ] {
        let pre = srv
            .send(
                path,
                srv.http
                    .request(reqwest::Method::OPTIONS, srv.url(path))
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "authorization"),
            )
            .await;
        assert!(
            pre.header("access-control-allow-origin").is_none(),
            "{path}: a preflight was allowed"
        );
        assert!(!pre.status.is_success(), "{path}: {}", pre.status);
    }
}

/// Answers about tokens are for the caller alone and only for now.
#[tokio::test]
async fn verify_introspection_and_token_answers_are_never_stored() {
    let srv = Server::start().await;
    let token = srv.token("default", "alice").await;
    let verify = srv
        .post("/v1/tenants/default/tokens/verify", json!({"token": token}))
        .await;
    let introspect = srv
        .send(
            "introspect",
            srv.http
                .post(srv.url("/t/default/oauth2/introspect"))
                .bearer_auth(ADMIN)
                .form(&[("token", token.as_str())]),
        )
        .await;
    let inactive = srv
        .send(
            "introspect garbage",
            srv.http
                .post(srv.url("/t/default/oauth2/introspect"))
                .bearer_auth(ADMIN)
                .form(&[("token", "garbage")]),
        )
        .await;
    let issued = srv
        .post("/v1/tenants/default/tokens", json!({"sub": "alice"}))
        .await;
    let granted = srv
        .send(
            "token",
            srv.http
                .post(srv.url("/t/default/oauth2/token"))
                .bearer_auth(ADMIN)
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    for (what, r) in [
        ("verify", &verify),
        ("introspect", &introspect),
        ("introspect inactive", &inactive),
        ("issue", &issued),
        ("token endpoint", &granted),
    ] {
        assert!(r.status.is_success(), "{what}: {}", r.text);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
    }
    assert_eq!(granted.header("pragma"), Some("no-cache"));
}
