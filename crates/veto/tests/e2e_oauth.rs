//! RFC 7662 introspection and RFC 7009 revocation.
mod common;
use base64::Engine;
use common::*;
use serde_json::json;

#[tokio::test]
async fn introspection_of_an_active_token_answers_rfc7662_fields() {
    let srv = Server::start().await;
    let (issuer_id, issuer) = srv.create_api_key("default", &["tokens:issue"]).await;
    let (_, verifier) = srv.create_api_key("default", &["tokens:verify"]).await;
    let tok = srv
        .call(
            "POST",
            "/v1/tenants/default/tokens",
            Some(&issuer),
            Some(json!({"sub": "user-9", "aud": "api", "ttl_seconds": 900, "claims": {"scope": "read write"}})),
        )
        .await
        .expect(StatusCode::CREATED);
    let t = str_of(&tok["token"]);
    let (_, c) = decode(&t);
    let r = oauth(
        &srv,
        "default",
        "introspect",
        Auth::Bearer(&verifier),
        &[("token", &t), ("token_type_hint", "access_token")],
    )
    .await;
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let v = r.expect(StatusCode::OK);
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], "user-9");
    assert_eq!(v["aud"], "api");
    assert_eq!(v["iss"], srv.issuer("default").as_str());
    assert_eq!(v["exp"], c["exp"]);
    assert_eq!(v["iat"], c["iat"]);
    assert_eq!(v["jti"], c["jti"]);
    assert_eq!(v["scope"], "read write");
    assert_eq!(v["client_id"], issuer_id.as_str());
    assert!(
        v["exp"].is_i64() && v["iat"].is_i64(),
        "NumericDate seconds: {v}"
    );
    assert!(v["token_type"].is_string(), "{v}");
    assert!(
        v.get("nbf").is_none(),
        "nbf only when the token has one: {v}"
    );
    // nbf when the token has one; several audiences stay a list.
    let tok = srv
        .issue(
            "default",
            json!({"sub": "u", "aud": ["a", "b"], "nbf": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let v = oauth(
        &srv,
        "default",
        "introspect",
        Auth::Bearer(&verifier),
        &[("token", tok["token"].as_str().unwrap())],
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(v["nbf"], 1_577_836_800);
    assert_eq!(v["aud"], json!(["a", "b"]));
}

#[tokio::test]
async fn introspection_accepts_http_basic_with_the_key_id_and_secret() {
    let srv = Server::start().await;
    let (id, key) = srv.create_api_key("default", &["tokens:verify"]).await;
    let (other_id, _) = srv.create_api_key("default", &["tokens:verify"]).await;
    let t = srv.token("default", "u").await;
    let v = oauth(
        &srv,
        "default",
        "introspect",
        Auth::Basic(&id, &key),
        &[("token", &t)],
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        (v["active"].clone(), v["sub"].clone()),
        (json!(true), json!("u"))
    );
    // A secret with the wrong id, the wrong secret, a truncated pair: 401 in OAuth's shape.
    for (what, auth) in [
        ("secret of another key's id", Auth::Basic(&other_id, &key)),
        ("wrong secret", Auth::Basic(&id, "wrong")),
        (
            "id only",
            Auth::Raw(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(&id)
            )),
        ),
        ("not base64", Auth::Raw("Basic !!!")),
    ] {
        let r = oauth(&srv, "default", "introspect", auth, &[("token", &t)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_client", "{what}: {}", r.text);
    }
}

#[tokio::test]
async fn introspection_without_credentials_or_scope_is_refused() {
    let srv = Server::start().await;
    let (_, no_scope) = srv
        .create_api_key("default", &["tokens:issue", "tokens:revoke"])
        .await;
    let t = srv.token("default", "u").await;
    for (what, auth) in [
        ("no credentials", Auth::None),
        ("unknown bearer", Auth::Bearer("vk_not_a_key")),
        ("empty bearer", Auth::Raw("Bearer ")),
    ] {
        let r = oauth(&srv, "default", "introspect", auth, &[("token", &t)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_client", "{what}: {}", r.text);
        assert!(
            r.header("www-authenticate").is_some(),
            "{what}: no WWW-Authenticate"
        );
        assert!(
            r.json.get("active").is_none(),
            "{what}: answered the question: {}",
            r.text
        );
    }
    let r = oauth(
        &srv,
        "default",
        "introspect",
        Auth::Bearer(&no_scope),
        &[("token", &t)],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.json.get("active").is_none(), "{}", r.text);
}

#[tokio::test]
async fn anything_not_active_introspects_as_exactly_active_false() {
    let srv = Server::start().await;
    let (_, key) = srv.create_api_key("default", &["tokens:verify"]).await;
    let revoked = srv.token("default", "u").await;
    srv.revoke("default", json!({"token": revoked}))
        .await
        .expect(StatusCode::CREATED);
    let suspended = srv.issue("default", json!({"sub": "u"})).await;
    srv.revoke(
        "default",
        json!({"jti": suspended["jti"], "until": "2099-01-01T00:00:00Z"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let future = srv
        .issue(
            "default",
            json!({"sub": "u", "nbf": "2099-01-01T00:00:00Z"}),
        )
        .await;
    srv.create_tenant("acme").await;
    let foreign = srv.token("acme", "u").await;
    for (what, t) in [
        ("revoked", revoked.as_str()),
        ("suspended", suspended["token"].as_str().unwrap()),
        ("not yet valid", future["token"].as_str().unwrap()),
        ("another tenant's", foreign.as_str()),
        ("garbage", "garbage"),
        ("empty", ""),
        ("three dots", "a.b.c"),
    ] {
        let r = oauth(
            &srv,
            "default",
            "introspect",
            Auth::Bearer(&key),
            &[("token", t)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text);
        assert_eq!(r.json, json!({"active": false}), "{what}: {}", r.text);
    }
}

#[tokio::test]
async fn introspection_request_errors_use_the_oauth_shape() {
    let srv = Server::start().await;
    let t = srv.token("default", "u").await;
    // No token parameter.
    let r = oauth(
        &srv,
        "default",
        "introspect",
        Auth::Bearer(ADMIN),
        &[("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_request");
    assert!(
        r.json["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("token")),
        "{}",
        r.text
    );
    // A JSON body instead of a form.
    let req = srv
        .http
        .post(srv.url("/t/default/oauth2/introspect"))
        .bearer_auth(ADMIN)
        .json(&json!({"token": t}));
    let r = srv.send("json introspect", req).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    // An unknown hint is only a hint.
    let r = oauth(
        &srv,
        "default",
        "introspect",
        Auth::Bearer(ADMIN),
        &[("token", &t), ("token_type_hint", "banana")],
    )
    .await;
    assert_eq!(r.expect(StatusCode::OK)["active"], true);
    // Unknown tenant.
    let r = oauth(
        &srv,
        "nope",
        "introspect",
        Auth::Bearer(ADMIN),
        &[("token", &t)],
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}

#[tokio::test]
async fn self_logout_without_credentials_revokes_the_presented_token() {
    let srv = Server::start().await;
    let mine = srv.token("default", "u").await;
    let sibling = srv.token("default", "u").await;
    let r = srv.oauth_revoke("default", &mine, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.is_empty(),
        "RFC 7009 answers an empty body: {:?}",
        r.text
    );
    assert_eq!(
        srv.reason("default", &mine).await.as_deref(),
        Some("revoked")
    );
    // Only that token: the same user's other session is untouched.
    assert_eq!(srv.reason("default", &sibling).await, None);
    // It is on the ledger like any revocation.
    let jti = str_of(&decode(&mine).1["jti"]);
    let rec = srv
        .get(&format!("/v1/tenants/default/revocations/{jti}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (rec["sub"].clone(), rec["status"].clone()),
        (json!("u"), json!("revoked"))
    );
    // Presenting it again: still 200, nothing changes.
    let r = srv.oauth_revoke("default", &mine, None).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, ""));
    let again = srv
        .get(&format!("/v1/tenants/default/revocations/{jti}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again, rec);
}

#[tokio::test]
async fn revocation_endpoint_answers_200_for_unknown_garbage_and_revoked_tokens() {
    let srv = Server::start().await;
    let (_, revoker) = srv.create_api_key("default", &["tokens:revoke"]).await;
    let t = srv.token("default", "u").await;
    srv.revoke("default", json!({"token": t}))
        .await
        .expect(StatusCode::CREATED);
    srv.create_tenant("acme").await;
    let foreign = srv.token("acme", "u").await;
    for key in [None, Some(revoker.as_str())] {
        for tok in [t.as_str(), "garbage", "a.b.c", "", foreign.as_str()] {
            let r = srv.oauth_revoke("default", tok, key).await;
            assert_eq!(r.status, StatusCode::OK, "{tok:?} with {key:?}: {}", r.text);
            assert!(r.text.is_empty(), "{:?}", r.text);
        }
    }
    // Acme's token, presented at default, was not revoked at acme.
    assert_eq!(srv.reason("acme", &foreign).await, None);
    let stats = srv
        .get("/v1/tenants/default/revocations/stats")
        .await
        .expect(StatusCode::OK);
    assert_eq!(stats["revoked"], 1);
}

#[tokio::test]
async fn a_caller_with_tokens_revoke_revokes_any_token_of_the_tenant() {
    let srv = Server::start().await;
    let (_, revoker) = srv.create_api_key("default", &["tokens:revoke"]).await;
    let (_, verifier) = srv.create_api_key("default", &["tokens:verify"]).await;
    let victim = srv.token("default", "someone").await;
    let r = oauth(
        &srv,
        "default",
        "revoke",
        Auth::Bearer(&revoker),
        &[("token", &victim), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        srv.reason("default", &victim).await.as_deref(),
        Some("revoked")
    );
    // Unknown hints are ignored, the token is still revoked.
    let other = srv.token("default", "other").await;
    let r = oauth(
        &srv,
        "default",
        "revoke",
        Auth::Bearer(&revoker),
        &[("token", &other), ("token_type_hint", "banana")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        srv.reason("default", &other).await.as_deref(),
        Some("revoked")
    );
    // A refresh_token hint on an access token is only a hint too.
    let third = srv.token("default", "third").await;
    let r = oauth(
        &srv,
        "default",
        "revoke",
        Auth::None,
        &[("token", &third), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        srv.reason("default", &third).await.as_deref(),
        Some("revoked")
    );
    // Basic credentials work here too.
    let (id, key) = srv.create_api_key("default", &["tokens:revoke"]).await;
    let fourth = srv.token("default", "fourth").await;
    let r = oauth(
        &srv,
        "default",
        "revoke",
        Auth::Basic(&id, &key),
        &[("token", &fourth)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        srv.reason("default", &fourth).await.as_deref(),
        Some("revoked")
    );
    // A key without tokens:revoke presenting a valid token: it is that token's own logout at
    // most, never a 5xx; the answer is 200 or 403, and a 403 revokes nothing.
    let fifth = srv.token("default", "fifth").await;
    let r = oauth(
        &srv,
        "default",
        "revoke",
        Auth::Bearer(&verifier),
        &[("token", &fifth)],
    )
    .await;
    assert!(
        matches!(r.status.as_u16(), 200 | 403),
        "{}: {}",
        r.status,
        r.text
    );
    if r.status == StatusCode::FORBIDDEN {
        assert_eq!(srv.reason("default", &fifth).await, None);
    }
}

#[tokio::test]
async fn revocation_endpoint_errors_use_the_oauth_shape() {
    let srv = Server::start().await;
    let t = srv.token("default", "u").await;
    for auth in [Auth::None, Auth::Bearer(ADMIN)] {
        let r = oauth(
            &srv,
            "default",
            "revoke",
            auth,
            &[("token_type_hint", "access_token")],
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.json["error"], "invalid_request", "{}", r.text);
        assert!(
            r.json["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("token")),
            "{}",
            r.text
        );
    }
    // Bad credentials are 401, not silently treated as none: nothing is revoked.
    for auth in [Auth::Bearer("vk_wrong"), Auth::Basic("ak_nope", "nope")] {
        let r = oauth(&srv, "default", "revoke", auth, &[("token", &t)]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
        assert_eq!(r.json["error"], "invalid_client", "{}", r.text);
    }
    assert_eq!(srv.reason("default", &t).await, None);
}

#[tokio::test]
async fn self_logout_with_a_forged_token_revokes_nothing() {
    let srv = Server::start().await;
    let victim = srv.token("default", "victim").await;
    let parts: Vec<&str> = victim.split('.').collect();
    // The victim's claims under a broken signature, and under alg none.
    let forged_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&[7u8; 64]));
    let (h, _) = decode(&victim);
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": h["kid"]})
            .to_string()
            .as_bytes()),
        parts[1]
    );
    for t in [forged_sig, none] {
        let r = srv.oauth_revoke("default", &t, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(srv.reason("default", &victim).await, None);
    assert!(
        srv.get("/v1/tenants/default/revocations")
            .await
            .items()
            .is_empty()
    );
}

/// RFC 7662 introspects every token the server issued: a refresh token is active while it can
/// still be used, with `token_type` saying what it is, and inactive once rotated or revoked.
#[tokio::test]
async fn a_refresh_token_introspects_active_while_usable_and_inactive_once_rotated_or_revoked() {
    let srv = Server::start().await;
    let (_, verifier) = srv.create_api_key("default", &["tokens:verify"]).await;
    let (issuer_id, issuer) = srv.create_api_key("default", &["tokens:issue"]).await;
    let first = srv
        .call(
            "POST",
            "/v1/tenants/default/tokens",
            Some(&issuer),
            Some(json!({"sub": "alice", "aud": "api", "token_use": "refresh", "claims": {"scope": "read"}})),
        )
        .await
        .expect(StatusCode::CREATED);
    let r0 = str_of(&first["token"]);
    let (_, claims) = decode(&r0);
    let introspect = async |token: &str, hint: Option<&str>| {
        let mut form = vec![("token", token)];
        if let Some(h) = hint {
            form.push(("token_type_hint", h));
        }
        oauth(
            &srv,
            "default",
            "introspect",
            Auth::Bearer(&verifier),
            &form,
        )
        .await
        .expect(StatusCode::OK)
    };
    for hint in [Some("refresh_token"), Some("access_token"), None] {
        let v = introspect(&r0, hint).await;
        assert_eq!(v["active"], true, "hint {hint:?}: {v}");
        assert_eq!(v["token_type"], "refresh_token", "{v}");
        assert_eq!(v["sub"], "alice");
        assert_eq!(v["aud"], "api");
        assert_eq!(v["iss"], srv.issuer("default").as_str());
        assert_eq!(v["exp"], claims["exp"]);
        assert_eq!(v["jti"], claims["jti"]);
        assert_eq!(v["client_id"], issuer_id.as_str());
        assert_eq!(v["scope"], "read");
    }
    // Access tokens keep introspecting as Bearer.
    let access = srv.token("default", "alice").await;
    assert_eq!(
        introspect(&access, Some("refresh_token")).await["token_type"],
        "Bearer"
    );

    // Rotated: the old one is inactive, the new one active.
    let pair = srv
        .post(
            "/v1/tenants/default/tokens/refresh",
            json!({"refresh_token": r0}),
        )
        .await
        .expect(StatusCode::OK);
    let r1 = str_of(&pair["refresh_token"]);
    assert_eq!(
        introspect(&r0, Some("refresh_token")).await,
        json!({"active": false})
    );
    assert_eq!(introspect(&r1, None).await["active"], true);
    // Introspecting changed nothing: the rotated token is still the current one.
    let pair = srv
        .post(
            "/v1/tenants/default/tokens/refresh",
            json!({"refresh_token": r1}),
        )
        .await
        .expect(StatusCode::OK);
    let r2 = str_of(&pair["refresh_token"]);
    // Revoked (RFC 7009, the family): inactive.
    let r = oauth(
        &srv,
        "default",
        "revoke",
        Auth::None,
        &[("token", &r2), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        introspect(&r2, Some("refresh_token")).await,
        json!({"active": false})
    );
    // Another tenant's refresh token, and a forged one, are not tokens of this tenant.
    srv.create_tenant("acme").await;
    let foreign = srv
        .issue("acme", json!({"sub": "alice", "token_use": "refresh"}))
        .await;
    assert_eq!(
        introspect(&str_of(&foreign["token"]), Some("refresh_token")).await,
        json!({"active": false})
    );
    let fresh = srv
        .issue("default", json!({"sub": "bob", "token_use": "refresh"}))
        .await;
    let fresh = str_of(&fresh["token"]);
    let (head, sig) = fresh.rsplit_once('.').unwrap();
    let c = if sig.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{head}.{c}{}", &sig[1..]);
    assert_eq!(
        introspect(&forged, Some("refresh_token")).await,
        json!({"active": false})
    );
    assert_eq!(introspect(&fresh, None).await["active"], true);
}

#[tokio::test]
async fn an_expired_refresh_token_introspects_inactive() {
    // No leeway, so that a 1-second token is expired 2 seconds later.
    let srv = Server::start_with(&[("VETO_CLOCK_SKEW_SECONDS", "0")]).await;
    let short = srv
        .issue(
            "default",
            json!({"sub": "alice", "token_use": "refresh", "ttl_seconds": 1}),
        )
        .await;
    let long = srv
        .issue("default", json!({"sub": "alice", "token_use": "refresh"}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    for (token, active) in [(&short, false), (&long, true)] {
        let v = oauth(
            &srv,
            "default",
            "introspect",
            Auth::Bearer(ADMIN),
            &[
                ("token", token["token"].as_str().unwrap()),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await
        .expect(StatusCode::OK);
        assert_eq!(v["active"], active, "{v}");
        if !active {
            assert_eq!(v, json!({"active": false}));
        }
    }
}
