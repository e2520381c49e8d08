//! The verify pipeline, steps 1–3 of design.md ("What decides"): parse, key and signature,
//! claims. Step 4, the revocation state, is `index::RevocationIndex::check`.
//!
//! Hardening (RFC 8725): the header `alg` must equal the alg pinned to the key named by `kid`
//! (defeats `none`, alg substitution and HMAC-keyed-with-the-public-key); keys embedded in or
//! referenced by the header (`jwk`, `jku`, `x5c`, `x5u`, `x5t`) are refused, never fetched; any
//! `crit` is refused (veto understands no extension); `typ` must be the expected one (no token-type
//! confusion); duplicate JSON members are refused (parsers disagree on which one wins).
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::Alg;
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
    /// Every claim, as signed.
    pub claims: Map<String, Value>,
}

/// A JSON object whose members are all distinct; a repeated name is an error.
struct StrictObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with distinct member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!("duplicate member {k:?}")));
                    }
                    out.insert(k, v);
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn strict_object(b64: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    serde_json::from_slice::<StrictObject>(&bytes)
        .ok()
        .map(|o| o.0)
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

fn required_date(claims: &Map<String, Value>, name: &str) -> Result<i64, Reason> {
    claims
        .get(name)
        .and_then(numeric_date)
        .ok_or(Reason::Malformed)
}

fn typ_matches(got: &str, want: &str) -> bool {
    // RFC 9068 §2.1 / RFC 7515 §4.1.9: the `application/` prefix may be omitted; compare
    // case-insensitively.
    let got = got
        .get(..12)
        .filter(|p| p.eq_ignore_ascii_case("application/"))
        .map_or(got, |_| &got[12..]);
    got.eq_ignore_ascii_case(want)
}

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
    let header = strict_object(h64).ok_or(Reason::Malformed)?;
    let alg: Alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .ok_or(Reason::Malformed)?;
    if KEY_CARRYING_HEADERS.iter().any(|h| header.contains_key(*h)) || header.contains_key("crit") {
        return Err(Reason::Malformed);
    }
    match header.get("typ") {
        Some(Value::String(t)) if typ_matches(t, expect.typ) => {}
        Some(Value::String(_)) | None => return Err(Reason::WrongType),
        Some(_) => return Err(Reason::Malformed),
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
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
    let signature = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| Reason::BadSignature)?;
    let signed_len = h64.len() + 1 + p64.len();
    if !key.verify_signature(&token.as_bytes()[..signed_len], &signature) {
        return Err(Reason::BadSignature);
    }

    // 3. Claims. Signature first, then parse: an unsigned payload is never interpreted.
    let claims = strict_object(p64).ok_or(Reason::Malformed)?;
    let exp = required_date(&claims, "exp")?;
    let iat = required_date(&claims, "iat")?;
    let nbf = match claims.get("nbf") {
        None => None,
        Some(v) => Some(numeric_date(v).ok_or(Reason::Malformed)?),
    };
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or(Reason::Malformed)?
        .to_owned();
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(Reason::Malformed)?
        .to_owned();
    let opt_str = |name: &str| -> Result<Option<String>, Reason> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Reason::Malformed),
        }
    };
    let sub = opt_str("sub")?;
    let sid = opt_str("sid")?;
    let client_id = opt_str("client_id")?;
    let scope = opt_str("scope")?;
    let aud = match claims.get("aud") {
        None => None,
        Some(v) => {
            Some(serde_json::from_value::<Audience>(v.clone()).map_err(|_| Reason::Malformed)?)
        }
    };
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
    strict_object(p64)
}
