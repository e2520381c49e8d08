//! veto-core's public surface: keys, issuance and the verify pipeline, tested as a caller uses them.
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use veto_core::keyring::KeyRing;
use veto_core::keys::{KeyStatus, LoadedKey, MasterKey, SigningKeyRecord, generate_signing_key};
use veto_core::token::{Audience, IssueInput, check_custom_claims, issue};
use veto_core::verify::{Expect, MAX_TOKEN_BYTES, decode_unverified_claims, verify};
use veto_core::{Alg, Reason};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://veto.test/t/acme";

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn key(alg: Alg) -> (SigningKeyRecord, Arc<LoadedKey>, MasterKey) {
    let master = MasterKey::generate();
    let rec = generate_signing_key("acme", alg, None, &master, at(NOW - 100)).unwrap();
    let loaded = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    (rec, loaded, master)
}

fn token_with(k: &LoadedKey, ttl: i64, nbf: Option<i64>) -> String {
    let claims = Map::new();
    let aud = Audience::One("api".into());
    issue(
        k,
        &IssueInput {
            issuer: ISS,
            tenant: "acme",
            sub: "user-1",
            aud: Some(&aud),
            iat: NOW,
            ttl_seconds: ttl,
            nbf,
            sid: None,
            client_id: "client",
            claims: &claims,
            typ: "at+jwt",
        },
    )
    .unwrap()
    .token
}

fn expect(now: i64) -> Expect<'static> {
    Expect {
        issuer: ISS,
        audience: None,
        typ: "at+jwt",
        now,
        leeway: 0,
        check_time: true,
    }
}

fn check(k: &Arc<LoadedKey>, token: &str) -> Result<veto_core::verify::VerifiedToken, Reason> {
    let k = k.clone();
    verify(
        token,
        move |kid| (kid == k.kid).then(|| k.clone()),
        &expect(NOW),
    )
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token whose header and payload we choose, signed by the real key.
fn signed(k: &LoadedKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = k.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&sig))
}

fn good_claims() -> Value {
    json!({"iss": ISS, "sub": "u", "iat": NOW, "exp": NOW + 60, "jti": "j-1"})
}

#[test]
fn every_alg_round_trips_and_an_independent_library_agrees() {
    for alg in Alg::ALL {
        let (rec, k, master) = key(alg);
        let t = token_with(&k, 300, None);
        let v = check(&k, &t).unwrap_or_else(|r| panic!("{alg}: {r:?}"));
        assert_eq!(
            (v.sub.as_deref(), v.exp, v.alg),
            (Some("user-1"), NOW + 300, alg)
        );
        assert_eq!(uuid::Uuid::parse_str(&v.jti).unwrap().get_version_num(), 4);
        // jsonwebtoken, which we did not write, accepts the same token.
        let dk = match &rec.public_jwk {
            Some(jwk) => {
                jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap())
                    .unwrap()
            }
            None => jsonwebtoken::DecodingKey::from_secret(
                &master
                    .open("acme", &rec.kid, &rec.encrypted_private)
                    .unwrap(),
            ),
        };
        let jalg: jsonwebtoken::Algorithm = alg.as_str().parse().unwrap();
        let mut val = jsonwebtoken::Validation::new(jalg);
        val.set_audience(&["api"]);
        val.validate_exp = false;
        let data =
            jsonwebtoken::decode::<Value>(&t, &dk, &val).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.claims["tid"], "acme");
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
    }
}

#[test]
fn jwks_entries_have_the_right_shape() {
    for (alg, kty, len) in [
        (Alg::RS256, "RSA", 256),
        (Alg::RS512, "RSA", 384),
        (Alg::ES256, "EC", 32),
        (Alg::ES384, "EC", 48),
        (Alg::EdDSA, "OKP", 32),
    ] {
        let (rec, _, _) = key(alg);
        let jwk = rec.public_jwk.unwrap();
        assert_eq!(
            (
                jwk["kty"].as_str(),
                jwk["use"].as_str(),
                jwk["kid"].as_str()
            ),
            (Some(kty), Some("sig"), Some(rec.kid.as_str()))
        );
        let field = if kty == "RSA" { "n" } else { "x" };
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk[field].as_str().unwrap())
                .unwrap()
                .len(),
            len,
            "{alg}"
        );
        assert!(jwk.get("d").is_none());
    }
    let (rec, _, _) = key(Alg::HS256);
    assert!(rec.public_jwk.is_none());
}

#[test]
fn private_material_is_bound_to_tenant_and_kid() {
    let master = MasterKey::generate();
    let blob = master.seal("acme", "k1", b"secret").unwrap();
    assert_eq!(
        master.open("acme", "k1", &blob).unwrap().as_slice(),
        b"secret"
    );
    assert!(master.open("globex", "k1", &blob).is_err());
    assert!(master.open("acme", "k2", &blob).is_err());
    assert!(MasterKey::generate().open("acme", "k1", &blob).is_err());
    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(master.open("acme", "k1", &flipped).is_err());
    assert!(master.open("acme", "k1", &blob[..10]).is_err());
    assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    let mk = MasterKey::generate();
    assert_eq!(
        MasterKey::from_base64(&mk.to_base64()).unwrap().to_base64(),
        mk.to_base64()
    );
    assert_eq!(format!("{mk:?}"), "MasterKey(..)");
}

#[test]
fn rfc8725_attacks_get_their_reasons() {
    let (_, es, _) = key(Alg::ES256);
    let kid = es.kid.clone();
    let claims = good_claims().to_string();
    let good = signed(
        &es,
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}).to_string(),
        &claims,
    );
    assert!(check(&es, &good).is_ok());
    let parts: Vec<&str> = good.split('.').collect();
    let with_header = |h: Value| {
        format!(
            "{}.{}.{}",
            b64(h.to_string().as_bytes()),
            parts[1],
            parts[2]
        )
    };

    for alg in ["none", "None", "NONE", "nOnE", "", "HS1"] {
        let t = format!(
            "{}.{}.",
            b64(json!({"alg": alg, "typ": "at+jwt", "kid": kid})
                .to_string()
                .as_bytes()),
            parts[1]
        );
        assert_eq!(check(&es, &t).err(), Some(Reason::Malformed), "alg {alg}");
    }
    // HMAC keyed with the public key: the key is pinned to ES256, so HS256 never verifies.
    let jwk = es.public_jwk.clone().unwrap().to_string();
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "typ": "at+jwt", "kid": kid})
            .to_string()
            .as_bytes()),
        parts[1]
    );
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, jwk.as_bytes()),
        input.as_bytes(),
    );
    assert_eq!(
        check(&es, &format!("{input}.{}", b64(tag.as_ref()))).err(),
        Some(Reason::BadSignature)
    );
    assert_eq!(
        check(
            &es,
            &with_header(json!({"alg": "ES384", "typ": "at+jwt", "kid": kid}))
        )
        .err(),
        Some(Reason::BadSignature)
    );
    for extra in ["jwk", "jku", "x5c", "x5u", "x5t", "crit"] {
        let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        h[extra] = json!("x");
        assert_eq!(
            check(&es, &with_header(h)).err(),
            Some(Reason::Malformed),
            "{extra}"
        );
    }
    assert_eq!(
        check(
            &es,
            &with_header(json!({"alg": "ES256", "typ": "JWT", "kid": kid}))
        )
        .err(),
        Some(Reason::WrongType)
    );
    assert_eq!(
        check(&es, &with_header(json!({"alg": "ES256", "kid": kid}))).err(),
        Some(Reason::WrongType)
    );
    assert!(
        check(
            &es,
            &with_header(json!({"alg": "ES256", "typ": "application/AT+JWT", "kid": kid}))
        )
        .is_err()
    );
    assert_eq!(
        check(
            &es,
            &with_header(json!({"alg": "ES256", "typ": "at+jwt", "kid": "other"}))
        )
        .err(),
        Some(Reason::UnknownKey)
    );
    assert_eq!(
        check(&es, &with_header(json!({"alg": "ES256", "typ": "at+jwt"}))).err(),
        Some(Reason::Malformed)
    );
    let dup = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","kid":"{kid}"}}"#);
    assert_eq!(
        check(
            &es,
            &format!("{}.{}.{}", b64(dup.as_bytes()), parts[1], parts[2])
        )
        .err(),
        Some(Reason::Malformed)
    );

    // Claims problems, with a valid signature over them.
    let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}).to_string();
    let mut bad_exp = good_claims();
    bad_exp["exp"] = json!("9999999999");
    assert_eq!(
        check(&es, &signed(&es, &h, &bad_exp.to_string())).err(),
        Some(Reason::Malformed)
    );
    let mut no_jti = good_claims();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(
        check(&es, &signed(&es, &h, &no_jti.to_string())).err(),
        Some(Reason::Malformed)
    );
    let dup_exp = format!(
        r#"{{"iss":"{ISS}","iat":{NOW},"exp":1,"exp":{},"jti":"j"}}"#,
        NOW + 60
    );
    assert_eq!(
        check(&es, &signed(&es, &h, &dup_exp)).err(),
        Some(Reason::Malformed)
    );
    let mut far_past = good_claims();
    far_past["exp"] = json!(-9_000_000_000_i64);
    assert_eq!(
        check(&es, &signed(&es, &h, &far_past.to_string())).err(),
        Some(Reason::Expired)
    );
    let mut huge = good_claims();
    huge["exp"] = json!(1e300);
    assert_eq!(
        check(&es, &signed(&es, &h, &huge.to_string())).err(),
        Some(Reason::Malformed)
    );
    let mut other_iss = good_claims();
    other_iss["iss"] = json!("https://evil.test/t/acme");
    assert_eq!(
        check(&es, &signed(&es, &h, &other_iss.to_string())).err(),
        Some(Reason::WrongIssuer)
    );
    assert_eq!(
        check(&es, &signed(&es, &h, "[1,2]")).err(),
        Some(Reason::Malformed)
    );

    // Signatures: DER-encoded ECDSA, truncated, flipped, empty.
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let mut flipped = sig.clone();
    flipped[10] ^= 0x40;
    for s in [
        b64(&sig[..32]),
        b64(&flipped),
        String::new(),
        b64(&[0x30, 0x44, 0x02, 0x20]),
    ] {
        assert_eq!(
            check(&es, &format!("{}.{}.{s}", parts[0], parts[1])).err(),
            Some(Reason::BadSignature)
        );
    }
    // A signature segment outside the base64url alphabet is not a JWS at all.
    assert_eq!(
        check(&es, &format!("{}.{}.!!", parts[0], parts[1])).err(),
        Some(Reason::Malformed)
    );
    // Shapes.
    let oversized = format!("{}.{}.{}", parts[0], "A".repeat(MAX_TOKEN_BYTES), parts[2]);
    for t in [
        "",
        ".",
        "..",
        "a.b",
        "a.b.c.d.e",
        &oversized,
        &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
    ] {
        assert_eq!(check(&es, t).err(), Some(Reason::Malformed), "{t:.40}");
    }
}

#[test]
fn time_audience_and_retention() {
    let (_, k, master) = key(Alg::EdDSA);
    let t = token_with(&k, 60, Some(NOW + 30));
    let f = |now: i64, aud: Option<&'static str>, leeway: i64| {
        let k = k.clone();
        let e = Expect {
            audience: aud,
            leeway,
            ..expect(now)
        };
        verify(&t, move |_| Some(k.clone()), &e).err()
    };
    assert_eq!(f(NOW, None, 0), Some(Reason::NotYetValid));
    assert_eq!(f(NOW, None, 30), None);
    assert_eq!(f(NOW + 30, Some("api"), 0), None);
    assert_eq!(f(NOW + 30, Some("other"), 0), Some(Reason::WrongAudience));
    assert_eq!(f(NOW + 60, None, 0), Some(Reason::Expired));
    assert_eq!(f(NOW + 61, None, 5), None);
    // Revoking by token skips the time checks, never the signature.
    let k2 = k.clone();
    let e = Expect {
        check_time: false,
        ..expect(NOW + 10_000)
    };
    assert!(verify(&t, move |_| Some(k2.clone()), &e).is_ok());

    // Retired keys verify until retain_until; revoked keys never.
    let mut rec = generate_signing_key("acme", Alg::HS256, None, &master, at(NOW - 10)).unwrap();
    rec.status = KeyStatus::Retired;
    rec.retain_until = Some(at(NOW + 100));
    let retired = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    let t = token_with(&retired, 1000, None);
    let r = |now, key: &Arc<LoadedKey>| {
        let key = key.clone();
        verify(&t, move |_| Some(key.clone()), &expect(now)).err()
    };
    assert_eq!(r(NOW + 50, &retired), None);
    assert_eq!(r(NOW + 100, &retired), Some(Reason::UnknownKey));
    rec.status = KeyStatus::Revoked;
    let revoked = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    assert_eq!(r(NOW, &revoked), Some(Reason::KeyRevoked));
}

#[test]
fn keyring_picks_the_newest_eligible_key_and_publishes_jwks() {
    let master = MasterKey::generate();
    let ring = KeyRing::new();
    let mk = |alg, aud: Option<&str>, created| {
        let rec = generate_signing_key("acme", alg, aud.map(str::to_owned), &master, at(created))
            .unwrap();
        ring.upsert(LoadedKey::load(&rec, &master).unwrap());
        rec
    };
    let old = mk(Alg::ES256, None, NOW - 10);
    let new = mk(Alg::ES256, None, NOW);
    let bound = mk(Alg::ES256, Some("billing"), NOW - 20);
    let hs = mk(Alg::HS256, None, NOW);
    assert_eq!(
        ring.signing_key("acme", Alg::ES256, None).unwrap().kid,
        new.kid
    );
    assert_eq!(
        ring.signing_key("acme", Alg::ES256, Some("billing"))
            .unwrap()
            .kid,
        bound.kid
    );
    assert_eq!(
        ring.signing_key("acme", Alg::ES256, Some("other"))
            .unwrap()
            .kid,
        new.kid
    );
    assert!(ring.signing_key("acme", Alg::RS256, None).is_none());
    assert!(ring.signing_key("globex", Alg::ES256, None).is_none());
    let jwks = ring.jwks("acme", NOW).to_string();
    assert!(jwks.contains(&old.kid) && jwks.contains(&bound.kid) && !jwks.contains(&hs.kid));
    let mut revoked = old.clone();
    revoked.status = KeyStatus::Revoked;
    ring.upsert(LoadedKey::load(&revoked, &master).unwrap());
    assert!(!ring.jwks("acme", NOW).to_string().contains(&old.kid));
    assert_eq!(ring.len(), 4);
}

#[test]
fn reserved_claims_are_refused() {
    for name in [
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "tid",
        "sid",
        "client_id",
    ] {
        let mut m = Map::new();
        m.insert(name.into(), json!(1));
        let err = check_custom_claims(&m).unwrap_err();
        assert!(err.contains(name));
    }
    let mut m = Map::new();
    m.insert("role".into(), json!("admin"));
    assert!(check_custom_claims(&m).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary input never panics and never verifies.
    #[test]
    fn verify_never_panics_on_garbage(s in ".{0,300}") {
        let (_, k, _) = (None::<()>, KEY.clone(), ());
        prop_assert!(check(&k, &s).is_err());
        let _ = decode_unverified_claims(&s);
    }

    /// Well-formed base64url segments of arbitrary JSON never verify without the key's signature.
    #[test]
    fn forged_json_never_verifies(h in any::<Vec<(String, i64)>>(), p in any::<Vec<(String, i64)>>(), sig in any::<Vec<u8>>()) {
        let obj = |v: Vec<(String, i64)>| Value::Object(v.into_iter().map(|(k, n)| (k, json!(n))).collect()).to_string();
        let mut header: Value = serde_json::from_str(&obj(h)).unwrap();
        header["alg"] = json!("ES256");
        header["typ"] = json!("at+jwt");
        header["kid"] = json!(KEY.kid);
        let t = format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(obj(p).as_bytes()), b64(&sig));
        prop_assert!(check(&KEY, &t).is_err());
    }
}

static KEY: std::sync::LazyLock<Arc<LoadedKey>> = std::sync::LazyLock::new(|| key(Alg::ES256).1);

/// `unsigned_len` is how callers refuse an oversized token before writing anything for it, so
/// it must be exact: the token less its signature, for every algorithm, with and without a
/// status list entry and whatever the claims (lengths around each base64 boundary).
#[test]
fn unsigned_len_is_the_signed_token_less_its_signature() {
    use veto_core::token::{StatusRef, issue_as, unsigned_len};
    for alg in [Alg::ES256, Alg::EdDSA, Alg::HS256, Alg::RS256] {
        let (_, k, _) = key(alg);
        for pad in 0..6 {
            let mut claims = Map::new();
            claims.insert("x".into(), json!("y".repeat(pad)));
            let input = IssueInput {
                issuer: ISS,
                tenant: "acme",
                sub: "user-1",
                aud: None,
                iat: NOW,
                ttl_seconds: 60,
                nbf: None,
                sid: Some("s"),
                client_id: "client",
                claims: &claims,
                typ: "at+jwt",
            };
            let uri = "https://veto.test/t/acme/statuslists/abc";
            for status in [None, Some(StatusRef { idx: 1 << 20, uri })] {
                let token = issue_as(&k, &input, "j-1", status).unwrap().token;
                let unsigned = token.rsplit_once('.').unwrap().0;
                assert_eq!(unsigned_len(&k, &input, "j-1", status), unsigned.len());
                let claims = decode_unverified_claims(&token).unwrap();
                assert_eq!(claims["jti"], "j-1");
                match status {
                    Some(s) => assert_eq!(
                        claims["status"],
                        json!({"status_list": {"idx": s.idx, "uri": uri}})
                    ),
                    None => assert!(claims.get("status").is_none()),
                }
            }
        }
    }
}

#[test]
fn only_veto_sets_a_status_claim() {
    let mut claims = Map::new();
    claims.insert(
        "status".into(),
        json!({"status_list": {"idx": 1, "uri": "x"}}),
    );
    let err = check_custom_claims(&claims).unwrap_err();
    assert!(err.contains("status"), "{err}");
}
