//! RFC 8725 attacks: each is rejected with the right reason on verify, is `{"active": false}` on
//! introspection, revokes nothing on oauth2/revoke, and never causes a 5xx.
mod common;
use aws_lc_rs::hmac;
use common::*;
use serde_json::{Value, json};

/// A token with `header` and `claims`, signed with HMAC-SHA256 under `secret`.
fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", b64(tag.as_ref()))
}

fn unsigned(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

async fn assert_rejected(srv: &Server, token: &str, reason: &str) {
    let v = srv.verify("default", token).await;
    assert_eq!(v["active"], false, "{token}");
    assert_eq!(v["reason"], reason, "{token}");
    assert_eq!(
        srv.introspect("default", token).await,
        json!({"active": false})
    );
    // Self-logout with the forged token: 200, and nothing is revoked.
    assert_eq!(
        srv.oauth_revoke("default", token, None).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forged_and_malformed_tokens_are_rejected() {
    let srv = Server::start().await;
    let good = srv.token("default", "victim").await;
    let (header, claims) = decode(&good);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let (_, jwks) = srv
        .send("GET", "/t/default/.well-known/jwks.json", None, None)
        .await;
    let jwk = jwks["keys"][0].clone();

    // alg none, in several spellings, with and without a signature segment.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": kid}).to_string();
        assert_rejected(&srv, &unsigned(&h, &claims), "malformed").await;
    }
    // HMAC keyed with the public key (JWK JSON and the raw x||y bytes), kid of the ES256 key.
    let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    assert_rejected(
        &srv,
        &hs256(&h, &claims, jwk.to_string().as_bytes()),
        "bad_signature",
    )
    .await;
    assert_rejected(
        &srv,
        &hs256(&h, &claims, jwk["x"].as_str().unwrap().as_bytes()),
        "bad_signature",
    )
    .await;
    // alg that does not match the key, with the real signature.
    let parts: Vec<&str> = good.split('.').collect();
    let h = b64(json!({"alg": "ES384", "typ": "at+jwt", "kid": kid})
        .to_string()
        .as_bytes());
    assert_rejected(
        &srv,
        &format!("{h}.{}.{}", parts[1], parts[2]),
        "bad_signature",
    )
    .await;
    // Embedded or remote keys, and crit.
    for extra in [
        json!({"jwk": jwk}),
        json!({"jku": "http://127.0.0.1:9/jwks.json"}),
        json!({"x5u": "http://127.0.0.1:9/cert.pem"}),
        json!({"x5c": ["MIIB"]}),
        json!({"crit": ["exp"]}),
        json!({"crit": "not-an-array"}),
    ] {
        let mut h = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_rejected(&srv, &hs256(&h, &claims, b"attacker"), "malformed").await;
    }
    // Unknown kid; kid injection strings.
    for k in ["nope", "../../etc/passwd", "' OR 1=1 --", ""] {
        let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": k});
        let t = format!(
            "{}.{}.{}",
            b64(h.to_string().as_bytes()),
            parts[1],
            parts[2]
        );
        let want = if k.is_empty() {
            "malformed"
        } else {
            "unknown_key"
        };
        assert_rejected(&srv, &t, want).await;
    }
    // Token-type confusion: typ JWT (an ID token, say) is not an access token.
    let h = b64(json!({"alg": "ES256", "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    assert_rejected(&srv, &format!("{h}.{}.{}", parts[1], parts[2]), "malformed").await;
    // Duplicate members in the header.
    let dup = format!(r#"{{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"{kid}"}}"#);
    assert_rejected(
        &srv,
        &format!("{}.{}.{}", b64(dup.as_bytes()), parts[1], parts[2]),
        "malformed",
    )
    .await;
    // Payload swapped under the real signature (non-numeric exp, different sub).
    let mut evil = claims.clone();
    evil["exp"] = json!("99999999999");
    evil["sub"] = json!("admin");
    let t = format!(
        "{}.{}.{}",
        parts[0],
        b64(evil.to_string().as_bytes()),
        parts[2]
    );
    assert_rejected(&srv, &t, "bad_signature").await;
    // Flipped, truncated, stripped and DER-shaped signatures.
    let sig = parts[2];
    let flipped = format!(
        "{}{}",
        &sig[..sig.len() - 2],
        if sig.ends_with("AA") { "BA" } else { "AA" }
    );
    for s in [flipped.as_str(), &sig[..sig.len() / 2], "", "MEUCIQ"] {
        assert_rejected(
            &srv,
            &format!("{}.{}.{s}", parts[0], parts[1]),
            "bad_signature",
        )
        .await;
    }
    // Shapes that are not a compact JWS at all.
    let jwe = format!("{}.{}.{}.{}.{}", parts[0], "a", "b", "c", "d");
    let oversized = format!("{}.{}.{}", parts[0], "A".repeat(17 * 1024), parts[2]);
    for t in [
        "",
        "a.b",
        "a.b.c.d",
        &jwe,
        &oversized,
        "ey.ey.ey",
        "=.=.=",
        "\u{0}\u{0}",
    ] {
        assert_rejected(&srv, t, "malformed").await;
    }
    // After all that, the real token is still fine: nothing was revoked along the way.
    assert_eq!(srv.reason("default", &good).await, None);
    let (_, stats) = srv.get("/v1/tenants/default/revocations/stats").await;
    assert_eq!(stats["revoked"], 0);
}

#[tokio::test]
async fn a_token_of_another_tenant_is_not_accepted() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let acme = srv.token("acme", "u").await;
    assert_rejected(&srv, &acme, "unknown_key").await;
    assert_eq!(srv.reason("acme", &acme).await, None);
}
