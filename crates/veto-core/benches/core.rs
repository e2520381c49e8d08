//! Verify-path benchmarks: docs/architecture.md budget "verify + check, HS256 / EdDSA / ES256 / RS256: within
//! 10% of the bare signature verify".
//!
//! For each alg, four rows that can be read against each other:
//! - `sig_jsonwebtoken`: `jsonwebtoken::crypto::verify` on a prepared message and signature. This
//!   is what "bare verify" costs with the stock JOSE crate, which re-parses the key on every call.
//! - `jwt_decode`: `jsonwebtoken::decode` into a struct of the registered claims, with its
//!   `Validation` set to the same issuer, audience and algorithm: what "a JOSE library" costs for
//!   a whole HS256 decode (base64, JSON, signature, claim checks), the peer the lean path is
//!   measured against. Its expiry check is off only because jsonwebtoken reads the system clock
//!   and the fixture's times are fixed; that check is one integer comparison.
//! - `sig_preparsed`: the primitive veto actually runs, `LoadedKey::verify_signature` on a key
//!   parsed once at load time (aws-lc-rs `ParsedPublicKey` / `hmac::Key`). The budget's baseline.
//! - `verify`: the whole of `verify::verify` (split, strict base64url and JSON, header rules, key
//!   lookup in a `KeyRing`, signature, claims), i.e. steps 1–3.
//! - `verify_and_check`: `check::Checker::check`, the very call the server makes (`verify`, the
//!   freshness gate, `RevocationIndex::check` against an index holding 1M revoked jtis, the refresh
//!   family), i.e. steps 1–4, what a check costs end to end inside the process.
//!
//! `issue_token` is there for completeness (signing is not budgeted).
//!
//! Run: `cargo bench -p veto-core --bench core`
use std::sync::{Arc, OnceLock};

use divan::{Bencher, black_box};
use serde_json::{Map, json};
use time::OffsetDateTime;
use veto_core::Alg;
use veto_core::check::Checker;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
use veto_core::token::{Audience, IssueInput, issue};
use veto_core::verify::{Expect, verify};

const ALGS: [Alg; 4] = [Alg::HS256, Alg::EdDSA, Alg::ES256, Alg::RS256];
const NOW: i64 = 1_800_000_000;
const TENANT: &str = "acme";
const ISS: &str = "https://veto.example/t/acme";
const REVOKED: usize = 1_000_000;

struct Fixture {
    alg: Alg,
    key: Arc<LoadedKey>,
    /// A realistic access token: the registered claims plus a scope and two custom claims.
    token: String,
    /// `header.payload`, the signed bytes.
    message: String,
    sig_b64: String,
    sig: Vec<u8>,
    jwt_key: jsonwebtoken::DecodingKey,
    jwt_alg: jsonwebtoken::Algorithm,
}

struct World {
    fixtures: Vec<Fixture>,
    ring: KeyRing,
    index: RevocationIndex,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let master = MasterKey::generate();
        let ring = KeyRing::new();
        let created = OffsetDateTime::from_unix_timestamp(NOW - 3600).expect("in range");
        let mut claims = Map::new();
        claims.insert("scope".into(), json!("read:orders write:orders"));
        claims.insert("role".into(), json!("member"));
        claims.insert("org".into(), json!({"id": "org_42", "plan": "pro"}));
        let aud = Audience::One("orders-api".into());
        let fixtures = ALGS
            .into_iter()
            .map(|alg| {
                let rec = generate_signing_key(TENANT, alg, None, &master, created)
                    .expect("key generation");
                let key = Arc::new(LoadedKey::load(&rec, &master).expect("load"));
                ring.upsert(LoadedKey::load(&rec, &master).expect("load"));
                let token = issue(
                    &key,
                    &IssueInput {
                        issuer: ISS,
                        tenant: TENANT,
                        sub: "user-8d41c2",
                        aud: Some(&aud),
                        iat: NOW,
                        ttl_seconds: 900,
                        nbf: None,
                        sid: Some("ses_01JD4R6Q0Z"),
                        client_id: "ak_3f9a0c",
                        claims: &claims,
                        typ: "at+jwt",
                    },
                )
                .expect("issue")
                .token;
                let (message, sig_b64) = token.rsplit_once('.').expect("three segments");
                let sig = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    sig_b64,
                )
                .expect("base64url");
                let jwt_key = match &rec.public_jwk {
                    Some(jwk) => jsonwebtoken::DecodingKey::from_jwk(
                        &serde_json::from_value(jwk.clone()).expect("jwk"),
                    )
                    .expect("decoding key"),
                    None => jsonwebtoken::DecodingKey::from_secret(
                        &master
                            .open(TENANT, &rec.kid, &rec.encrypted_private)
                            .expect("open"),
                    ),
                };
                Fixture {
                    alg,
                    key,
                    message: message.to_owned(),
                    sig_b64: sig_b64.to_owned(),
                    sig,
                    token,
                    jwt_key,
                    jwt_alg: alg.as_str().parse().expect("jsonwebtoken knows every alg"),
                }
            })
            .collect();
        let index = RevocationIndex::new();
        let jtis: Vec<String> = (0..REVOKED)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        index.insert_many(jtis.iter().map(|j| (TENANT, j.as_str(), None)));
        World {
            fixtures,
            ring,
            index,
        }
    })
}

fn fixture(alg: Alg) -> &'static Fixture {
    world()
        .fixtures
        .iter()
        .find(|f| f.alg == alg)
        .expect("a fixture per benched alg")
}

const EXPECT: Expect<'static> = Expect {
    issuer: ISS,
    audience: Some("orders-api"),
    typ: "at+jwt",
    now: NOW + 60,
    leeway: 30,
    check_time: true,
};

fn main() {
    // Key generation (RSA above all) and the 1M-entry index are set up before any timing.
    let w = world();
    for f in &w.fixtures {
        assert!(
            verify(&f.token, |kid| w.ring.get(TENANT, kid), &EXPECT).is_ok(),
            "{}: fixture token must verify",
            f.alg
        );
    }
    divan::main();
}

#[divan::bench(args = ALGS)]
fn sig_jsonwebtoken(b: Bencher, alg: Alg) {
    let f = fixture(alg);
    b.bench(|| {
        let ok = jsonwebtoken::crypto::verify(
            black_box(&f.sig_b64),
            black_box(f.message.as_bytes()),
            &f.jwt_key,
            f.jwt_alg,
        );
        assert!(matches!(ok, Ok(true)));
    });
}

/// The claims a resource server typically reads, as jsonwebtoken users declare them.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct JwtClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    jti: String,
    scope: Option<String>,
    client_id: Option<String>,
    sid: Option<String>,
}

#[divan::bench(args = ALGS)]
fn jwt_decode(b: Bencher, alg: Alg) {
    let f = fixture(alg);
    let mut validation = jsonwebtoken::Validation::new(f.jwt_alg);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&["orders-api"]);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    b.bench(|| {
        let d = jsonwebtoken::decode::<JwtClaims>(black_box(&f.token), &f.jwt_key, &validation);
        assert!(d.is_ok());
        d
    });
}

#[divan::bench(args = ALGS)]
fn sig_preparsed(b: Bencher, alg: Alg) {
    let f = fixture(alg);
    b.bench(|| {
        assert!(
            f.key
                .verify_signature(black_box(f.message.as_bytes()), black_box(&f.sig))
        );
    });
}

#[divan::bench(args = ALGS)]
fn verify_full(b: Bencher, alg: Alg) {
    let w = world();
    let f = fixture(alg);
    b.bench(|| {
        let v = verify(black_box(&f.token), |kid| w.ring.get(TENANT, kid), &EXPECT);
        assert!(v.is_ok());
        v
    });
}

#[divan::bench(args = ALGS)]
fn verify_and_check(b: Bencher, alg: Alg) {
    let w = world();
    let f = fixture(alg);
    let checker = Checker {
        keys: &w.ring,
        index: &w.index,
        tenant: TENANT,
        issuer: EXPECT.issuer,
        leeway: EXPECT.leeway,
    };
    b.bench(|| {
        let v = checker.check(
            black_box(&f.token),
            EXPECT.typ,
            EXPECT.audience,
            EXPECT.now,
            || true,
        );
        assert!(v.is_ok());
        v
    });
}

#[divan::bench(args = ALGS)]
fn issue_token(b: Bencher, alg: Alg) {
    let f = fixture(alg);
    let claims = Map::new();
    b.bench(|| {
        issue(
            &f.key,
            &IssueInput {
                issuer: ISS,
                tenant: TENANT,
                sub: "user-8d41c2",
                aud: None,
                iat: NOW,
                ttl_seconds: 900,
                nbf: None,
                sid: None,
                client_id: "ak_3f9a0c",
                claims: &claims,
                typ: "at+jwt",
            },
        )
        .map(|i| i.token)
    });
}
