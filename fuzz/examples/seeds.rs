//! Writes the fixed test keys (only those missing) and the seed corpus of every fuzz target:
//!
//!   cd fuzz && cargo run --example seeds
//!
//! Run it again after changing the token or cookie format; commit `keys/` and `corpus/`.
use std::fs;
use std::path::Path;

use serde_json::json;
use veto_core::Alg;
use veto_core::keys::{b64url, generate_private};
use veto_fuzz::{
    AUDIENCE, COOKIE_TENANTS, ISSUER, KEY_FILES, NOW, SESSION_KEY_FILES, TENANT, fixture, keys_dir,
    kid,
};

fn write_keys() {
    let dir = keys_dir();
    fs::create_dir_all(&dir).unwrap();
    let files = KEY_FILES
        .iter()
        .map(|(f, algs)| (*f, algs[0]))
        .chain(SESSION_KEY_FILES.iter().map(|f| (*f, Alg::HS256)));
    for (file, alg) in files {
        let path = dir.join(file);
        if !path.exists() {
            fs::write(&path, generate_private(alg).unwrap().as_slice()).unwrap();
            println!("wrote {}", path.display());
        }
    }
}

fn seed(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

/// A compact JWS of `header` and `claims`, signed by the fixture's key `kid`.
fn token(header: &serde_json::Value, claims: &serde_json::Value, kid: &str) -> String {
    let key = fixture().keys.get(TENANT, kid).expect("a fixture kid");
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.sign(signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64url(&sig))
}

fn claims(jti: &str) -> serde_json::Value {
    json!({
        "iss": ISSUER, "sub": "user-1", "aud": AUDIENCE, "jti": jti,
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3_600,
        "client_id": "ak_1", "scope": "read write", "sid": "ses-AAAAAAAAAAAAAAAAAAAAAA",
    })
}

fn verify_seeds() {
    for alg in Alg::ALL {
        let k = kid(alg);
        let header = json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": k});
        let name = k.clone();
        let valid = token(&header, &claims(&format!("jti-{name}")), &k);
        // Must verify: a seed that does not would only test the parser.
        veto_core::verify::verify(
            &valid,
            |kid| fixture().keys.get(TENANT, kid),
            &veto_fuzz::expect(Some(AUDIENCE)),
        )
        .unwrap_or_else(|r| panic!("seed {name} does not verify: {r:?}"));
        seed("verify", &format!("{name}-valid"), &valid);
        // Signed by keys that no longer verify, with the same material.
        for state in ["revoked", "retired"] {
            let kid = format!("{k}-{state}");
            let h = json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid});
            seed(
                "verify",
                &format!("{name}-{state}-key"),
                token(&h, &claims("j"), &kid),
            );
        }
    }
    // Validly signed (HS256, ES256) but refused for what they say.
    let hs = |h: serde_json::Value, c: serde_json::Value| token(&h, &c, "hs256");
    let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": "hs256"});
    let mut expired = claims("expired");
    expired["exp"] = json!(NOW - 3_600);
    seed("verify", "hs256-expired", hs(h.clone(), expired));
    let mut audiences = claims("aud-array");
    audiences["aud"] = json!(["other", AUDIENCE]);
    seed("verify", "hs256-aud-array", hs(h.clone(), audiences));
    let mut wrong_iss = claims("iss");
    wrong_iss["iss"] = json!("https://evil.example");
    seed("verify", "hs256-wrong-issuer", hs(h.clone(), wrong_iss));
    seed(
        "verify",
        "hs256-refresh-typ",
        hs(
            json!({"alg": "HS256", "typ": "rt+jwt", "kid": "hs256"}),
            claims("rt"),
        ),
    );
    seed(
        "verify",
        "hs256-jwk-header",
        hs(
            json!({"alg": "HS256", "typ": "at+jwt", "kid": "hs256", "jwk": {}}),
            claims("jwk"),
        ),
    );
    seed(
        "verify",
        "es256-alg-confusion",
        token(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": "es256"}),
            &claims("c"),
            "es256",
        ),
    );
    // Duplicate members (serde_json::Value cannot hold them: written by hand).
    let dup = format!(
        "{}.{}",
        b64url(br#"{"alg":"HS256","typ":"at+jwt","kid":"hs256","kid":"hs384"}"#),
        b64url(claims("dup").to_string().as_bytes())
    );
    let sig = fixture()
        .keys
        .get(TENANT, "hs256")
        .unwrap()
        .sign(dup.as_bytes())
        .unwrap();
    seed(
        "verify",
        "hs256-duplicate-kid",
        format!("{dup}.{}", b64url(&sig)),
    );
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"at+jwt","kid":"hs256"}"#),
        b64url(claims("none").to_string().as_bytes())
    );
    seed("verify", "alg-none", none);
}

fn cookie_seeds() -> Vec<String> {
    let ring = &fixture().sessions;
    let mut cookies = Vec::new();
    for tenant in COOKIE_TENANTS {
        let session = ring.sign(tenant, "ses-AAAAAAAAAAAAAAAAAAAAAA").unwrap();
        let prelogin = ring
            .sign_prelogin(tenant, "pl-BBBBBBBBBBBBBBBBBBBBBB")
            .unwrap();
        seed("cookie", &format!("{tenant}-session"), &session);
        seed("cookie", &format!("{tenant}-prelogin"), &prelogin);
        cookies.push(session);
        cookies.push(prelogin);
    }
    cookies
}

/// The first byte picks the request type in `json_body` (see its `match`).
fn json_seeds(cookies: &[String]) {
    let token =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/verify/hs256-valid"))
            .unwrap();
    let bodies: [(u8, &str, serde_json::Value); 15] = [
        (
            0,
            "issue",
            json!({"sub": "user-1", "aud": ["api"], "ttl_seconds": 900, "alg": "ES256", "nbf": "2026-11-29T12:00:00Z", "sid": "ses-AAAAAAAAAAAAAAAAAAAAAA", "claims": {"role": "admin"}, "token_use": "access"}),
        ),
        (
            1,
            "issue-batch",
            json!({"requests": [{"sub": "a"}, {"sub": "b", "aud": "api"}]}),
        ),
        (2, "verify", json!({"token": token, "audience": "api"})),
        (
            3,
            "revoke",
            json!({"jti": "j1", "sub": "user-1", "expires_at": "2026-12-01T00:00:00Z", "reason": "logout", "metadata": {"by": "admin"}, "until": "2026-11-30T00:00:00+01:00"}),
        ),
        (
            4,
            "revoke-batch",
            json!({"revocations": [{"jti": "a"}, {"token": token}]}),
        ),
        (5, "refresh", json!({"refresh_token": token})),
        (6, "tenant", json!({"id": "acme", "display_name": "Acme"})),
        (7, "key", json!({"alg": "EdDSA", "audience": "api"})),
        (
            8,
            "api-key",
            json!({"name": "ci", "scopes": ["tokens:verify", "tokens:revoke"]}),
        ),
        (
            9,
            "session",
            json!({"actor_id": "user-1", "actor_type": "user", "ip_address": "203.0.113.7", "user_agent": "curl", "idle_timeout_seconds": 3600, "absolute_timeout_seconds": 28800}),
        ),
        (
            10,
            "validate",
            json!({"cookie": cookies[0], "csrf_token": "x", "touch": true}),
        ),
        (
            11,
            "prelogin",
            json!({"state": "s", "nonce": "n", "pkce_verifier": "v", "redirect_uri": "https://app.example/cb"}),
        ),
        (
            12,
            "consume-prelogin",
            json!({"cookie": cookies[1], "state": "s"}),
        ),
        (13, "reason", json!({"reason": "incident 42"})),
        (14, "purge", json!({"safety_margin_seconds": 3600})),
    ];
    for (which, name, body) in bodies {
        let mut bytes = vec![which];
        bytes.extend_from_slice(body.to_string().as_bytes());
        seed("json_body", name, bytes);
    }
    seed("json_body", "reason-empty", [13u8]);
}

fn form_seeds() {
    let token =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/verify/es256-valid"))
            .unwrap();
    seed(
        "oauth_form",
        "introspect",
        format!("token={token}&token_type_hint=access_token"),
    );
    seed(
        "oauth_form",
        "revoke",
        format!("token={token}&token_type_hint=refresh_token"),
    );
    seed(
        "oauth_form",
        "escapes",
        "token=a%2Eb%2Ec+d&x=%E2%82%AC&empty=",
    );
    seed("oauth_form", "repeated", "token=a&token=b");
}

fn main() {
    write_keys();
    verify_seeds();
    let cookies = cookie_seeds();
    json_seeds(&cookies);
    form_seeds();
    println!("seeds written under {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
