//! RFC 8725 attacks against the real server. Every forged or broken token is refused with its
//! exact reason on verify, is exactly `{"active": false}` on introspection, gets a 200 from
//! oauth2/revoke without revoking anything, is a `malformed` cookie to session validation, and
//! never causes a 5xx (the harness fails on any). The session cookie's own attacks (forged,
//! injected or confused cookies, hostile request bodies) are at the end.
mod common;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use common::*;
use serde_json::{Value, json};

/// The victim: a genuine token of tenant `default` (ES256) and its parts.
struct Victim {
    token: String,
    claims: Value,
    kid: String,
    /// The public JWK of the signing key, as the JWKS publishes it.
    jwk: Value,
    h64: String,
    p64: String,
    s64: String,
}

async fn victim(srv: &Server) -> Victim {
    let token = str_of(
        &srv.issue("default", json!({"sub": "victim", "aud": "api"}))
            .await["token"],
    );
    let (header, claims) = decode(&token);
    let kid = str_of(&header["kid"]);
    let jwks = srv
        .get_public("/t/default/.well-known/jwks.json")
        .await
        .expect(StatusCode::OK);
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("signing key in the JWKS")
        .clone();
    let parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    Victim {
        token,
        claims,
        kid,
        jwk,
        h64: parts[0].clone(),
        p64: parts[1].clone(),
        s64: parts[2].clone(),
    }
}

fn seg(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// `header.claims` signed with HMAC under `secret` (`alg` picks SHA-256/384/512).
fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!("{}.{}", seg(header), seg(claims));
    let alg = match header["alg"].as_str() {
        Some("HS384") => hmac::HMAC_SHA384,
        Some("HS512") => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    let tag = hmac::sign(&hmac::Key::new(alg, secret), input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An attacker's own P-256 key: its public JWK and a signer.
struct Attacker {
    pair: EcdsaKeyPair,
    jwk: Value,
}

fn attacker() -> Attacker {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    Attacker { pair, jwk }
}

impl Attacker {
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", seg(header), seg(claims));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

const VALIDATE: &str = "/v1/tenants/default/sessions/validate";

/// The `reason` of session validation's answer for `cookie`, asserting it is a 401.
async fn cookie_rejection(srv: &Server, what: &str, cookie: &str) -> String {
    let r = srv.post(VALIDATE, json!({"cookie": cookie})).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "{what}: session validate ACCEPTED or misanswered: {}",
        r.text
    );
    str_of(&r.json["reason"])
}

/// Refused with `reason` on verify; `{"active": false}` on introspection; self-logout with it
/// answers 200 (and, checked at the end of each test, revokes nothing); as a session cookie, it
/// is `malformed` (a JWT, forged or genuine, is never a session cookie).
async fn assert_rejected(srv: &Server, what: &str, token: &str, reason: &str) {
    let v = srv.verify("default", token).await;
    assert_eq!(v["active"], false, "{what}: ACCEPTED: {token}");
    assert_eq!(v["reason"], reason, "{what}: {token}");
    assert_eq!(
        srv.introspect("default", token).await,
        json!({"active": false}),
        "{what}: introspection"
    );
    let r = srv.oauth_revoke("default", token, None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{what}: oauth2/revoke: {}",
        r.text
    );
    assert_eq!(cookie_rejection(srv, what, token).await, "malformed");
}

/// After the attacks: the victim's token is still fine and nothing was revoked.
async fn assert_nothing_revoked(srv: &Server, v: &Victim) {
    assert_eq!(
        srv.reason("default", &v.token).await,
        None,
        "the victim's token was revoked"
    );
    let stats = srv
        .get("/v1/tenants/default/revocations/stats")
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (stats["revoked"].clone(), stats["suspended"].clone()),
        (json!(0), json!(0)),
        "{stats}"
    );
    let list = srv.get("/v1/tenants/default/revocations").await.items();
    assert!(list.is_empty(), "{list:?}");
}

#[tokio::test]
async fn alg_none_in_any_spelling_is_malformed() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    for alg in ["none", "None", "NONE", "nOnE", "none ", " none"] {
        let h = seg(&json!({"alg": alg, "typ": "at+jwt", "kid": v.kid}));
        // Empty signature, the victim's real signature, and no third segment at all.
        for t in [
            format!("{h}.{}.", v.p64),
            format!("{h}.{}.{}", v.p64, v.s64),
            format!("{h}.{}", v.p64),
        ] {
            assert_rejected(&srv, &format!("alg {alg:?}"), &t, "malformed").await;
        }
    }
    // No alg at all, alg null or not a string.
    for h in [
        json!({"typ": "at+jwt", "kid": v.kid}),
        json!({"alg": null, "typ": "at+jwt", "kid": v.kid}),
        json!({"alg": ["ES256"], "typ": "at+jwt", "kid": v.kid}),
    ] {
        let t = format!("{}.{}.{}", seg(&h), v.p64, v.s64);
        assert_rejected(&srv, &h.to_string(), &t, "malformed").await;
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    // The key confusion attack: the attacker takes the ES256 key's public key in some form, uses
    // it as an HMAC secret, and names the ES256 key's kid. The key is pinned to ES256.
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let x = b64_decode(&str_of(&v.jwk["x"]));
    let y = b64_decode(&str_of(&v.jwk["y"]));
    let mut point = vec![4u8];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // SubjectPublicKeyInfo DER of a P-256 key, then PEM with and without the final newline.
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(&point);
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let jwks = srv
        .get_public("/t/default/.well-known/jwks.json")
        .await
        .text;
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("JWK JSON", v.jwk.to_string().into_bytes()),
        ("JWKS document", jwks.into_bytes()),
        ("x coordinate (base64url)", str_of(&v.jwk["x"]).into_bytes()),
        ("uncompressed point", point.clone()),
        ("SPKI DER", der.clone()),
        ("PEM", pem.clone().into_bytes()),
        (
            "PEM without final newline",
            pem.trim_end().as_bytes().to_vec(),
        ),
    ];
    for alg in ["HS256", "HS384", "HS512"] {
        for (form, secret) in &secrets {
            let h = json!({"alg": alg, "typ": "at+jwt", "kid": v.kid});
            let t = hmac_token(&h, &v.claims, secret);
            assert_rejected(
                &srv,
                &format!("{alg} keyed with the {form}"),
                &t,
                "bad_signature",
            )
            .await;
        }
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn an_alg_that_is_not_the_keys_is_refused() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    // The real signature under a header naming another algorithm.
    for alg in ["ES384", "RS256", "PS256", "EdDSA", "HS256"] {
        let h = seg(&json!({"alg": alg, "typ": "at+jwt", "kid": v.kid}));
        let t = format!("{h}.{}.{}", v.p64, v.s64);
        assert_rejected(
            &srv,
            &format!("alg {alg} on an ES256 key"),
            &t,
            "bad_signature",
        )
        .await;
    }
    // Algorithms veto does not know at all: the header itself is bad.
    for alg in ["ES512", "HS1", "RSA-OAEP", "es256", "ED25519"] {
        let h = seg(&json!({"alg": alg, "typ": "at+jwt", "kid": v.kid}));
        let t = format!("{h}.{}.{}", v.p64, v.s64);
        assert_rejected(&srv, &format!("unknown alg {alg}"), &t, "malformed").await;
    }
    // An ES256 header naming the tenant's HMAC key, signed by the attacker.
    let hs_kid = srv.create_key("default", "HS256").await;
    let a = attacker();
    let t = a.sign(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": hs_kid}),
        &v.claims,
    );
    assert_rejected(&srv, "ES256 on an HS256 key", &t, "bad_signature").await;
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn embedded_keys_and_key_urls_are_refused() {
    // The attacker signs with its own key and tells the verifier where to find it.
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let a = attacker();
    // Where the key URLs point: a listener nobody may connect to (RFC 8725 §3.10: a verifier
    // that fetches attacker-named URLs is a server-side request forgery tool).
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let at = trap.local_addr().unwrap();
    let mut with_kid = Vec::new();
    for extra in [
        json!({"jwk": a.jwk}),
        json!({"jwk": v.jwk}),
        json!({"jku": format!("http://{at}/jwks.json")}),
        json!({"x5u": format!("http://{at}/cert.pem")}),
        json!({"jku": format!("https://{at}/jwks.json"), "kid": "attacker-key"}),
        json!({"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
        json!({"x5c": []}),
    ] {
        with_kid.push(extra);
    }
    for extra in with_kid {
        for kid in [Some(v.kid.as_str()), Some("attacker-key"), None] {
            let mut h = json!({"alg": "ES256", "typ": "at+jwt"});
            if let Some(k) = kid {
                h["kid"] = json!(k);
            }
            h.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let t = a.sign(&h, &v.claims);
            assert_rejected(&srv, &h.to_string(), &t, "malformed").await;
        }
    }
    match trap.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("veto connected to a key URL from a token header: {other:?}"),
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn unknown_or_invalid_crit_is_refused() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let a = attacker();
    for crit in [
        json!({"crit": ["exp"]}),
        json!({"crit": ["urn:example:unknown"], "urn:example:unknown": true}),
        json!({"crit": ["b64"], "b64": false}),
        json!({"crit": []}),
        json!({"crit": "not-an-array"}),
        json!({"crit": null}),
    ] {
        let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": v.kid});
        h.as_object_mut()
            .unwrap()
            .extend(crit.as_object().unwrap().clone());
        // Under the real signature (header swapped) and signed by an attacker.
        let swapped = format!("{}.{}.{}", seg(&h), v.p64, v.s64);
        assert_rejected(&srv, &crit.to_string(), &swapped, "malformed").await;
        assert_rejected(&srv, &crit.to_string(), &a.sign(&h, &v.claims), "malformed").await;
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn kid_and_typ_tricks_are_refused() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    // Unknown kids, including injection attempts: the key is simply not known.
    for kid in [
        "nope",
        "../../etc/passwd",
        "' OR 1=1 --",
        "default",
        "*",
        "%00",
    ] {
        let h = seg(&json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}));
        let t = format!("{h}.{}.{}", v.p64, v.s64);
        assert_rejected(&srv, &format!("kid {kid:?}"), &t, "unknown_key").await;
    }
    // No usable kid: the header does not name a key.
    for h in [
        json!({"alg": "ES256", "typ": "at+jwt"}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": ""}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": 7}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": null}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": [v.kid]}),
    ] {
        let t = format!("{}.{}.{}", seg(&h), v.p64, v.s64);
        assert_rejected(&srv, &h.to_string(), &t, "malformed").await;
    }
    // Token-type confusion (RFC 8725 §3.11): a JWT that is not an access token.
    for h in [
        json!({"alg": "ES256", "typ": "JWT", "kid": v.kid}),
        json!({"alg": "ES256", "typ": "id_token+jwt", "kid": v.kid}),
        json!({"alg": "ES256", "kid": v.kid}),
    ] {
        let t = format!("{}.{}.{}", seg(&h), v.p64, v.s64);
        assert_rejected(&srv, &h.to_string(), &t, "malformed").await;
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn duplicate_json_members_are_refused() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    // In the header: which `alg` would a lenient parser pick?
    for dup in [
        format!(
            r#"{{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"{}"}}"#,
            v.kid
        ),
        format!(
            r#"{{"alg":"none","alg":"ES256","typ":"at+jwt","kid":"{}"}}"#,
            v.kid
        ),
        format!(
            r#"{{"alg":"ES256","typ":"at+jwt","kid":"{0}","kid":"{0}"}}"#,
            v.kid
        ),
    ] {
        let t = format!("{}.{}.{}", b64(dup.as_bytes()), v.p64, v.s64);
        assert_rejected(&srv, &dup, &t, "malformed").await;
    }
    // In the payload, under the victim's signature: the signature no longer matches.
    let claims = v.claims.to_string();
    let dup = format!(r#"{},"sub":"admin"}}"#, claims.trim_end_matches('}'));
    let t = format!("{}.{}.{}", v.h64, b64(dup.as_bytes()), v.s64);
    assert_rejected(&srv, "duplicate sub in the payload", &t, "bad_signature").await;
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn tampered_payloads_fail_the_signature() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut c = v.claims.clone();
    c["sub"] = json!("admin");
    cases.push(("sub changed", c));
    let mut c = v.claims.clone();
    c["exp"] = json!(v.claims["exp"].as_i64().unwrap() + 86_400 * 365);
    cases.push(("exp extended", c));
    let mut c = v.claims.clone();
    c["exp"] = json!("99999999999");
    cases.push(("non-numeric exp", c));
    let mut c = v.claims.clone();
    c["exp"] = json!(1e300);
    cases.push(("huge exp", c));
    let mut c = v.claims.clone();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", c));
    let mut c = v.claims.clone();
    c["aud"] = json!(["api", "admin"]);
    cases.push(("aud widened", c));
    for (what, claims) in cases {
        let t = format!("{}.{}.{}", v.h64, seg(&claims), v.s64);
        assert_rejected(&srv, what, &t, "bad_signature").await;
    }
    // The victim's header and signature over another genuine token's payload.
    let other = srv.token("default", "other").await;
    let t = format!("{}.{}.{}", v.h64, other.split('.').nth(1).unwrap(), v.s64);
    assert_rejected(&srv, "payload of another token", &t, "bad_signature").await;
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn broken_signatures_are_bad_signatures() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let sig = b64_decode(&v.s64);
    assert_eq!(sig.len(), 64, "ES256 signatures are r||s, 64 bytes");
    let mut flipped = sig.clone();
    flipped[10] ^= 0x01;
    let mut flipped_last = sig.clone();
    flipped_last[63] ^= 0x80;
    // The same signature DER-encoded (what some libraries wrongly emit).
    let der_int = |b: &[u8]| {
        let mut v: Vec<u8> = b.iter().copied().skip_while(|&x| x == 0).collect();
        if v.first().is_some_and(|&x| x & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let mut der_body = der_int(&sig[..32]);
    der_body.extend(der_int(&sig[32..]));
    let mut der = vec![0x30, der_body.len() as u8];
    der.extend(der_body);
    // r and s swapped; all zero; the group order's worth of 0xff.
    let mut swapped = sig[32..].to_vec();
    swapped.extend_from_slice(&sig[..32]);
    for (what, s) in [
        ("one bit flipped", b64(&flipped)),
        ("last bit flipped", b64(&flipped_last)),
        ("truncated to half", b64(&sig[..32])),
        ("one byte short", b64(&sig[..63])),
        ("one byte long", b64(&[&sig[..], &[0]].concat())),
        ("empty", String::new()),
        ("DER-encoded", b64(&der)),
        ("r and s swapped", b64(&swapped)),
        ("all zeros", b64(&[0u8; 64])),
        ("all ones", b64(&[0xffu8; 64])),
    ] {
        let t = format!("{}.{}.{s}", v.h64, v.p64);
        assert_rejected(&srv, what, &t, "bad_signature").await;
    }
    // A genuine token of the same key whose signature is grafted onto the victim.
    let other = srv.token("default", "other").await;
    let t = format!("{}.{}.{}", v.h64, v.p64, other.rsplit('.').next().unwrap());
    assert_rejected(&srv, "another token's signature", &t, "bad_signature").await;
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn shapes_that_are_not_a_compact_jws_are_malformed() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let jwe_header = seg(&json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": v.kid}));
    let jwe = format!(
        "{jwe_header}.{}.{}.{}.{}",
        b64(&[1; 256]),
        b64(&[2; 12]),
        b64(b"ciphertext"),
        b64(&[3; 16])
    );
    let not_json = format!("{}.{}.{}", b64(b"not json"), v.p64, v.s64);
    let array_header = format!("{}.{}.{}", b64(b"[\"ES256\"]"), v.p64, v.s64);
    let padded = format!("{}==.{}.{}", v.h64, v.p64, v.s64);
    let std_b64 = format!("{}.{}+/.{}", v.h64, v.p64, v.s64);
    let bearer = format!("Bearer {}", v.token);
    let spaced = format!(" {} ", v.token);
    let payload_not_b64 = format!("{}.{}!.{}", v.h64, v.p64, v.s64);
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("one segment", v.h64.clone()),
        ("two segments", format!("{}.{}", v.h64, v.p64)),
        ("four segments", format!("{}.x", v.token)),
        ("JWE (five segments)", jwe),
        ("empty segments", "..".into()),
        ("header not JSON", not_json),
        ("header a JSON array", array_header),
        ("padded base64", padded),
        ("standard base64 alphabet", std_b64),
        ("payload not base64", payload_not_b64),
        ("Bearer prefix", bearer),
        ("surrounding spaces", spaced),
        ("NUL bytes", "\u{0}.\u{0}.\u{0}".into()),
        ("non-ASCII", "é.é.é".into()),
        ("dots only", ".....".into()),
    ];
    for (what, t) in cases {
        assert_rejected(&srv, what, &t, "malformed").await;
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn a_signature_segment_that_is_not_base64url_is_malformed() {
    // RFC 7515 §7.1: every segment of the compact serialization is base64url. A third segment
    // outside that alphabet is not a JWS at all, exactly like such a header or payload (which
    // `shapes_that_are_not_a_compact_jws_are_malformed` checks): `malformed`, not a signature
    // that happens to be wrong.
    let srv = Server::start().await;
    let v = victim(&srv).await;
    for (what, sig) in [
        ("trailing newline", format!("{}\n", v.s64)),
        ("trailing space", format!("{} ", v.s64)),
        (
            "standard base64 alphabet",
            format!("{}+/", &v.s64[..v.s64.len() - 2]),
        ),
        ("padding", format!("{}==", &v.s64[..v.s64.len() - 2])),
        ("punctuation", "!!!!".to_owned()),
    ] {
        let t = format!("{}.{}.{sig}", v.h64, v.p64);
        assert_rejected(&srv, what, &t, "malformed").await;
    }
    assert_nothing_revoked(&srv, &v).await;
}

/// A forged token (the victim's header and signature around a padded payload) of exactly `len`
/// bytes.
fn token_of_length(v: &Victim, len: usize) -> String {
    let room = len - v.h64.len() - v.s64.len() - 2;
    assert_ne!(room % 4, 1, "no base64url string has length {room}");
    let n = room * 3 / 4; // bytes that encode to exactly `room` characters
    let prefix = r#"{"sub":"victim","pad":""#;
    let suffix = r#""}"#;
    let fill = "a".repeat(n - prefix.len() - suffix.len());
    let payload = b64(format!("{prefix}{fill}{suffix}").as_bytes());
    assert_eq!(payload.len(), room);
    let t = format!("{}.{payload}.{}", v.h64, v.s64);
    assert_eq!(t.len(), len);
    t
}

#[tokio::test]
async fn tokens_longer_than_16_kib_are_malformed_without_parsing() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    // Pick lengths around the limit that a base64url payload can fill exactly.
    let fits = |len: usize| (len - v.h64.len() - v.s64.len() - 2) % 4 != 1;
    let at_limit = (16 * 1024 - 3..=16 * 1024)
        .rev()
        .find(|&l| fits(l))
        .unwrap();
    let over = (16 * 1024 + 1..16 * 1024 + 5).find(|&l| fits(l)).unwrap();
    // Up to the limit the token is read (and its signature found wrong)...
    assert_rejected(
        &srv,
        "at the limit",
        &token_of_length(&v, at_limit),
        "bad_signature",
    )
    .await;
    // ...beyond it, it is malformed whatever it holds.
    assert_rejected(
        &srv,
        "just over the limit",
        &token_of_length(&v, over),
        "malformed",
    )
    .await;
    let t17 = token_of_length(&v, 17 * 1024);
    assert_rejected(&srv, "17 KiB", &t17, "malformed").await;
    // A valid-looking 17 KiB header is no different.
    let big_header =
        seg(&json!({"alg": "ES256", "typ": "at+jwt", "kid": v.kid, "x": "a".repeat(17 * 1024)}));
    assert_rejected(
        &srv,
        "17 KiB header",
        &format!("{big_header}.{}.{}", v.p64, v.s64),
        "malformed",
    )
    .await;
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn request_bodies_over_1_mib_are_413() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let huge = format!("{}.{}.{}", v.h64, "A".repeat(1024 * 1024 + 16), v.s64);
    let r = srv
        .post("/v1/tenants/default/tokens/verify", json!({"token": huge}))
        .await;
    assert_problem(&r, 413);
    let r = srv.revoke("default", json!({"token": huge})).await;
    assert_problem(&r, 413);
    assert_problem(&srv.post(VALIDATE, json!({"cookie": huge})).await, 413);
    for endpoint in ["introspect", "revoke"] {
        let req = client()
            .post(srv.url(&format!("/t/default/oauth2/{endpoint}")))
            .bearer_auth(ADMIN)
            .form(&[("token", huge.as_str())]);
        let r = srv.send(endpoint, req).await;
        assert_eq!(
            r.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{endpoint}: {}",
            r.text
        );
    }
    // Just under the limit is a question like any other.
    let under = format!("{}.{}.{}", v.h64, "A".repeat(1000 * 1024), v.s64);
    let r = srv
        .post("/v1/tenants/default/tokens/verify", json!({"token": under}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(verdict(r), json!({"active": false, "reason": "malformed"}));
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn forged_tokens_cannot_revoke_someone_else() {
    // Self-logout needs a valid signature: a forged token that names the victim's jti (or
    // subject) must not revoke the victim's token, whatever it claims.
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let a = attacker();
    let forged = [
        hmac_token(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": v.kid}),
            &v.claims,
            b"guess",
        ),
        a.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": v.kid}),
            &v.claims,
        ),
        a.sign(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": v.kid, "jwk": a.jwk}),
            &v.claims,
        ),
        format!(
            "{}.{}.",
            seg(&json!({"alg": "none", "typ": "at+jwt", "kid": v.kid})),
            v.p64
        ),
    ];
    for t in &forged {
        for hint in [None, Some("access_token"), Some("refresh_token")] {
            let mut form = vec![("token", t.as_str())];
            if let Some(h) = hint {
                form.push(("token_type_hint", h));
            }
            let req = srv
                .http
                .post(srv.url("/t/default/oauth2/revoke"))
                .form(&form);
            let r = srv.send("oauth2/revoke", req).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    }
    // And through the management API (with credentials): a forged token is not a token.
    for t in &forged {
        let r = srv.revoke("default", json!({"token": t})).await;
        assert_problem(&r, 400);
    }
    assert_nothing_revoked(&srv, &v).await;
}

#[tokio::test]
async fn random_bytes_never_break_the_server() {
    // A small random fuzz over the verify and OAuth endpoints: never active, never a 5xx.
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let rng = rand::SystemRandom::new();
    for i in 0..40 {
        let mut buf = vec![0u8; 16 + i * 7];
        rand::SecureRandom::fill(&rng, &mut buf).unwrap();
        let t = match i % 4 {
            0 => b64(&buf),
            1 => format!("{}.{}.{}", v.h64, b64(&buf), v.s64),
            2 => format!("{}.{}.{}", b64(&buf), v.p64, v.s64),
            _ => String::from_utf8_lossy(&buf).into_owned(),
        };
        let r = srv.verify("default", &t).await;
        assert_eq!(r["active"], false, "{t:?}");
        assert_eq!(
            srv.introspect("default", &t).await,
            json!({"active": false})
        );
        assert_eq!(
            srv.oauth_revoke("default", &t, None).await.status,
            StatusCode::OK
        );
        cookie_rejection(&srv, &format!("{t:?}"), &t).await;
    }
    assert_nothing_revoked(&srv, &v).await;
}

/// A genuine session of `default`: `(id, cookie, csrf_token)`.
async fn genuine_session(srv: &Server) -> (String, String, String) {
    let s = srv
        .post(
            "/v1/tenants/default/sessions",
            json!({"actor_id": "victim", "actor_type": "user"}),
        )
        .await
        .expect(StatusCode::CREATED);
    (
        str_of(&s["session"]["id"]),
        str_of(&s["cookie"]),
        str_of(&s["csrf_token"]),
    )
}

/// POSTs `body` as is (JSON content type) to session validation.
async fn validate_raw(srv: &Server, body: String) -> Resp {
    let req = client()
        .post(srv.url(VALIDATE))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(body);
    srv.send("sessions/validate", req).await
}

#[tokio::test]
async fn forged_and_confused_session_cookies_are_refused() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let (id, cookie, _) = genuine_session(&srv).await;
    let parts: Vec<&str> = cookie.split('.').collect();
    let (version, kid) = (parts[0], parts[1]);
    // Kid injection in the cookie's key slot: a kid is base64url, at most 64 bytes; anything
    // else is not a cookie, and a well-formed kid the tenant does not have is unknown.
    for (bad_kid, reason) in [
        ("nope", "unknown_key"),
        ("default", "unknown_key"),
        ("../../etc/passwd", "malformed"),
        ("' OR 1=1 --", "malformed"),
        ("*", "malformed"),
        ("%00", "malformed"),
        ("k_\u{0}", "malformed"),
        (&"k".repeat(65), "malformed"),
    ] {
        let c = format!("{version}.{bad_kid}.{id}.{}", parts[3]);
        assert_eq!(
            cookie_rejection(&srv, &format!("kid {bad_kid:?}"), &c).await,
            reason,
            "kid {bad_kid:?}"
        );
    }
    // Signed by the attacker's own HMAC key under the tenant's real kid, for the real id.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"attacker's own secret, 32 bytes!");
    let tag = hmac::sign(&key, format!("{version}.{kid}.{id}").as_bytes());
    let forged = format!("{version}.{kid}.{id}.{}", b64(tag.as_ref()));
    assert_eq!(
        cookie_rejection(&srv, "attacker-signed", &forged).await,
        "bad_signature"
    );
    // An "unsigned" variant, the cookie's alg none.
    for c in [
        format!("none.{kid}.{id}."),
        format!("{version}.{kid}.{id}."),
        format!("{version}.{kid}.{id}"),
    ] {
        assert_eq!(cookie_rejection(&srv, &c, &c).await, "malformed", "{c}");
    }
    // Token-type confusion the other way: a genuine access token is not a session cookie.
    assert_eq!(
        cookie_rejection(&srv, "access token", &v.token).await,
        "malformed"
    );
    // After all that, the genuine cookie works and the session was not touched by any of it.
    let ok = srv
        .post(VALIDATE, json!({"cookie": cookie, "touch": false}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(ok["session"]["revoked_at"], Value::Null);
}

#[tokio::test]
async fn hostile_session_validation_bodies_are_400_and_change_nothing() {
    let srv = Server::start().await;
    let (id, cookie, csrf) = genuine_session(&srv).await;
    let nested = format!(
        "{{\"cookie\": {}\"x\"{}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    for (what, body) in [
        // Which member would a lenient parser pick? Neither: the body is refused.
        (
            "duplicate cookie",
            format!(r#"{{"cookie":"{cookie}","cookie":"garbage"}}"#),
        ),
        (
            "duplicate csrf_token",
            format!(r#"{{"cookie":"{cookie}","csrf_token":"x","csrf_token":"{csrf}"}}"#),
        ),
        ("deeply nested", nested),
        ("cookie a number", r#"{"cookie": 7}"#.to_owned()),
        (
            "cookie an object",
            format!(r#"{{"cookie": {{"v": "{cookie}"}}}}"#),
        ),
        (
            "touch a string",
            format!(r#"{{"cookie":"{cookie}","touch":"yes"}}"#),
        ),
        (
            "unknown member",
            format!(r#"{{"cookie":"{cookie}","admin":true}}"#),
        ),
        ("not JSON", format!("cookie={cookie}")),
        ("truncated", format!(r#"{{"cookie":"{cookie}""#)),
    ] {
        let r = validate_raw(&srv, body).await;
        assert_problem(&r, 400);
        assert!(
            !r.text.contains(&cookie),
            "{what}: the answer echoes the cookie"
        );
    }
    // Nothing happened to the session: not revoked, not touched.
    let s = srv
        .get(&format!("/v1/tenants/default/sessions/{id}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(s["revoked_at"], Value::Null);
    assert_eq!(s["last_seen_at"], s["created_at"]);
}

/// The victim's own signing key, taken from the server's store and opened with its master key:
/// what an insider (or a leaked key) could sign with. It lets the tests below present tokens
/// whose signature is genuine and whose claims are hostile, so that each is refused for the
/// claim, not for the signature.
async fn insider_key(srv: &Server, kid: &str) -> veto_core::keys::LoadedKey {
    use veto_store::Store;
    let text = std::fs::read_to_string(srv.data_dir().join("master.key")).expect("master.key");
    let master = veto_core::keys::MasterKey::from_base64(text.trim()).expect("master key");
    let store: Box<dyn Store> = match srv.database_url() {
        Some(url) => Box::new(veto_store::PgStore::connect(&url, 1).await.expect("PG")),
        None => Box::new(
            veto_store::SqliteStore::open(&srv.data_dir().join("veto.db"))
                .await
                .expect("SQLite"),
        ),
    };
    let rec = store
        .list_signing_keys("default")
        .await
        .expect("signing keys")
        .into_iter()
        .find(|r| r.kid == kid)
        .expect("the victim's key in the store");
    veto_core::keys::LoadedKey::load(&rec, &master).expect("open the key")
}

/// `header.payload` (both raw JSON text) signed with `key`.
fn insider_sign(key: &veto_core::keys::LoadedKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(&sig))
}

#[tokio::test]
async fn genuinely_signed_tokens_with_hostile_claims_are_refused_for_the_claim() {
    let srv = Server::start().await;
    let v = victim(&srv).await;
    let key = insider_key(&srv, &v.kid).await;
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": v.kid}).to_string();
    // The signer works: the victim's claims re-signed are a good token.
    let resigned = insider_sign(&key, &header, &v.claims.to_string());
    assert_eq!(srv.reason("default", &resigned).await, None, "{resigned}");

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let exp = v.claims["exp"].clone();
    let other_iss = srv.issuer("other");
    let nested = format!("{}1{}", "[".repeat(3_000), "]".repeat(3_000));
    // (what, claim, value, reason). Each case gets its own jti, so what self-logout does with
    // it can be read back per case.
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("exp at the epoch", "exp", json!(1), "expired"),
        ("exp an hour ago", "exp", json!(now - 3_600), "expired"),
        (
            "nbf in ten years",
            "nbf",
            json!(now + 315_360_000),
            "not_yet_valid",
        ),
        (
            "exp a numeric string",
            "exp",
            json!(exp.to_string()),
            "malformed",
        ),
        ("exp 1e300", "exp", json!(1e300), "malformed"),
        ("exp u64::MAX", "exp", json!(u64::MAX), "malformed"),
        ("exp i64::MIN", "exp", json!(i64::MIN), "expired"),
        ("exp null", "exp", Value::Null, "malformed"),
        ("iat a string", "iat", json!("now"), "malformed"),
        ("nbf a boolean", "nbf", json!(true), "malformed"),
        (
            "iss of another tenant",
            "iss",
            json!(other_iss),
            "wrong_issuer",
        ),
        (
            "iss with a trailing slash",
            "iss",
            json!(format!("{}/", srv.issuer("default"))),
            "wrong_issuer",
        ),
        (
            "iss an array",
            "iss",
            json!([srv.issuer("default")]),
            "malformed",
        ),
        ("aud a number", "aud", json!(7), "malformed"),
        ("sub an object", "sub", json!({"id": "admin"}), "malformed"),
        (
            "token_use refresh",
            "token_use",
            json!("refresh"),
            "malformed",
        ),
        ("token_use a number", "token_use", json!(1), "malformed"),
    ];
    let mut revocable = Vec::new();
    for (i, (what, claim, value, reason)) in cases.into_iter().enumerate() {
        let jti = format!("hostile-{i}");
        let mut c = v.claims.clone();
        c["jti"] = json!(jti);
        if value.is_null() && claim == "exp" {
            c.as_object_mut().unwrap().remove("exp");
        } else {
            c[claim] = value;
        }
        let t = insider_sign(&key, &header, &c.to_string());
        assert_rejected(&srv, what, &t, reason).await;
        // RFC 7009 self-logout checks everything but time: a genuine token that merely
        // expired (or is not valid yet) is still its holder's to revoke, nothing else is.
        if matches!(reason, "expired" | "not_yet_valid") {
            revocable.push(jti);
        }
    }
    // Claims that only a raw payload can carry.
    let claims = v.claims.to_string();
    let body = claims.trim_end_matches('}');
    for (what, payload) in [
        ("sub twice", format!(r#"{body},"sub":"admin"}}"#)),
        ("exp twice", format!(r#"{body},"exp":{}}}"#, now + 999_999)),
        (
            "a claim nested 3,000 deep",
            format!(r#"{body},"x":{nested}}}"#),
        ),
        ("trailing garbage", format!("{claims} {{}}")),
        ("a JSON array", "[1,2,3]".to_owned()),
    ] {
        let t = insider_sign(&key, &header, &payload);
        assert_rejected(&srv, what, &t, "malformed").await;
    }
    // The audience the caller asks for, under a genuine signature.
    let wrong_aud = srv
        .post(
            "/v1/tenants/default/tokens/verify",
            json!({"token": v.token, "audience": "admin"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        verdict(wrong_aud),
        json!({"active": false, "reason": "wrong_audience"})
    );
    // Token-type confusion under a genuine signature: other JOSE types are not access tokens.
    for typ in ["JWT", "id_token+jwt", "application/at+jwt+x", "rt+jwt"] {
        let h = json!({"alg": "ES256", "typ": typ, "kid": v.kid}).to_string();
        let t = insider_sign(&key, &h, &claims);
        assert_rejected(&srv, typ, &t, "malformed").await;
    }
    // Oversized: a genuine signature does not buy a parse beyond 16 KiB.
    let mut big = v.claims.clone();
    big["pad"] = json!("A".repeat(17 * 1024));
    let t = insider_sign(&key, &header, &big.to_string());
    assert_rejected(&srv, "over 16 KiB", &t, "malformed").await;

    // The victim's token is untouched, and self-logout revoked exactly the genuine tokens that
    // only failed on time.
    assert_eq!(srv.reason("default", &v.token).await, None);
    let mut revoked: Vec<String> = srv
        .get("/v1/tenants/default/revocations?limit=100")
        .await
        .items()
        .iter()
        .map(|r| str_of(&r["jti"]))
        .collect();
    revoked.sort();
    revocable.sort();
    assert_eq!(revoked, revocable);
}
