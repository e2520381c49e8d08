//! The verify pipeline, steps 1–3 of docs/architecture.md ("Is this token good?"): parse, key and signature,
//! claims. Step 4, the revocation state, is `index::RevocationIndex::check`; `check::Checker`
//! runs all four in their order.
//!
//! Hardening (RFC 8725): the header `alg` must equal the alg pinned to the key named by `kid`
//! (defeats `none`, alg substitution and HMAC-keyed-with-the-public-key); keys embedded in or
//! referenced by the header (`jwk`, `jku`, `x5c`, `x5u`, `x5t`, `x5t#S256`) are refused, never
//! fetched; any `crit` is refused (veto understands no extension); `typ` must be the expected one
//! (no token-type confusion); duplicate JSON members are refused (parsers disagree on which one
//! wins).
//!
//! Cost: the parse around the signature check is kept lean (header read into borrowed slots, the
//! signature decoded on the stack, registered claims found in one pass) because it is paid on every
//! request; `benches/core.rs` compares it with the bare signature check.
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::Alg;
use crate::encoding::{b64url_decode, is_b64url_byte};
use crate::keys::{KeyStatus, LoadedKey};
use crate::reason::Reason;
use crate::token::Audience;

/// Tokens longer than this are `malformed` without being parsed (contract: 16 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Header members that carry or point at keys: trusting them would let a token pick its own key.
const KEY_CARRYING_HEADERS: [&str; 6] = ["jwk", "jku", "x5c", "x5u", "x5t", "x5t#S256"];

pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: Option<&'a str>,
    /// Expected JOSE `typ`, e.g. `at+jwt`.
    pub typ: &'a str,
    pub now: i64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: i64,
    /// `false` when revoking by token: an expired token can still be revoked.
    pub check_time: bool,
}

#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub kid: String,
    pub alg: Alg,
    pub jti: String,
    pub sub: Option<String>,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub sid: Option<String>,
    pub aud: Option<Audience>,
    pub iss: String,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// `tid`, when a string (veto sets it on every token it issues).
    pub tid: Option<String>,
    /// `fam`, when a string: the refresh family of a refresh token, or of an access token
    /// minted by a refresh (revoking the family ends both).
    pub fam: Option<String>,
    /// Every claim, as signed.
    pub claims: Claims,
}

/// The payload of a verified token as its signer wrote it: JSON text already checked to be one
/// object with distinct member names. Kept as text because a check reads only the registered
/// claims (parsed in the same single pass that checks the object), and an answer that shows
/// every claim embeds the text as it is: no map of owned values is built per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims(String);

impl Claims {
    /// The JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The claims as a map, parsed now (for the rare paths that need other claims than the
    /// registered ones, such as a refresh carrying custom claims over).
    pub fn to_map(&self) -> Map<String, Value> {
        // The text parsed as an object once already, so this cannot fail; an empty map is
        // the harmless answer if it somehow did.
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl serde::Serialize for Claims {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Borrowed: the text is embedded as it is, not copied.
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Any JSON value, read and dropped without building it. Unlike serde's `IgnoredAny` (which
/// serde_json skips with a loop, at any depth), it goes through `deserialize_any`, so the
/// parser's nesting limit (128) holds: a claim nested deeper is `malformed` here exactly as
/// when the claims were read into values, and a payload that passes can always be parsed again
/// (for a response, or by the caller). Objects at every depth must have distinct member names:
/// a verify answer embeds the payload as signed, and no client should have to guess which of two
/// equal names its parser keeps.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_unit<E>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Skip, A::Error> {
                while a.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Skip, A::Error> {
                let mut names: Vec<Str<'de>> = Vec::new();
                while let Some(name) = m.next_key::<Str<'de>>()? {
                    m.next_value::<Skip>()?;
                    names.push(name);
                }
                distinct(&mut names)?;
                Ok(Skip)
            }
        }
        d.deserialize_any(V)
    }
}

/// Refuses an object whose member names (decoded) repeat. Sorted and checked for equal
/// neighbours: cheaper than a set for the dozen members a token has.
fn distinct<E: de::Error>(names: &mut [Str<'_>]) -> Result<(), E> {
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if names.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(E::custom("duplicate member"));
    }
    Ok(())
}

/// A JSON string that borrows from the decoded segment when it holds no escape (the usual case),
/// so reading the header allocates nothing per member.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The JOSE header, reduced to what the rules look at. It is read on every verify, so it is
/// deserialized straight into these slots instead of through a `Map` of owned `Value`s (which
/// cost about as much as an HMAC verify). The rules are the same as for any strict object:
/// every member name at most once; `alg`, `typ` and `kid`, when present, must be strings.
#[derive(Default)]
struct Header<'a> {
    alg: Option<Str<'a>>,
    typ: Option<Str<'a>>,
    kid: Option<Str<'a>>,
    /// A member that carries or points at a key, or a `crit`: the token is refused whatever
    /// the value (even `null`), so the value itself is skipped.
    refused: bool,
}

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JOSE header: a JSON object with distinct member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Header<'de>, A::Error> {
                let mut h = Header::default();
                // Names of the members veto ignores, only to refuse a repeated one. Headers
                // veto issues have none, so this stays unallocated on the hot path.
                let mut others: Vec<Str<'de>> = Vec::new();
                while let Some(name) = m.next_key::<Str<'de>>()? {
                    let slot = match name.0.as_ref() {
                        "alg" => &mut h.alg,
                        "typ" => &mut h.typ,
                        "kid" => &mut h.kid,
                        other => {
                            if others.iter().any(|o| o.0 == other) {
                                return Err(de::Error::custom("duplicate member"));
                            }
                            if other == "crit" || KEY_CARRYING_HEADERS.contains(&other) {
                                h.refused = true;
                            }
                            m.next_value::<Skip>()?;
                            others.push(name);
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    *slot = Some(m.next_value::<Str<'de>>()?);
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON object with distinct member names, as a map (a plain map would keep the last of two
/// equal names silently, so the names are checked first).
fn strict_object(json: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice::<Registered>(json).ok()?;
    serde_json::from_slice(json).ok()
}

/// Splits a compact JWS into exactly three segments; anything else (a JWE has five) is `None`.
fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut it = token.split('.');
    let (h, p, s) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.is_empty() || p.is_empty() {
        return None;
    }
    Some((h, p, s))
}

/// A NumericDate: a JSON number (integer, or a float truncated towards zero) within i64.
/// A string, bool or null is not a date, whatever it contains.
fn numeric_date(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f.abs() < 9.2e18).then_some(f.trunc() as i64)
}

/// The registered claims veto reads, taken out of the payload in the one pass that also checks
/// it is an object with distinct member names. Names are compared borrowed (decoded only when
/// they hold an escape, so `"\u0065xp"` is `exp`, and a repeat of it is caught); every other
/// member's value is skipped without being built.
#[derive(Default)]
struct Registered {
    exp: Option<Value>,
    iat: Option<Value>,
    nbf: Option<Value>,
    jti: Option<Value>,
    iss: Option<Value>,
    sub: Option<Value>,
    sid: Option<Value>,
    aud: Option<Value>,
    client_id: Option<Value>,
    scope: Option<Value>,
    token_use: Option<Value>,
    tid: Option<Value>,
    fam: Option<Value>,
}

impl<'de> Deserialize<'de> for Registered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Registered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with distinct member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Registered, A::Error> {
                let mut r = Registered::default();
                let mut names: Vec<Str<'de>> = Vec::with_capacity(16);
                while let Some(name) = m.next_key::<Str<'de>>()? {
                    let slot = match name.0.as_ref() {
                        "exp" => &mut r.exp,
                        "iat" => &mut r.iat,
                        "nbf" => &mut r.nbf,
                        "jti" => &mut r.jti,
                        "iss" => &mut r.iss,
                        "sub" => &mut r.sub,
                        "sid" => &mut r.sid,
                        "aud" => &mut r.aud,
                        "client_id" => &mut r.client_id,
                        "scope" => &mut r.scope,
                        "token_use" => &mut r.token_use,
                        "tid" => &mut r.tid,
                        "fam" => &mut r.fam,
                        _ => {
                            m.next_value::<Skip>()?;
                            names.push(name);
                            continue;
                        }
                    };
                    *slot = Some(m.next_value::<Value>()?);
                    names.push(name);
                }
                distinct(&mut names)?;
                Ok(r)
            }
        }
        d.deserialize_map(V)
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); anything else is malformed.
fn audience(v: &Value) -> Option<Audience> {
    match v {
        Value::String(s) => Some(Audience::One(s.clone())),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Audience::Many),
        _ => None,
    }
}

fn typ_matches(got: &str, want: &str) -> bool {
    // RFC 9068 §2.1 / RFC 7515 §4.1.9: the `application/` prefix may be omitted; compare
    // case-insensitively.
    const PREFIX: &str = "application/";
    let got = match got.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => got.get(PREFIX.len()..).unwrap_or(got),
        _ => got,
    };
    got.eq_ignore_ascii_case(want)
}

/// Unpadded base64url: only its alphabet, and no length that leaves a lone 6-bit group.
fn is_b64url_shape(segment: &str) -> bool {
    segment.len() % 4 != 1 && segment.bytes().all(is_b64url_byte)
}

/// Longest signature any key veto accepts can produce: RSA-8192 (`RSA_*_2048_8192_*`).
const MAX_SIGNATURE_BYTES: usize = 8192 / 8;

/// Verifies `token` against the keys `lookup` knows (by kid) and `expect`.
pub fn verify(
    token: &str,
    lookup: impl Fn(&str) -> Option<Arc<LoadedKey>>,
    expect: &Expect<'_>,
) -> Result<VerifiedToken, Reason> {
    // 1. Shape and header.
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Reason::Malformed);
    }
    let (h64, p64, s64) = segments(token).ok_or(Reason::Malformed)?;
    let header_json = b64url_decode(h64).ok_or(Reason::Malformed)?;
    // Only base64 here, so that a payload that is not strict base64url is `malformed` whatever
    // its signature; its JSON is read only once the signature holds (step 3).
    let payload_json = b64url_decode(p64).ok_or(Reason::Malformed)?;
    // The signature is decoded only once a key is found, but its shape is checked here: a third
    // segment outside the base64url alphabet is not a JWS at all (RFC 7515 §7.1), just like such
    // a header or payload, so it is `malformed` rather than a signature that happens not to match.
    if !is_b64url_shape(s64) {
        return Err(Reason::Malformed);
    }
    let header: Header<'_> = serde_json::from_slice(&header_json).map_err(|_| Reason::Malformed)?;
    let alg: Alg = header
        .alg
        .as_ref()
        .and_then(|a| a.0.parse().ok())
        .ok_or(Reason::Malformed)?;
    if header.refused {
        return Err(Reason::Malformed);
    }
    match &header.typ {
        Some(t) if typ_matches(&t.0, expect.typ) => {}
        _ => return Err(Reason::WrongType),
    }
    let kid: &str = header
        .kid
        .as_ref()
        .map(|k| k.0.as_ref())
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or(Reason::Malformed)?;

    // 2. Key and signature.
    let key = lookup(kid).ok_or(Reason::UnknownKey)?;
    if key.status == KeyStatus::Revoked {
        return Err(Reason::KeyRevoked);
    }
    if !key.verifies_at(expect.now) {
        return Err(Reason::UnknownKey);
    }
    if key.alg != alg {
        return Err(Reason::BadSignature);
    }
    // On the stack: a signature never needs more, and a longer one is simply not valid.
    let mut sig_buf = [0u8; MAX_SIGNATURE_BYTES];
    let sig_len = URL_SAFE_NO_PAD
        .decode_slice(s64, &mut sig_buf)
        .map_err(|_| Reason::BadSignature)?;
    let signature = sig_buf.get(..sig_len).ok_or(Reason::BadSignature)?;
    let signed = token
        .as_bytes()
        .get(..h64.len() + 1 + p64.len())
        .ok_or(Reason::Malformed)?;
    if !key.verify_signature(signed, signature) {
        return Err(Reason::BadSignature);
    }

    // 3. Claims. Signature first, then parse: an unsigned payload is never interpreted.
    let r: Registered = serde_json::from_slice(&payload_json).map_err(|_| Reason::Malformed)?;
    // Valid UTF-8: the JSON parser has just accepted every byte of it.
    let claims = Claims(String::from_utf8(payload_json).map_err(|_| Reason::Malformed)?);
    let exp = r
        .exp
        .as_ref()
        .and_then(numeric_date)
        .ok_or(Reason::Malformed)?;
    let iat = r
        .iat
        .as_ref()
        .and_then(numeric_date)
        .ok_or(Reason::Malformed)?;
    let nbf = match &r.nbf {
        None => None,
        Some(v) => Some(numeric_date(v).ok_or(Reason::Malformed)?),
    };
    let jti = match r.jti {
        Some(Value::String(j)) if !j.is_empty() => j,
        _ => return Err(Reason::Malformed),
    };
    let iss = match r.iss {
        Some(Value::String(i)) => i,
        _ => return Err(Reason::Malformed),
    };
    let opt_str = |v: Option<Value>| -> Result<Option<String>, Reason> {
        match v {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Reason::Malformed),
        }
    };
    // Read leniently, as before they were read at all: veto sets both as strings.
    let lenient = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let sub = opt_str(r.sub)?;
    let sid = opt_str(r.sid)?;
    let client_id = opt_str(r.client_id)?;
    let scope = opt_str(r.scope)?;
    // The header's `typ` and the `token_use` claim must tell one story (RFC 8725 §3.11): a
    // token that says inside it that it is a refresh token is no access token, whatever header
    // its signer chose. veto never issues one; only a holder of the key could.
    let token_use = opt_str(r.token_use)?;
    if expect.typ.eq_ignore_ascii_case("at+jwt")
        && token_use.as_deref().is_some_and(|u| u != "access")
    {
        return Err(Reason::WrongType);
    }
    let aud = match &r.aud {
        None => None,
        Some(v) => Some(audience(v).ok_or(Reason::Malformed)?),
    };
    let tid = lenient(r.tid);
    let fam = lenient(r.fam);
    if expect.check_time {
        if exp <= expect.now.saturating_sub(expect.leeway) {
            return Err(Reason::Expired);
        }
        if nbf.is_some_and(|n| n > expect.now.saturating_add(expect.leeway)) {
            return Err(Reason::NotYetValid);
        }
    }
    if iss != expect.issuer {
        return Err(Reason::WrongIssuer);
    }
    if let Some(want) = expect.audience
        && !aud.as_ref().is_some_and(|a| a.contains(want))
    {
        return Err(Reason::WrongAudience);
    }
    Ok(VerifiedToken {
        kid: kid.to_owned(),
        alg,
        jti,
        sub,
        iat,
        exp,
        nbf,
        sid,
        aud,
        iss,
        client_id,
        scope,
        tid,
        fam,
        claims,
    })
}

/// The claims of a token without checking anything. For display and hints only, never for a
/// decision.
pub fn decode_unverified_claims(token: &str) -> Option<Map<String, Value>> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let (_, p64, _) = segments(token)?;
    strict_object(&b64url_decode(p64)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_dates() {
        for (v, want) in [
            (json!(0), Some(0)),
            (json!(-1), Some(-1)),
            (json!(i64::MAX), Some(i64::MAX)),
            (json!(i64::MIN), Some(i64::MIN)),
            (json!(1.9), Some(1)),
            (json!(-1.9), Some(-1)),
            (json!(9.1e18), Some(9_100_000_000_000_000_000)),
            (json!(9.3e18), None),
            (json!(-9.3e18), None),
            (json!(u64::MAX), None),
            (json!("1"), None),
            (json!(null), None),
            (json!(true), None),
            (json!([1]), None),
        ] {
            assert_eq!(numeric_date(&v), want, "{v}");
        }
    }

    #[test]
    fn typ_comparison() {
        for (got, ok) in [
            ("at+jwt", true),
            ("AT+JWT", true),
            ("application/at+jwt", true),
            ("APPLICATION/at+JWT", true),
            ("application/application/at+jwt", false),
            ("at+jwt;charset=utf-8", false),
            ("application", false),
            ("", false),
            // Multi-byte characters across the prefix boundary must not panic.
            ("applicatioé/at+jwt", false),
            ("ééééééé", false),
            ("applicationé", false),
        ] {
            assert_eq!(typ_matches(got, "at+jwt"), ok, "{got}");
        }
    }

    #[test]
    fn segment_split() {
        assert_eq!(segments("a.b.c"), Some(("a", "b", "c")));
        assert_eq!(segments("a.b."), Some(("a", "b", "")));
        for bad in [
            "",
            "a",
            "a.b",
            ".b.c",
            "a..c",
            "a.b.c.d",
            "a.b.c.d.e",
            "....",
        ] {
            assert_eq!(segments(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_parsing_is_strict_and_borrows() {
        let h: Header<'_> = serde_json::from_str(r#"{"alg":"ES256","kid":"k1","x":[1]}"#).unwrap();
        assert!(matches!(h.kid.map(|k| k.0), Some(Cow::Borrowed("k1"))));
        assert!(!h.refused);
        let escaped: Header<'_> = serde_json::from_str(r#"{"kid":"k\u0031"}"#).unwrap();
        assert_eq!(escaped.kid.map(|k| k.0.into_owned()).as_deref(), Some("k1"));
        for bad in [
            r#"{"alg":"ES256","alg":"ES256"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"x":1,"\u0078":2}"#,
            r#"{"kid":1}"#,
            r#"{"typ":null}"#,
            r#"[]"#,
            r#"{"alg":"ES256"} {}"#,
        ] {
            assert!(serde_json::from_str::<Header<'_>>(bad).is_err(), "{bad}");
        }
        for refused in [r#"{"crit":null}"#, r#"{"x5t#S256":"a"}"#, r#"{"jwk":{}}"#] {
            assert!(serde_json::from_str::<Header<'_>>(refused).unwrap().refused);
        }
    }
}
