//! Keys a verifier outside veto holds: built from the public JWK veto publishes (no private
//! material), or known only as revoked. Checked on real keys: a token signed with a generated key
//! verifies through the whole `Checker` against the public-only key built from its JWK.
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use veto_core::check::Checker;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::{
    KeyError, KeyStatus, LoadedKey, MasterKey, SigningKeyRecord, generate_signing_key,
};
use veto_core::token::{IssueInput, issue};
use veto_core::{Alg, Reason};

const NOW: i64 = 1_800_000_000;
const TENANT: &str = "acme";
const ISS: &str = "https://veto.test/t/acme";

fn key(alg: Alg) -> (SigningKeyRecord, LoadedKey) {
    let master = MasterKey::generate();
    let created = OffsetDateTime::from_unix_timestamp(NOW - 100).unwrap();
    let rec = generate_signing_key(TENANT, alg, None, &master, created).unwrap();
    let loaded = LoadedKey::load(&rec, &master).unwrap();
    (rec, loaded)
}

fn token(key: &LoadedKey) -> String {
    issue(
        key,
        &IssueInput {
            issuer: ISS,
            tenant: TENANT,
            sub: "user-1",
            aud: None,
            iat: NOW,
            ttl_seconds: 900,
            nbf: None,
            sid: None,
            client_id: "client",
            claims: &Map::new(),
            typ: "at+jwt",
        },
    )
    .unwrap()
    .token
}

fn check(ring: &KeyRing, token: &str) -> Result<String, Reason> {
    let index = RevocationIndex::new();
    Checker {
        keys: ring,
        index: &index,
        tenant: TENANT,
        issuer: ISS,
        leeway: 30,
    }
    .check(token, "at+jwt", None, NOW, || true)
    .map(|v| v.jti.into())
}

#[test]
fn a_public_key_from_the_jwk_verifies_what_the_private_key_signed() {
    for alg in Alg::ALL.into_iter().filter(|a| !a.is_hmac()) {
        let (rec, private) = key(alg);
        let jwk = rec.public_jwk.clone().unwrap();
        let public = LoadedKey::from_public_jwk(TENANT, &jwk).unwrap();
        assert_eq!(public.kid, rec.kid, "{alg}");
        assert_eq!(public.alg, alg);
        assert_eq!(public.status, KeyStatus::Active);
        assert!(!public.has_private() && private.has_private());
        // Verifies, never signs.
        assert!(!public.signs(), "{alg}");
        assert!(matches!(public.sign(b"x"), Err(KeyError::NoPrivateKey)));

        let ring = KeyRing::new();
        ring.upsert(public);
        let good = token(&private);
        assert!(check(&ring, &good).is_ok(), "{alg}");
        // Another key of the same alg, same kid: its signature does not verify.
        let (_, other) = key(alg);
        let forged = forge_kid(&token(&other), &rec.kid);
        assert_eq!(check(&ring, &forged), Err(Reason::BadSignature), "{alg}");
        // A public-only key is never picked to sign.
        assert!(ring.signing_key(TENANT, alg, None).is_none());
    }
}

/// Re-labels a token's header with `kid`, keeping its signature (which then no longer matches).
fn forge_kid(token: &str, kid: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let mut h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    h["kid"] = json!(kid);
    let rest: Vec<&str> = parts.collect();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&h).unwrap()),
        rest.join(".")
    )
}

#[test]
fn a_key_known_only_as_revoked_answers_key_revoked() {
    let (rec, private) = key(Alg::ES256);
    let ring = KeyRing::new();
    ring.upsert(LoadedKey::known_revoked(TENANT, &rec.kid));
    let placeholder = ring.get(TENANT, &rec.kid).unwrap();
    assert_eq!(placeholder.status, KeyStatus::Revoked);
    assert!(!placeholder.signs());
    assert!(!placeholder.verify_signature(b"m", b"s"));
    assert!(matches!(
        placeholder.sign(b"m"),
        Err(KeyError::NoPrivateKey)
    ));
    assert_eq!(check(&ring, &token(&private)), Err(Reason::KeyRevoked));
    // Out of the JWKS, as a revoked key is.
    assert_eq!(ring.jwks(TENANT, NOW), json!({"keys": []}));
}

#[test]
fn the_jwk_must_be_a_consistent_public_key_of_its_alg() {
    let (rec, _) = key(Alg::ES256);
    let good = rec.public_jwk.clone().unwrap();
    let (rsa, _) = key(Alg::RS256);
    let rsa = rsa.public_jwk.unwrap();
    let with = |base: &Value, name: &str, value: Value| {
        let mut j = base.clone();
        j[name] = value;
        j
    };
    let without = |base: &Value, name: &str| {
        let mut j = base.clone();
        j.as_object_mut().unwrap().remove(name);
        j
    };
    let bad = [
        without(&good, "kid"),
        with(&good, "kid", json!("")),
        without(&good, "alg"),
        with(&good, "alg", json!("none")),
        // The alg is pinned: an ES256 key relabelled for another alg is refused.
        with(&good, "alg", json!("ES384")),
        with(&good, "alg", json!("EdDSA")),
        with(&good, "alg", json!("HS256")),
        with(&good, "crv", json!("P-384")),
        with(&good, "kty", json!("RSA")),
        with(&good, "use", json!("enc")),
        // Not on the curve, wrong length, not base64url.
        with(&good, "y", good["x"].clone()),
        with(&good, "x", json!("AAAA")),
        with(&good, "x", json!("a+b/")),
        without(&good, "y"),
        with(&rsa, "alg", json!("ES256")),
        without(&rsa, "n"),
        with(&rsa, "n", json!("AQAB")),
        json!(null),
        json!({"kid": "k", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
    ];
    for jwk in bad {
        assert!(
            matches!(
                LoadedKey::from_public_jwk(TENANT, &jwk),
                Err(KeyError::BadJwk(_))
            ),
            "{jwk}"
        );
    }
    assert!(LoadedKey::from_public_jwk(TENANT, &good).is_ok());
    assert!(LoadedKey::from_public_jwk(TENANT, &without(&good, "use")).is_ok());
    assert!(LoadedKey::from_public_jwk(TENANT, &rsa).is_ok());
}
