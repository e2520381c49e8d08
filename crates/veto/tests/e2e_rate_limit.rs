//! Rate limiting of unauthenticated and failed-authentication traffic (`VETO_RATE_LIMIT_*`):
//! per client address, 429 with `Retry-After` beyond the burst, and never a caller whose
//! credentials are good.
mod common;
use common::*;
use serde_json::json;

/// A limit tests reach at once and never see refilled: 3 at once, then one a minute.
const TINY: [(&str, &str); 2] = [
    ("VETO_RATE_LIMIT_PER_MINUTE", "1"),
    ("VETO_RATE_LIMIT_BURST", "3"),
];

async fn introspect_as(srv: &Server, key: &str, token: &str) -> Resp {
    let req = srv
        .http
        .post(srv.url("/t/default/oauth2/introspect"))
        .bearer_auth(key)
        .form(&[("token", token)]);
    srv.send("introspect", req).await
}

/// `Retry-After` in whole seconds, within the refill period of one token.
#[track_caller]
fn assert_retry_after(r: &Resp) {
    let secs: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", r.headers))
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
}

#[track_caller]
fn assert_oauth_429(r: &Resp) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(
        r.json["error"],
        json!("temporarily_unavailable"),
        "{}",
        r.text
    );
    assert!(r.json["error_description"].is_string(), "{}", r.text);
    assert_retry_after(r);
}

fn rate_limited(metrics: &str, kind: &str) -> f64 {
    sum_samples(&prometheus_samples(metrics), |n, l| {
        n == "veto_rate_limited_total" && l.iter().any(|(k, v)| k == "kind" && v == kind)
    })
}

#[tokio::test]
async fn bad_credential_introspections_get_429_after_the_burst_while_a_valid_key_keeps_working() {
    let srv = Server::start_with(&TINY).await;
    let token = srv.token("default", "alice").await;
    for _ in 0..3 {
        let r = introspect_as(&srv, "not-a-key", &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let r = introspect_as(&srv, "not-a-key", &token).await;
    assert_oauth_429(&r);

    // The same client with a valid key: answered, again and again (more than the burst).
    for _ in 0..10 {
        assert_eq!(
            srv.introspect("default", &token).await["active"],
            json!(true)
        );
    }

    // The management API answers the same client's missing credentials with a problem.
    let r = srv
        .call("GET", "/v1/tenants/default/api-keys", None, None)
        .await;
    assert_problem(&r, 429);
    assert_eq!(r.json["type"], json!("urn:veto:problem:rate-limited"));
    assert_retry_after(&r);
    assert!(rate_limited(&srv.metrics().await, "auth_failure") >= 2.0);
}

#[tokio::test]
async fn self_logout_floods_get_429_and_the_limited_logout_does_nothing() {
    let srv = Server::start_with(&TINY).await;
    for i in 0..3 {
        let r = srv
            .oauth_revoke("default", &format!("not-a-token-{i}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let token = srv.token("default", "bob").await;
    let r = srv.oauth_revoke("default", &token, None).await;
    assert_oauth_429(&r);
    // Refused before it ran: the token is still active.
    assert_eq!(
        srv.introspect("default", &token).await["active"],
        json!(true)
    );
    // Revocation with a valid key is not limited.
    let r = srv.oauth_revoke("default", &token, Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        srv.introspect("default", &token).await["active"],
        json!(false)
    );
    assert!(rate_limited(&srv.metrics().await, "logout") >= 1.0);
}

#[tokio::test]
async fn a_valid_caller_is_never_limited_not_even_when_refused_for_scope() {
    let srv = Server::start_with(&TINY).await;
    let (_, issuer) = srv.create_api_key("default", &["tokens:issue"]).await;
    let token = srv.token("default", "carol").await;
    for _ in 0..10 {
        let r = srv
            .call(
                "POST",
                "/v1/tenants/default/tokens",
                Some(&issuer),
                Some(json!({"sub": "carol"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(srv.verify("default", &token).await["active"], json!(true));
        // Authenticated but lacking the scope: 403, not an authentication failure.
        let r = introspect_as(&srv, &issuer, &token).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }
    assert_eq!(rate_limited(&srv.metrics().await, "auth_failure"), 0.0);
}

#[tokio::test]
async fn zero_turns_rate_limiting_off() {
    let srv = Server::start_with(&[
        ("VETO_RATE_LIMIT_PER_MINUTE", "0"),
        ("VETO_RATE_LIMIT_BURST", "1"),
    ])
    .await;
    let token = srv.token("default", "dave").await;
    for _ in 0..10 {
        let r = introspect_as(&srv, "not-a-key", &token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
}

#[tokio::test]
async fn openapi_declares_the_429_where_the_limiter_can_answer_it() {
    let srv = Server::start().await;
    let doc = srv.get_public("/openapi.json").await.expect(StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let mut limited = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let public = op["security"] == json!([{}]);
            let declared = &op["responses"]["429"];
            if public {
                assert!(declared.is_null(), "{method} {path}: public, yet a 429");
                continue;
            }
            limited += 1;
            assert!(
                declared["headers"]["Retry-After"].is_object(),
                "{method} {path}: no 429 with Retry-After: {declared}"
            );
            assert_eq!(
                declared["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path}"
            );
        }
    }
    // The two the limiter exists for are among them.
    for (path, method) in [
        ("/t/{tenant}/oauth2/introspect", "post"),
        ("/t/{tenant}/oauth2/revoke", "post"),
    ] {
        assert!(
            paths[path][method]["responses"]["429"].is_object(),
            "{method} {path}"
        );
    }
    assert!(limited > 30, "only {limited} operations take credentials");
}

/// Behind a NAT or a proxy many clients share an address: one client's bad credentials must
/// not get another's genuine logout refused (issue 11, finding 8).
#[tokio::test]
async fn failed_credentials_never_use_up_self_logouts() {
    let srv = Server::start_with(&TINY).await;
    let token = srv.token("default", "erin").await;
    // Someone at the same address exhausts the failure budget, and more.
    for _ in 0..10 {
        let r = introspect_as(&srv, "vk_not-a-key", &token).await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&r.status),
            "{}",
            r.text
        );
    }
    assert!(rate_limited(&srv.metrics().await, "auth_failure") >= 1.0);
    // Erin's logout still goes through, and revokes.
    let r = srv.oauth_revoke("default", &token, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("revoked")
    );
}

/// RFC 6750's `error="invalid_token"` challenge on a bad key, and the token endpoint's 401s,
/// still count as failed authentication; a refused refresh token (a valid client presenting a
/// bad grant) does not.
#[tokio::test]
async fn invalid_token_challenges_and_token_endpoint_failures_are_counted() {
    let srv = Server::start_with(&TINY).await;
    let (_, issuer) = srv.create_api_key("default", &["tokens:issue"]).await;
    for _ in 0..5 {
        let req = srv
            .http
            .post(srv.url("/t/default/oauth2/token"))
            .bearer_auth(&issuer)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "garbage"),
            ]);
        let r = srv.send("token", req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.json["error"], json!("invalid_grant"));
    }
    let r = srv
        .call("GET", "/v1/tenants/default", Some("vk_unknown"), None)
        .await;
    assert_problem(&r, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|w| w.contains(r#"error="invalid_token""#)),
        "{:?}",
        r.headers
    );
    for _ in 0..2 {
        let req = srv
            .http
            .post(srv.url("/t/default/oauth2/token"))
            .bearer_auth("vk_unknown")
            .form(&[("grant_type", "client_credentials")]);
        let r = srv.send("token", req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let req = srv
        .http
        .post(srv.url("/t/default/oauth2/token"))
        .bearer_auth("vk_unknown")
        .form(&[("grant_type", "client_credentials")]);
    assert_oauth_429(&srv.send("token", req).await);
    // The valid client is still served.
    let req = srv
        .http
        .post(srv.url("/t/default/oauth2/token"))
        .bearer_auth(&issuer)
        .form(&[("grant_type", "client_credentials")]);
    let r = srv.send("token", req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
