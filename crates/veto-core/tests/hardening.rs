//! The edges of keys, issuance and the verify pipeline, through the public surface: every RFC 8725
//! attack gets its exact reason, JWKs rebuild into keys that check real signatures, and a few
//! properties (issue→verify round trips any claims; any one-character change to a token is refused).
use std::sync::{Arc, LazyLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use veto_core::keyring::KeyRing;
use veto_core::keys::{
    KeyError, KeyStatus, LoadedKey, MasterKey, SigningKeyRecord, b64url, generate_signing_key,
    new_kid,
};
use veto_core::token::{Audience, IssueInput, RESERVED_CLAIMS, check_custom_claims, issue};
use veto_core::verify::{Expect, MAX_TOKEN_BYTES, VerifiedToken, decode_unverified_claims, verify};
use veto_core::{Alg, Reason};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://veto.test/t/acme";
const TENANT: &str = "acme";

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

struct TestKey {
    rec: SigningKeyRecord,
    key: Arc<LoadedKey>,
    master: MasterKey,
}

impl TestKey {
    fn new(alg: Alg) -> Self {
        let master = MasterKey::generate();
        let rec = generate_signing_key(TENANT, alg, None, &master, at(NOW - 100)).unwrap();
        let key = Arc::new(LoadedKey::load(&rec, &master).unwrap());
        TestKey { rec, key, master }
    }

    fn private(&self) -> zeroize::Zeroizing<Vec<u8>> {
        self.master
            .open(TENANT, &self.rec.kid, &self.rec.encrypted_private)
            .unwrap()
    }

    fn kid(&self) -> &str {
        &self.rec.kid
    }

    fn check_with(&self, token: &str, e: &Expect<'_>) -> Result<VerifiedToken, Reason> {
        let k = self.key.clone();
        verify(token, move |kid| (kid == k.kid).then(|| k.clone()), e)
    }

    fn check(&self, token: &str) -> Result<VerifiedToken, Reason> {
        self.check_with(token, &expect(NOW))
    }

    /// A compact JWS over exactly these header and payload bytes, signed by the real key.
    fn sign_raw(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let s = self.key.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&s))
    }

    fn header(&self) -> String {
        json!({"alg": self.key.alg.as_str(), "typ": "at+jwt", "kid": self.kid()}).to_string()
    }

    fn sign_claims(&self, claims: &Value) -> String {
        self.sign_raw(&self.header(), &claims.to_string())
    }

    fn good(&self) -> String {
        self.sign_claims(&good_claims())
    }
}

// Key generation (RSA above all) is the slow part of these tests: one key per alg, shared.
static ES256: LazyLock<TestKey> = LazyLock::new(|| TestKey::new(Alg::ES256));
static RS256: LazyLock<TestKey> = LazyLock::new(|| TestKey::new(Alg::RS256));
static HS256: LazyLock<TestKey> = LazyLock::new(|| TestKey::new(Alg::HS256));
static EDDSA: LazyLock<TestKey> = LazyLock::new(|| TestKey::new(Alg::EdDSA));

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

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

fn good_claims() -> Value {
    json!({"iss": ISS, "sub": "u", "iat": NOW, "exp": NOW + 60, "jti": "j-1"})
}

fn with(mut claims: Value, name: &str, v: Value) -> Value {
    claims[name] = v;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

/// The good token's payload and signature under another header: for header checks that come
/// before the signature.
fn reheader(t: &TestKey, header: &Value) -> String {
    let p = parts(&t.good());
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), p[1], p[2])
}

fn issue_with(
    k: &LoadedKey,
    aud: Option<&Audience>,
    nbf: Option<i64>,
    sid: Option<&str>,
    claims: &Map<String, Value>,
) -> veto_core::token::Issued {
    issue(
        k,
        &IssueInput {
            issuer: ISS,
            tenant: TENANT,
            sub: "user-1",
            aud,
            iat: NOW,
            ttl_seconds: 300,
            nbf,
            sid,
            client_id: "ak_client",
            claims,
            typ: "at+jwt",
        },
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// RFC 8725 attacks and malformed input, each with its exact reason.
// ---------------------------------------------------------------------------------------------

#[test]
fn alg_none_in_any_spelling_and_non_string_algs_are_malformed() {
    let t = &*ES256;
    let p = parts(&t.good());
    for alg in [
        json!("none"),
        json!("None"),
        json!("NONE"),
        json!("nOnE"),
        json!("es256"),
        json!(" ES256"),
        json!(""),
        json!(null),
        json!(256),
        json!(["ES256"]),
        json!({"alg": "ES256"}),
    ] {
        let h = json!({"alg": alg, "typ": "at+jwt", "kid": t.kid()});
        // The unsecured-JWS form: empty signature.
        let unsigned = format!("{}.{}.", b64(h.to_string().as_bytes()), p[1]);
        assert_eq!(t.check(&unsigned).err(), Some(Reason::Malformed), "{alg}");
        assert_eq!(t.check(&reheader(t, &h)).err(), Some(Reason::Malformed));
    }
    let missing = json!({"typ": "at+jwt", "kid": t.kid()});
    assert_eq!(
        t.check(&reheader(t, &missing)).err(),
        Some(Reason::Malformed)
    );
}

#[test]
fn hmac_keyed_with_the_public_key_is_a_bad_signature() {
    // The classic confusion: take the verifier's public key (as JWK text, as SPKI DER, as the raw
    // point), use it as an HMAC secret, and name the asymmetric key's kid.
    let t = &*ES256;
    let kp = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &t.private()).unwrap();
    let spki = kp.public_key().as_der().unwrap().as_ref().to_vec();
    let point = kp.public_key().as_ref().to_vec();
    let jwk = t.rec.public_jwk.clone().unwrap().to_string();
    let p = parts(&t.good());
    for secret in [jwk.as_bytes(), spki.as_slice(), point.as_slice()] {
        for (alg, h) in [
            ("HS256", aws_lc_rs::hmac::HMAC_SHA256),
            ("HS384", aws_lc_rs::hmac::HMAC_SHA384),
            ("HS512", aws_lc_rs::hmac::HMAC_SHA512),
        ] {
            let header = json!({"alg": alg, "typ": "at+jwt", "kid": t.kid()}).to_string();
            let input = format!("{}.{}", b64(header.as_bytes()), p[1]);
            let tag =
                aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(h, secret), input.as_bytes());
            let forged = format!("{input}.{}", b64(tag.as_ref()));
            assert_eq!(t.check(&forged).err(), Some(Reason::BadSignature), "{alg}");
        }
    }
    // Same against an RSA key, keyed with its SPKI DER.
    let r = &*RS256;
    let kp = RsaKeyPair::from_pkcs8(&r.private()).unwrap();
    let spki = kp.public_key().as_der().unwrap().as_ref().to_vec();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": r.kid()}).to_string();
    let input = format!("{}.{}", b64(header.as_bytes()), parts(&r.good())[1]);
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &spki),
        input.as_bytes(),
    );
    assert_eq!(
        r.check(&format!("{input}.{}", b64(tag.as_ref()))).err(),
        Some(Reason::BadSignature)
    );
}

#[test]
fn an_alg_other_than_the_keys_is_a_bad_signature() {
    let t = &*ES256;
    for alg in Alg::ALL.into_iter().filter(|a| *a != Alg::ES256) {
        let h = json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": t.kid()});
        assert_eq!(
            t.check(&reheader(t, &h)).err(),
            Some(Reason::BadSignature),
            "{alg}"
        );
    }
    // Even a signature that is valid for the key, under a header naming another alg: the alg
    // is pinned to the key, not taken from the token.
    let r = &*RS256;
    let header = json!({"alg": "PS256", "typ": "at+jwt", "kid": r.kid()}).to_string();
    assert_eq!(
        r.check(&r.sign_raw(&header, &good_claims().to_string()))
            .err(),
        Some(Reason::BadSignature)
    );
}

#[test]
fn embedded_or_referenced_keys_and_crit_are_malformed() {
    let t = &*ES256;
    let jwk = t.rec.public_jwk.clone().unwrap();
    for (name, v) in [
        ("jwk", jwk),
        ("jwk", json!(null)),
        ("jku", json!("https://evil.test/jwks.json")),
        ("x5c", json!(["MIIB"])),
        ("x5u", json!("https://evil.test/cert.pem")),
        ("x5t", json!("dGh1bWI")),
        ("x5t#S256", json!("dGh1bWI")),
        ("crit", json!(["exp"])),
        ("crit", json!([])),
    ] {
        let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": t.kid()});
        h[name] = v;
        // Signed for real: refusing them does not depend on the signature failing.
        let token = t.sign_raw(&h.to_string(), &good_claims().to_string());
        assert_eq!(t.check(&token).err(), Some(Reason::Malformed), "{name}");
    }
    // Members veto does not know are ignored (RFC 7515 §4: unless listed in crit).
    let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": t.kid(), "cty": "x", "zzz": {}});
    assert!(
        t.check(&t.sign_raw(&h.to_string(), &good_claims().to_string()))
            .is_ok()
    );
}

#[test]
fn typ_must_be_the_expected_one() {
    let t = &*ES256;
    let signed_with_typ = |typ: Value| {
        let h = json!({"alg": "ES256", "typ": typ, "kid": t.kid()});
        t.check(&t.sign_raw(&h.to_string(), &good_claims().to_string()))
    };
    for ok in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        assert!(signed_with_typ(json!(ok)).is_ok(), "{ok}");
    }
    for wrong in [
        "JWT",
        "jwt",
        "at+jwt ",
        "refresh+jwt",
        "application/",
        "",
        "application/jwt",
    ] {
        assert_eq!(
            signed_with_typ(json!(wrong)).err(),
            Some(Reason::WrongType),
            "{wrong}"
        );
    }
    let h = json!({"alg": "ES256", "kid": t.kid()});
    let untyped = t.sign_raw(&h.to_string(), &good_claims().to_string());
    assert_eq!(t.check(&untyped).err(), Some(Reason::WrongType));
    for not_a_string in [json!(1), json!(null), json!(["at+jwt"])] {
        assert_eq!(signed_with_typ(not_a_string).err(), Some(Reason::Malformed));
    }
    // A refresh token presented where an access token is expected, and the other way round.
    let h = json!({"alg": "ES256", "typ": "rt+jwt", "kid": t.kid()});
    let rt = t.sign_raw(&h.to_string(), &good_claims().to_string());
    assert_eq!(t.check(&rt).err(), Some(Reason::WrongType));
    let as_refresh = Expect {
        typ: "rt+jwt",
        ..expect(NOW)
    };
    assert!(t.check_with(&rt, &as_refresh).is_ok());
    assert_eq!(
        t.check_with(&t.good(), &as_refresh).err(),
        Some(Reason::WrongType)
    );
    // The claim must agree with the header: an at+jwt that says it is a refresh token is not
    // an access token; `access` (or no claim) is; a non-string claim is malformed.
    let use_of = |u: Value| t.check(&t.sign_claims(&with(good_claims(), "token_use", u)));
    assert_eq!(use_of(json!("refresh")).err(), Some(Reason::WrongType));
    assert_eq!(use_of(json!("id")).err(), Some(Reason::WrongType));
    assert!(use_of(json!("access")).is_ok());
    assert_eq!(use_of(json!(1)).err(), Some(Reason::Malformed));
}

#[test]
fn kid_must_be_a_short_non_empty_string() {
    let t = &*ES256;
    for kid in [
        json!(""),
        json!(7),
        json!(null),
        json!([t.kid()]),
        json!("k".repeat(257)),
    ] {
        let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        assert_eq!(
            t.check(&reheader(t, &h)).err(),
            Some(Reason::Malformed),
            "{kid:.20}"
        );
    }
    let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k".repeat(256)});
    assert_eq!(t.check(&reheader(t, &h)).err(), Some(Reason::UnknownKey));
}

#[test]
fn duplicate_members_are_malformed_even_when_spelled_with_escapes() {
    let t = &*ES256;
    let kid = t.kid();
    let p = parts(&t.good());
    for header in [
        format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","alg":"ES256"}}"#),
        format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","k\u0069d":"{kid}"}}"#),
        format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}","cty":"a","cty":"b"}}"#),
        format!(r#"{{"alg":"ES256","typ":"at+jwt","typ":"JWT","kid":"{kid}"}}"#),
    ] {
        let token = format!("{}.{}.{}", b64(header.as_bytes()), p[1], p[2]);
        assert_eq!(t.check(&token).err(), Some(Reason::Malformed), "{header}");
    }
    let h = t.header();
    for payload in [
        format!(
            r#"{{"iss":"{ISS}","iat":{NOW},"exp":1,"exp":{},"jti":"j"}}"#,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"{ISS}","iat":{NOW},"exp":{},"e\u0078p":1,"jti":"j"}}"#,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"{ISS}","iat":{NOW},"exp":{},"jti":"j","iss":"{ISS}"}}"#,
            NOW + 60
        ),
        format!(
            r#"{{"iss":"{ISS}","iat":{NOW},"exp":{},"jti":"j","x":1,"x":1}}"#,
            NOW + 60
        ),
    ] {
        assert_eq!(
            t.check(&t.sign_raw(&h, &payload)).err(),
            Some(Reason::Malformed),
            "{payload}"
        );
    }
}

#[test]
fn the_shape_of_the_token_is_checked_first() {
    let t = &*ES256;
    let good = t.good();
    let p = parts(&good);
    let jwe_header = b64(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"k"}"#);
    let cases: Vec<(String, Reason)> = vec![
        (String::new(), Reason::Malformed),
        (".".into(), Reason::Malformed),
        ("..".into(), Reason::Malformed),
        ("...".into(), Reason::Malformed),
        (format!("{}.{}", p[0], p[1]), Reason::Malformed),
        (format!(".{}.{}", p[1], p[2]), Reason::Malformed),
        (format!("{}..{}", p[0], p[2]), Reason::Malformed),
        (format!("{good}."), Reason::Malformed),
        (
            format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
            Reason::Malformed,
        ),
        // JWE compact serialization: five segments.
        (
            format!(
                "{jwe_header}.{}.{}.{}.{}",
                b64(b"k"),
                b64(b"iv"),
                p[1],
                b64(b"tag")
            ),
            Reason::Malformed,
        ),
        (
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[1], p[2]),
            Reason::Malformed,
        ),
        // Padding, the standard alphabet, whitespace: not strict base64url.
        (format!("{}=.{}.{}", p[0], p[1], p[2]), Reason::Malformed),
        (format!("{}.{}==.{}", p[0], p[1], p[2]), Reason::Malformed),
        (
            format!("+{}.{}.{}", &p[0][1..], p[1], p[2]),
            Reason::Malformed,
        ),
        (format!("{}.{}/.{}", p[0], p[1], p[2]), Reason::Malformed),
        (format!(" {good}"), Reason::Malformed),
        (format!("{}.{} .{}", p[0], p[1], p[2]), Reason::Malformed),
        (format!("Bearer {good}"), Reason::Malformed),
        // Header that is not a JSON object.
        (
            format!("{}.{}.{}", b64(b"[]"), p[1], p[2]),
            Reason::Malformed,
        ),
        (
            format!("{}.{}.{}", b64(b"\"ES256\""), p[1], p[2]),
            Reason::Malformed,
        ),
        (
            format!("{}.{}.{}", b64(b"{"), p[1], p[2]),
            Reason::Malformed,
        ),
        (
            format!("{}.{}.{}", b64(&[0xff, 0xfe, b'{', b'}']), p[1], p[2]),
            Reason::Malformed,
        ),
        (
            format!(
                "{}.{}.{}",
                b64(format!("{} x", t.header()).as_bytes()),
                p[1],
                p[2]
            ),
            Reason::Malformed,
        ),
        // A signature segment outside unpadded base64url is not a JWS (RFC 7515 §7.1), like
        // such a header or payload; a well-formed segment that does not match is a bad signature.
        (format!("{}.{}.{}=", p[0], p[1], p[2]), Reason::Malformed),
        (format!("{}.{}.!!", p[0], p[1]), Reason::Malformed),
        (format!("{}.{}.", p[0], p[1]), Reason::BadSignature),
        (
            format!("{}.{}.{}", p[0], p[1], "A".repeat(2000)),
            Reason::BadSignature,
        ),
    ];
    for (token, reason) in cases {
        assert_eq!(t.check(&token).err(), Some(reason), "{token:.60}");
    }
}

#[test]
fn size_limit_applies_at_exactly_16_kib_and_before_parsing() {
    let t = &*HS256;
    // Grow a padding claim: the longest token within the limit verifies, one byte of payload
    // more (at least one character of token more) is malformed.
    let token_of = |pad: usize| t.sign_claims(&with(good_claims(), "pad", json!("x".repeat(pad))));
    let mut pad = MAX_TOKEN_BYTES * 3 / 4 - 300;
    while token_of(pad + 1).len() <= MAX_TOKEN_BYTES {
        pad += 1;
    }
    let within = token_of(pad);
    let over = token_of(pad + 1);
    assert!(within.len() <= MAX_TOKEN_BYTES && within.len() + 3 > MAX_TOKEN_BYTES);
    assert!(over.len() > MAX_TOKEN_BYTES);
    assert!(t.check(&within).is_ok());
    assert!(decode_unverified_claims(&within).is_some());
    assert_eq!(t.check(&over).err(), Some(Reason::Malformed));
    assert!(decode_unverified_claims(&over).is_none());
    // 17 KiB of anything: malformed without being looked at.
    let huge = format!("{}.e.e", "e".repeat(17 * 1024));
    assert_eq!(t.check(&huge).err(), Some(Reason::Malformed));
}

#[test]
fn damaged_signatures_are_bad_signatures_for_every_alg() {
    for t in [&*ES256, &*RS256, &*HS256, &*EDDSA] {
        let good = t.good();
        assert!(t.check(&good).is_ok(), "{}", t.key.alg);
        let p = parts(&good);
        let s = unb64(&p[2]);
        let mut flipped_first = s.clone();
        flipped_first[0] ^= 0x01;
        let mut flipped_last = s.clone();
        *flipped_last.last_mut().unwrap() ^= 0x80;
        let mut longer = s.clone();
        longer.push(0);
        let mut zero = s.clone();
        zero.iter_mut().for_each(|b| *b = 0);
        for bad in [
            &s[..s.len() - 1],
            &s[..s.len() / 2],
            &s[1..],
            flipped_first.as_slice(),
            flipped_last.as_slice(),
            longer.as_slice(),
            zero.as_slice(),
            &[],
        ] {
            let token = format!("{}.{}.{}", p[0], p[1], b64(bad));
            assert_eq!(
                t.check(&token).err(),
                Some(Reason::BadSignature),
                "{}",
                t.key.alg
            );
        }
        // The signature of another token of the same key.
        let other = t.sign_claims(&with(good_claims(), "jti", json!("j-2")));
        let token = format!("{}.{}.{}", p[0], p[1], parts(&other)[2]);
        assert_eq!(t.check(&token).err(), Some(Reason::BadSignature));
    }
    // ECDSA in DER form (what OpenSSL emits) is not the JOSE R||S form.
    let t = &*ES256;
    let p = parts(&t.good());
    let rs = unb64(&p[2]);
    let der = der_ecdsa(&rs[..32], &rs[32..]);
    let token = format!("{}.{}.{}", p[0], p[1], b64(&der));
    assert_eq!(t.check(&token).err(), Some(Reason::BadSignature));
}

fn der_ecdsa(r: &[u8], s: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let mut v: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        let mut out = vec![0x02, v.len() as u8];
        out.extend(v);
        out
    };
    let body: Vec<u8> = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn claims_must_have_the_registered_shapes() {
    let t = &*ES256;
    let malformed = [
        with(good_claims(), "exp", json!("9999999999")),
        with(good_claims(), "exp", json!(null)),
        with(good_claims(), "exp", json!(true)),
        with(good_claims(), "exp", json!([NOW + 60])),
        with(good_claims(), "exp", json!(1e300)),
        with(good_claims(), "exp", json!(u64::MAX)),
        without(good_claims(), "exp"),
        with(good_claims(), "iat", json!("1800000000")),
        without(good_claims(), "iat"),
        with(good_claims(), "nbf", json!("0")),
        with(good_claims(), "nbf", json!(null)),
        without(good_claims(), "jti"),
        with(good_claims(), "jti", json!("")),
        with(good_claims(), "jti", json!(42)),
        without(good_claims(), "iss"),
        with(good_claims(), "iss", json!(null)),
        with(good_claims(), "iss", json!([ISS])),
        with(good_claims(), "aud", json!(1)),
        with(good_claims(), "aud", json!(["api", 1])),
        with(good_claims(), "aud", json!({"api": true})),
        with(good_claims(), "sub", json!(1)),
        with(good_claims(), "sid", json!(["s"])),
        with(good_claims(), "client_id", json!(null)),
        with(good_claims(), "scope", json!(["read"])),
    ];
    for c in malformed {
        assert_eq!(
            t.check(&t.sign_claims(&c)).err(),
            Some(Reason::Malformed),
            "{c}"
        );
    }
    // Nesting: within the JSON parser's limit a custom claim is fine; beyond it, in the payload
    // or in an ignored header member, the token is malformed (and is never half-accepted).
    let nested = |depth: usize| json!(format!("{}1{}", "[".repeat(depth), "]".repeat(depth)));
    let deep = |depth: usize| {
        let text = nested(depth);
        let text = text.as_str().unwrap();
        let claims = good_claims().to_string();
        format!("{},\"x\":{text}}}", claims.trim_end_matches('}'))
    };
    // Duplicate member names are refused at any depth, not only among the claims themselves.
    let claims = good_claims().to_string();
    let body = claims.trim_end_matches('}');
    for nested_dup in [
        format!(r#"{body},"org":{{"id":"a","id":"b"}}}}"#),
        format!(r#"{body},"x":[1,{{"k":1,"\u006b":2}}]}}"#),
    ] {
        assert_eq!(
            t.check(&t.sign_raw(&t.header(), &nested_dup)).err(),
            Some(Reason::Malformed),
            "{nested_dup}"
        );
    }
    let distinct = format!(r#"{body},"org":{{"id":"a","plan":{{"id":"b"}}}}}}"#);
    assert!(t.check(&t.sign_raw(&t.header(), &distinct)).is_ok());
    assert!(t.check(&t.sign_raw(&t.header(), &deep(100))).is_ok());
    assert_eq!(
        t.check(&t.sign_raw(&t.header(), &deep(200))).err(),
        Some(Reason::Malformed)
    );
    let h = |depth: usize| {
        let text = nested(depth);
        format!(
            r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}","x":{}}}"#,
            t.kid(),
            text.as_str().unwrap()
        )
    };
    assert!(
        t.check(&t.sign_raw(&h(100), &good_claims().to_string()))
            .is_ok()
    );
    assert_eq!(
        t.check(&t.sign_raw(&h(200), &good_claims().to_string()))
            .err(),
        Some(Reason::Malformed)
    );
    for payload in ["[1,2]", "\"claims\"", "null", "", "{", "{}x", "{} {}"] {
        assert_eq!(
            t.check(&t.sign_raw(&t.header(), payload)).err(),
            Some(Reason::Malformed),
            "{payload}"
        );
    }
    // Floats are NumericDates too (RFC 7519 §2), truncated towards zero.
    let v = t
        .check(&t.sign_claims(&with(good_claims(), "exp", json!((NOW + 60) as f64 + 0.9))))
        .unwrap();
    assert_eq!(v.exp, NOW + 60);
    // A token with every registered claim present reads them all.
    let full = json!({
        "iss": ISS, "sub": "s", "aud": ["a", "b"], "iat": NOW, "exp": NOW + 5, "nbf": NOW - 5,
        "jti": "j", "sid": "ses", "client_id": "c", "scope": "read write", "tid": TENANT,
        "x": {"y": [1, 2]},
    });
    let v = t.check(&t.sign_claims(&full)).unwrap();
    assert_eq!(
        (
            v.sub,
            v.aud,
            v.nbf,
            v.sid,
            v.client_id,
            v.scope,
            v.iss,
            v.jti,
            v.iat,
            v.exp
        ),
        (
            Some("s".into()),
            Some(Audience::Many(vec!["a".into(), "b".into()])),
            Some(NOW - 5),
            Some("ses".into()),
            Some("c".into()),
            Some("read write".into()),
            ISS.into(),
            "j".into(),
            NOW,
            NOW + 5
        )
    );
    assert_eq!(Value::Object(v.claims.to_map()), full);
}

#[test]
fn time_issuer_and_audience_boundaries() {
    let t = &*EDDSA;
    let claims = json!({"iss": ISS, "iat": NOW, "exp": NOW + 60, "nbf": NOW + 10, "jti": "j",
        "aud": ["api", "billing"]});
    let token = t.sign_claims(&claims);
    let at = |now: i64, leeway: i64| {
        t.check_with(
            &token,
            &Expect {
                leeway,
                ..expect(now)
            },
        )
        .err()
    };
    assert_eq!(at(NOW + 9, 0), Some(Reason::NotYetValid));
    assert_eq!(at(NOW + 10, 0), None);
    assert_eq!(at(NOW + 5, 5), None);
    assert_eq!(at(NOW + 4, 5), Some(Reason::NotYetValid));
    assert_eq!(at(NOW + 59, 0), None);
    assert_eq!(at(NOW + 60, 0), Some(Reason::Expired));
    assert_eq!(at(NOW + 64, 5), None);
    assert_eq!(at(NOW + 65, 5), Some(Reason::Expired));
    // Extreme clocks and leeways saturate instead of overflowing.
    assert_eq!(at(i64::MAX, i64::MAX), None);
    assert_eq!(at(i64::MIN, 0), Some(Reason::NotYetValid));
    assert_eq!(at(i64::MAX, 0), Some(Reason::Expired));

    let aud = |a: Option<&'static str>| {
        t.check_with(
            &token,
            &Expect {
                audience: a,
                ..expect(NOW + 20)
            },
        )
        .err()
    };
    assert_eq!(aud(None), None);
    assert_eq!(aud(Some("api")), None);
    assert_eq!(aud(Some("billing")), None);
    assert_eq!(aud(Some("API")), Some(Reason::WrongAudience));
    assert_eq!(aud(Some("")), Some(Reason::WrongAudience));
    let no_aud = t.sign_claims(&good_claims());
    let want_api = Expect {
        audience: Some("api"),
        ..expect(NOW)
    };
    assert_eq!(
        t.check_with(&no_aud, &want_api).err(),
        Some(Reason::WrongAudience)
    );
    let one = t.sign_claims(&with(good_claims(), "aud", json!("api")));
    assert!(t.check_with(&one, &want_api).is_ok());

    // Issuer: exact, byte for byte.
    for iss in [
        format!("{ISS}/"),
        ISS.to_uppercase(),
        "https://veto.test/t/acme2".into(),
        String::new(),
    ] {
        let token = t.sign_claims(&with(good_claims(), "iss", json!(iss)));
        assert_eq!(t.check(&token).err(), Some(Reason::WrongIssuer), "{iss}");
    }
    // Order: the time checks come before issuer and audience.
    let stale = t.sign_claims(&with(
        with(good_claims(), "iss", json!("x")),
        "exp",
        json!(NOW - 1),
    ));
    assert_eq!(t.check_with(&stale, &want_api).err(), Some(Reason::Expired));
}

#[test]
fn revoking_by_token_skips_time_but_nothing_else() {
    let t = &*ES256;
    let expired = t.sign_claims(&with(good_claims(), "exp", json!(NOW - 3600)));
    let early = t.sign_claims(&with(good_claims(), "nbf", json!(NOW + 3600)));
    let no_time = Expect {
        check_time: false,
        ..expect(NOW)
    };
    assert_eq!(t.check(&expired).err(), Some(Reason::Expired));
    assert!(t.check_with(&expired, &no_time).is_ok());
    assert!(t.check_with(&early, &no_time).is_ok());
    let p = parts(&expired);
    let forged = format!("{}.{}.{}", p[0], p[1], b64(&[1u8; 64]));
    assert_eq!(
        t.check_with(&forged, &no_time).err(),
        Some(Reason::BadSignature)
    );
    let other_iss = t.sign_claims(&with(
        with(good_claims(), "iss", json!("x")),
        "exp",
        json!(1),
    ));
    assert_eq!(
        t.check_with(&other_iss, &no_time).err(),
        Some(Reason::WrongIssuer)
    );
    // Still a required, well-typed claim.
    let bad_exp = t.sign_claims(&with(good_claims(), "exp", json!("soon")));
    assert_eq!(
        t.check_with(&bad_exp, &no_time).err(),
        Some(Reason::Malformed)
    );
}

#[test]
fn key_states_decide_before_the_signature() {
    let master = MasterKey::generate();
    let mut rec = generate_signing_key(TENANT, Alg::ES256, None, &master, at(NOW - 10)).unwrap();
    let active = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    let claims = good_claims().to_string();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": rec.kid}).to_string();
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let token = format!("{input}.{}", b64(&active.sign(input.as_bytes()).unwrap()));
    let forged = format!("{input}.{}", b64(&[7u8; 64]));
    let run = |key: &Arc<LoadedKey>, token: &str, now: i64| {
        let key = key.clone();
        verify(token, move |_| Some(key.clone()), &expect(now)).err()
    };
    assert_eq!(run(&active, &token, NOW), None);
    assert!(active.signs() && active.verifies_at(i64::MAX));

    rec.status = KeyStatus::Retired;
    rec.retain_until = Some(at(NOW + 30));
    let retired = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    assert!(!retired.signs());
    assert_eq!(run(&retired, &token, NOW + 29), None);
    assert_eq!(run(&retired, &token, NOW + 30), Some(Reason::UnknownKey));
    assert_eq!(run(&retired, &forged, NOW + 31), Some(Reason::UnknownKey));
    rec.retain_until = None;
    let retired_forever_gone = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    assert_eq!(
        run(&retired_forever_gone, &token, NOW),
        Some(Reason::UnknownKey)
    );

    rec.status = KeyStatus::Revoked;
    rec.retain_until = Some(at(NOW + 3600));
    let revoked = Arc::new(LoadedKey::load(&rec, &master).unwrap());
    assert!(!revoked.signs() && !revoked.verifies_at(NOW));
    assert_eq!(run(&revoked, &token, NOW), Some(Reason::KeyRevoked));
    assert_eq!(run(&revoked, &forged, NOW), Some(Reason::KeyRevoked));
    // Unknown kid: nothing about the key leaks through a different reason.
    assert_eq!(
        verify(&token, |_| None, &expect(NOW)).err(),
        Some(Reason::UnknownKey)
    );
}

// ---------------------------------------------------------------------------------------------
// Issuance.
// ---------------------------------------------------------------------------------------------

#[test]
fn issued_tokens_carry_exactly_the_contracted_header_and_claims() {
    let t = &*ES256;
    let mut custom = Map::new();
    custom.insert("role".into(), json!("admin"));
    custom.insert("scope".into(), json!("read"));
    let many = Audience::Many(vec!["a".into(), "b".into()]);
    let i = issue_with(&t.key, Some(&many), Some(NOW + 1), Some("ses-1"), &custom);
    let p = parts(&i.token);
    let header: Value = serde_json::from_slice(&unb64(&p[0])).unwrap();
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": t.kid()})
    );
    let claims: Value = serde_json::from_slice(&unb64(&p[1])).unwrap();
    assert_eq!(
        claims,
        json!({"iss": ISS, "sub": "user-1", "aud": ["a", "b"], "iat": NOW, "exp": NOW + 300,
            "nbf": NOW + 1, "jti": i.jti, "tid": TENANT, "client_id": "ak_client",
            "sid": "ses-1", "role": "admin", "scope": "read"})
    );
    assert_eq!((i.iat, i.exp), (NOW, NOW + 300));
    assert_eq!(uuid::Uuid::parse_str(&i.jti).unwrap().get_version_num(), 4);
    assert_eq!(unb64(&p[2]).len(), 64, "JOSE R||S, not DER");

    // Optional claims are absent, not null, when not given; a single audience stays a string.
    let one = Audience::One("api".into());
    let i2 = issue_with(&t.key, Some(&one), None, None, &Map::new());
    let claims: Value = serde_json::from_slice(&unb64(&parts(&i2.token)[1])).unwrap();
    assert_eq!(claims["aud"], json!("api"));
    for absent in ["nbf", "sid", "scope"] {
        assert!(claims.get(absent).is_none(), "{absent}");
    }
    let i3 = issue_with(&t.key, None, None, None, &Map::new());
    let claims: Value = serde_json::from_slice(&unb64(&parts(&i3.token)[1])).unwrap();
    assert!(claims.get("aud").is_none());
    assert_ne!(i2.jti, i3.jti);
}

#[test]
fn custom_claims_that_collide_or_cannot_be_read_back_are_refused() {
    let also = ["client_id", "token_use", "fam", "gen"];
    for name in RESERVED_CLAIMS.iter().chain(also.iter()) {
        let mut m = Map::new();
        m.insert((*name).into(), json!("x"));
        let err = check_custom_claims(&m).unwrap_err();
        assert!(
            err.contains(&format!("{name:?}")) && err.contains("rename"),
            "{err}"
        );
    }
    for bad_scope in [json!(["read"]), json!(1), json!(null)] {
        let mut m = Map::new();
        m.insert("scope".into(), bad_scope);
        assert!(check_custom_claims(&m).unwrap_err().contains("scope"));
    }
    let mut m = Map::new();
    for (k, v) in [
        ("scope", json!("read write")),
        ("typ", json!("x")),
        ("roles", json!(["a"])),
        ("ISS", json!(1)),
    ] {
        m.insert(k.into(), v);
    }
    assert!(check_custom_claims(&m).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Keys, the master key and JWKs.
// ---------------------------------------------------------------------------------------------

/// Verifies `token`'s signature with a key rebuilt from nothing but the JWK, through aws-lc-rs
/// directly: proves the published n/e/x/y are the signing key's.
fn verify_with_jwk(jwk: &Value, alg: Alg, token: &str) -> bool {
    let (input, s) = token.rsplit_once('.').unwrap();
    let s = unb64(s);
    let field = |n: &str| unb64(jwk[n].as_str().unwrap());
    match alg {
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 => {
            let params: &sig::RsaParameters = match alg {
                Alg::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Alg::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Alg::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                _ => &sig::RSA_PSS_2048_8192_SHA256,
            };
            sig::RsaPublicKeyComponents {
                n: field("n"),
                e: field("e"),
            }
            .verify(params, input.as_bytes(), &s)
            .is_ok()
        }
        Alg::ES256 | Alg::ES384 => {
            let v: &sig::EcdsaVerificationAlgorithm = if alg == Alg::ES256 {
                &sig::ECDSA_P256_SHA256_FIXED
            } else {
                &sig::ECDSA_P384_SHA384_FIXED
            };
            let point = [vec![4u8], field("x"), field("y")].concat();
            UnparsedPublicKey::new(v, point)
                .verify(input.as_bytes(), &s)
                .is_ok()
        }
        Alg::EdDSA => UnparsedPublicKey::new(&sig::ED25519, field("x"))
            .verify(input.as_bytes(), &s)
            .is_ok(),
        _ => false,
    }
}

#[test]
fn jwks_have_the_rfc7517_shape_for_every_asymmetric_alg() {
    let master = MasterKey::generate();
    for alg in Alg::ALL {
        let rec = generate_signing_key(TENANT, alg, None, &master, at(NOW)).unwrap();
        let key = LoadedKey::load(&rec, &master).unwrap();
        assert_eq!(
            key.public_jwk, rec.public_jwk,
            "{alg}: load recomputes the same JWK"
        );
        if alg.is_hmac() {
            assert!(rec.public_jwk.is_none());
            let secret = master
                .open(TENANT, &rec.kid, &rec.encrypted_private)
                .unwrap();
            let want = match alg {
                Alg::HS256 => 32,
                Alg::HS384 => 48,
                _ => 64,
            };
            assert_eq!(secret.len(), want, "{alg}");
            assert_ne!(secret.as_slice(), &[0u8; 64][..want]);
            continue;
        }
        let jwk = rec.public_jwk.clone().unwrap();
        let obj = jwk.as_object().unwrap();
        let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
        names.sort_unstable();
        let (kty, expected): (&str, &[&str]) = match alg {
            Alg::ES256 | Alg::ES384 => ("EC", &["alg", "crv", "kid", "kty", "use", "x", "y"]),
            Alg::EdDSA => ("OKP", &["alg", "crv", "kid", "kty", "use", "x"]),
            _ => ("RSA", &["alg", "e", "kid", "kty", "n", "use"]),
        };
        assert_eq!(
            names, expected,
            "{alg}: exactly these members, no private ones"
        );
        assert_eq!(jwk["kty"], kty);
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], rec.kid.as_str());
        for (_, v) in obj
            .iter()
            .filter(|(k, _)| ["n", "e", "x", "y"].contains(&k.as_str()))
        {
            let s = v.as_str().unwrap();
            assert!(
                !s.contains('=') && !s.contains('+') && !s.contains('/'),
                "{alg}: {s}"
            );
            assert_eq!(b64url(&unb64(s)), s, "{alg}: canonical base64url");
        }
        match alg {
            Alg::ES256 | Alg::ES384 => {
                let (crv, len) = if alg == Alg::ES256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                assert_eq!(jwk["crv"], crv);
                assert_eq!(unb64(jwk["x"].as_str().unwrap()).len(), len);
                assert_eq!(unb64(jwk["y"].as_str().unwrap()).len(), len);
            }
            Alg::EdDSA => {
                assert_eq!(jwk["crv"], "Ed25519");
                assert_eq!(unb64(jwk["x"].as_str().unwrap()).len(), 32);
            }
            _ => {
                let bits = match alg {
                    Alg::RS384 | Alg::RS512 => 3072,
                    _ => 2048,
                };
                let n = unb64(jwk["n"].as_str().unwrap());
                assert_eq!(n.len() * 8, bits, "{alg}");
                assert!(n[0] & 0x80 != 0, "no leading zero, full size");
                assert_eq!(unb64(jwk["e"].as_str().unwrap()), [1, 0, 1]);
            }
        }
        let key = Arc::new(key);
        let token = issue_with(&key, None, None, None, &Map::new()).token;
        assert!(
            verify_with_jwk(&jwk, alg, &token),
            "{alg}: JWK verifies the key's tokens"
        );
        let other = TestKey::new(Alg::EdDSA).good();
        assert!(!verify_with_jwk(&jwk, alg, &other));
    }
}

#[test]
fn master_key_encoding_and_sealing() {
    let err = MasterKey::from_base64("c2hvcnQ=").unwrap_err();
    assert!(
        err.to_string()
            .contains("VETO_MASTER_KEY must be 32 random bytes in base64")
    );
    let std = base64::engine::general_purpose::STANDARD;
    for bad in [
        std.encode([7u8; 31]),
        std.encode([7u8; 33]),
        String::new(),
        "!!!!".into(),
    ] {
        assert!(
            matches!(MasterKey::from_base64(&bad), Err(KeyError::BadMasterKey)),
            "{bad}"
        );
    }
    let raw = [0xfbu8; 32];
    let from_raw = MasterKey::from_bytes(raw);
    let b = std.encode(raw);
    assert!(
        b.contains('+') || b.contains('/'),
        "standard alphabet exercised"
    );
    let parsed = MasterKey::from_base64(&format!("{b}\n")).unwrap();
    assert_eq!(parsed.to_base64().as_str(), b);
    assert_eq!(from_raw.to_base64().as_str(), b);
    assert!(MasterKey::from_base64(&URL_SAFE_NO_PAD.encode(raw)).is_err());
    assert_eq!(format!("{from_raw:?}"), "MasterKey(..)");

    let m = MasterKey::generate();
    let a = m.seal("acme", "k1", b"private").unwrap();
    let b2 = m.seal("acme", "k1", b"private").unwrap();
    assert_ne!(a, b2, "a fresh nonce per seal");
    assert_eq!(a.len(), 12 + 7 + 16, "nonce || ciphertext || tag");
    assert!(!a.windows(7).any(|w| w == b"private"));
    assert_eq!(m.open("acme", "k1", &b2).unwrap().as_slice(), b"private");
    assert!(matches!(m.open("acme2", "k1", &a), Err(KeyError::Decrypt)));
    assert!(matches!(m.open("acme", "k11", &a), Err(KeyError::Decrypt)));
    assert!(matches!(m.open("acm", "e\0k1", &a), Err(KeyError::Decrypt)));
    for i in 0..a.len() {
        let mut flipped = a.clone();
        flipped[i] ^= 0x04;
        assert!(m.open("acme", "k1", &flipped).is_err(), "byte {i}");
    }
    for cut in [0, 1, 12, 27, a.len() - 1] {
        assert!(m.open("acme", "k1", &a[..cut]).is_err());
    }
    // A tenant with NUL could make two (tenant, kid) pairs share one context: refused outright.
    assert!(m.seal("a\0b", "c", b"x").is_err());
    assert!(m.seal("a", "b\0c", b"x").is_ok());
    // The generic variant binds its context the same way, and never matches a key context.
    let s = m.seal_with_context("session:acme", b"s").unwrap();
    assert_eq!(
        m.open_with_context("session:acme", &s).unwrap().as_slice(),
        b"s"
    );
    assert!(m.open_with_context("session:acme2", &s).is_err());
    assert!(
        m.open_with_context("veto-signing-key-v1\0acme\0k1", &a)
            .is_ok()
    );
    assert!(
        m.open_with_context("veto-signing-key-v1\0acme\0k1", &s)
            .is_err()
    );
}

#[test]
fn stored_keys_cannot_be_moved_or_relabelled() {
    let m = MasterKey::generate();
    let rec = generate_signing_key("acme", Alg::ES256, None, &m, at(NOW)).unwrap();
    let moved = SigningKeyRecord {
        tenant: "globex".into(),
        ..rec.clone()
    };
    assert!(matches!(
        LoadedKey::load(&moved, &m),
        Err(KeyError::Decrypt)
    ));
    let renamed = SigningKeyRecord {
        kid: new_kid(),
        ..rec.clone()
    };
    assert!(matches!(
        LoadedKey::load(&renamed, &m),
        Err(KeyError::Decrypt)
    ));
    assert!(matches!(
        LoadedKey::load(&rec, &MasterKey::generate()),
        Err(KeyError::Decrypt)
    ));
    for alg in [Alg::ES384, Alg::RS256, Alg::EdDSA, Alg::HS256, Alg::HS512] {
        let relabelled = SigningKeyRecord { alg, ..rec.clone() };
        assert!(
            matches!(LoadedKey::load(&relabelled, &m), Err(KeyError::BadMaterial(a)) if a == alg)
        );
    }
    let hs384 = generate_signing_key("acme", Alg::HS384, None, &m, at(NOW)).unwrap();
    for alg in [Alg::HS256, Alg::HS512, Alg::ES256] {
        let relabelled = SigningKeyRecord {
            alg,
            ..hs384.clone()
        };
        assert!(matches!(
            LoadedKey::load(&relabelled, &m),
            Err(KeyError::BadMaterial(_))
        ));
    }
    let garbage = SigningKeyRecord {
        encrypted_private: m.seal("acme", &rec.kid, b"not a key").unwrap(),
        ..rec.clone()
    };
    assert!(matches!(
        LoadedKey::load(&garbage, &m),
        Err(KeyError::BadMaterial(Alg::ES256))
    ));

    // Nothing secret reaches Debug output or error messages.
    let hs = generate_signing_key("acme", Alg::HS256, None, &m, at(NOW)).unwrap();
    let secret = m.open("acme", &hs.kid, &hs.encrypted_private).unwrap();
    let loaded = LoadedKey::load(&hs, &m).unwrap();
    for text in [format!("{hs:?}"), format!("{loaded:?}")] {
        assert!(text.contains(&hs.kid));
        for needle in [
            b64url(&secret),
            hex::encode(&*secret),
            b64url(&hs.encrypted_private),
        ] {
            assert!(!text.contains(&needle), "{text}");
        }
        assert!(!text.contains("encrypted_private") && !text.contains("material"));
    }
}

/// An issued token is a bearer credential and an API key's hash is derived from its secret:
/// neither reaches a `{:?}`.
#[test]
fn issued_tokens_and_api_key_hashes_stay_out_of_debug() {
    let t = TestKey::new(Alg::ES256);
    let issued = issue_with(&t.key, None, None, None, &Map::new());
    let text = format!("{issued:?}");
    assert!(text.contains(&issued.jti), "{text}");
    assert!(
        !text.contains(&issued.token) && !text.contains("token"),
        "{text}"
    );

    let (id, secret) = veto_core::apikey::generate_api_key();
    let record = veto_core::apikey::ApiKeyRecord {
        id: id.clone(),
        tenant: None,
        name: "ci".into(),
        scopes: vec![],
        key_hash: veto_core::apikey::hash_secret(&secret),
        created_at: at(NOW),
    };
    let text = format!("{record:?}");
    assert!(text.contains(&id), "{text}");
    assert!(
        !text.contains("key_hash") && !text.contains(&secret),
        "{text}"
    );
}

#[test]
fn kids_are_unique_url_safe_and_sort_by_creation() {
    let kids: Vec<String> = (0..1000).map(|_| new_kid()).collect();
    let unique: std::collections::HashSet<&String> = kids.iter().collect();
    assert_eq!(unique.len(), 1000);
    // Keys created in the same second still have an order: "the newest key" is well defined.
    assert!(kids.windows(2).all(|w| w[0] < w[1]), "kids not increasing");
    for k in &kids {
        let tail = k.strip_prefix("k_").unwrap();
        assert_eq!(tail.len(), 32);
        assert!(tail.bytes().all(|b| b.is_ascii_hexdigit()), "{k}");
    }
}

// ---------------------------------------------------------------------------------------------
// Key ring.
// ---------------------------------------------------------------------------------------------

#[test]
fn keyring_lifecycle_selection_and_jwks() {
    let m = MasterKey::generate();
    let ring = KeyRing::new();
    assert!(ring.is_empty());
    let make = |tenant: &str, alg, aud: Option<&str>, created| {
        let rec =
            generate_signing_key(tenant, alg, aud.map(str::to_owned), &m, at(created)).unwrap();
        ring.upsert(LoadedKey::load(&rec, &m).unwrap());
        rec
    };
    let unbound = make("acme", Alg::EdDSA, None, NOW - 50);
    let bound_new = make("acme", Alg::EdDSA, Some("billing"), NOW);
    let hs = make("acme", Alg::HS256, None, NOW - 40);
    let other_tenant = make("globex", Alg::EdDSA, None, NOW + 10);
    assert_eq!(ring.len(), 4);

    // `None` never picks a key reserved for an audience, even the newest.
    assert_eq!(
        ring.signing_key("acme", Alg::EdDSA, None).unwrap().kid,
        unbound.kid
    );
    assert_eq!(
        ring.signing_key("acme", Alg::EdDSA, Some("billing"))
            .unwrap()
            .kid,
        bound_new.kid
    );
    assert_eq!(
        ring.signing_key("acme", Alg::EdDSA, Some("crm"))
            .unwrap()
            .kid,
        unbound.kid
    );
    assert_eq!(
        ring.signing_key("acme", Alg::HS256, Some("crm"))
            .unwrap()
            .kid,
        hs.kid
    );
    assert_eq!(
        ring.signing_key("globex", Alg::EdDSA, None).unwrap().kid,
        other_tenant.kid
    );
    assert!(
        ring.get("globex", &unbound.kid).is_none(),
        "kids are looked up per tenant"
    );
    assert_eq!(ring.get("acme", &unbound.kid).unwrap().tenant, "acme");

    let kids = |t: &str| {
        ring.list(t)
            .iter()
            .map(|k| k.kid.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kids("acme"),
        [bound_new.kid.clone(), hs.kid.clone(), unbound.kid.clone()]
    );
    assert!(kids("nobody").is_empty());

    let jwks_kids = |now| {
        let j = ring.jwks("acme", now);
        let mut v: Vec<String> = j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![unbound.kid.clone(), bound_new.kid.clone()];
    both.sort();
    assert_eq!(
        jwks_kids(NOW),
        both,
        "HMAC keys never published, other tenants not mixed in"
    );

    // Retire the unbound key: it stops signing at once, and stays published until retain_until.
    let mut retired = unbound.clone();
    retired.status = KeyStatus::Retired;
    retired.retain_until = Some(at(NOW + 100));
    ring.upsert(LoadedKey::load(&retired, &m).unwrap());
    assert_eq!(ring.len(), 4, "upsert replaces by (tenant, kid)");
    assert!(ring.signing_key("acme", Alg::EdDSA, None).is_none());
    assert_eq!(
        ring.signing_key("acme", Alg::EdDSA, Some("billing"))
            .unwrap()
            .kid,
        bound_new.kid
    );
    assert_eq!(jwks_kids(NOW + 99), both);
    assert_eq!(jwks_kids(NOW + 100), vec![bound_new.kid.clone()]);

    // Revoke: gone from the JWKS at once, still listed (with its status) for the admin view.
    let mut revoked = bound_new.clone();
    revoked.status = KeyStatus::Revoked;
    ring.upsert(LoadedKey::load(&revoked, &m).unwrap());
    assert_eq!(jwks_kids(NOW), vec![unbound.kid.clone()]);
    assert!(
        ring.signing_key("acme", Alg::EdDSA, Some("billing"))
            .is_none()
    );
    assert_eq!(
        ring.get("acme", &bound_new.kid).unwrap().status,
        KeyStatus::Revoked
    );

    ring.remove("acme", &hs.kid);
    ring.remove("acme", "no-such-kid");
    ring.remove("no-such-tenant", &hs.kid);
    assert!(ring.get("acme", &hs.kid).is_none());
    assert_eq!(ring.len(), 3);
    assert_eq!(ring.jwks("nobody", NOW), json!({"keys": []}));

    // Equal creation times: the choice is still deterministic.
    let a = make("tie", Alg::EdDSA, None, NOW);
    let b = make("tie", Alg::EdDSA, None, NOW);
    let first = ring
        .signing_key("tie", Alg::EdDSA, None)
        .unwrap()
        .kid
        .clone();
    assert!(first == a.kid || first == b.kid);
    for _ in 0..10 {
        assert_eq!(
            ring.signing_key("tie", Alg::EdDSA, None).unwrap().kid,
            first
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths: exactly representable, so they survive serde_json's default float parsing
        // (which may be one ULP off for arbitrary doubles without its `float_roundtrip`).
        (-8_000_000i64..8_000_000).prop_map(|i| Value::from(i as f64 / 8.0)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn base64url_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| b64(&b)),
        "[A-Za-z0-9_-]{0,40}",
        // Real JSON objects, so the parser gets past the first byte.
        prop::collection::btree_map(
            "(alg|typ|kid|crit|jwk|exp|iat|jti|iss|[a-z]{1,3})",
            json_value(),
            0..5
        )
        .prop_map(|m| b64(Value::Object(m.into_iter().collect())
            .to_string()
            .as_bytes())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary dot-joined base64url segments never panic and never verify, whatever the key.
    #[test]
    fn dot_joined_segments_never_verify(segs in prop::collection::vec(base64url_segment(), 0..6)) {
        let token = segs.join(".");
        for t in [&*ES256, &*HS256] {
            prop_assert!(t.check(&token).is_err());
            let k = t.key.clone();
            let anything = Expect { check_time: false, ..expect(NOW) };
            prop_assert!(verify(&token, move |_| Some(k.clone()), &anything).is_err());
        }
        let _ = decode_unverified_claims(&token);
    }

    /// Changing any one character of a valid token, to anything, is always refused: base64url is
    /// decoded strictly, so no two spellings of a segment exist.
    #[test]
    fn any_single_character_change_is_refused(pos in any::<prop::sample::Index>(), c in any::<char>()) {
        let t = &*HS256;
        let token = GOOD_HS.as_str();
        let i = pos.index(token.chars().count());
        let original = token.chars().nth(i).unwrap();
        prop_assume!(original != c);
        let changed: String = token.chars().enumerate().map(|(j, o)| if j == i { c } else { o }).collect();
        prop_assert!(t.check(&changed).is_err());
        // Removing it or doubling it too.
        let removed: String = token.chars().enumerate().filter(|(j, _)| *j != i).map(|(_, o)| o).collect();
        prop_assert!(t.check(&removed).is_err());
    }

    /// Whatever custom claims a caller gives (that pass the check), they come back exactly.
    #[test]
    fn issue_then_verify_round_trips_custom_claims(
        claims in prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_.:-]{0,10}", json_value(), 0..6),
        ttl in 1i64..1_000_000,
        aud in prop::option::of(prop_oneof![
            ".{0,10}".prop_map(|a| Audience::One(a.into())),
            prop::collection::vec(".{0,10}", 0..3).prop_map(Audience::Many),
        ]),
    ) {
        let claims: Map<String, Value> = claims.into_iter().collect();
        prop_assume!(check_custom_claims(&claims).is_ok());
        let t = &*EDDSA;
        let issued = issue(&t.key, &IssueInput {
            issuer: ISS, tenant: TENANT, sub: "s", aud: aud.as_ref(), iat: NOW,
            ttl_seconds: ttl, nbf: None, sid: None, client_id: "c", claims: &claims, typ: "at+jwt",
        }).unwrap();
        let v = t.check(&issued.token).unwrap();
        prop_assert_eq!(v.exp, NOW + ttl);
        prop_assert_eq!(&v.aud, &aud);
        prop_assert_eq!(&v.jti, &issued.jti);
        let all = v.claims.to_map();
        for (k, want) in &claims {
            prop_assert_eq!(all.get(k), Some(want));
        }
        prop_assert_eq!(all.len(), claims.len() + 7 + usize::from(aud.is_some()));
        prop_assert_eq!(decode_unverified_claims(&issued.token), Some(all));
        // What a verify answer embeds is the signed payload itself.
        let payload = issued.token.split('.').nth(1).unwrap();
        prop_assert_eq!(v.claims.as_json().as_bytes(), &unb64(payload)[..]);
    }

    /// base64url as veto writes it is canonical: it decodes back to the same bytes, and
    /// re-encoding the decoded bytes gives the same text.
    #[test]
    fn base64url_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let s = b64url(&bytes);
        prop_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        prop_assert_eq!(URL_SAFE_NO_PAD.decode(&s).unwrap(), bytes);
    }
}

proptest! {
    // Key generation per case: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A JWK survives JSON text and back, and still names the key that signed: for fresh keys of
    /// the quick-to-generate kinds.
    #[test]
    fn jwk_round_trips_through_json(pick in 0usize..3) {
        let alg = [Alg::ES256, Alg::ES384, Alg::EdDSA][pick];
        let t = TestKey::new(alg);
        let jwk = t.rec.public_jwk.clone().unwrap();
        let reparsed: Value = serde_json::from_str(&jwk.to_string()).unwrap();
        prop_assert_eq!(&reparsed, &jwk);
        let token = issue_with(&t.key, None, None, None, &Map::new()).token;
        prop_assert!(verify_with_jwk(&reparsed, alg, &token));
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(reparsed).unwrap();
        prop_assert_eq!(parsed.common.key_id.as_deref(), Some(t.kid()));
    }
}

static GOOD_HS: LazyLock<String> = LazyLock::new(|| HS256.good());
