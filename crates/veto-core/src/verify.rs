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
use std::mem::MaybeUninit;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::Alg;
use crate::encoding::{b64url_decode, b64url_decode_uninit, is_b64url_text};
use crate::json_scan::{self, Invalid, Member, name_key, short_name};
use crate::keys::{KeyStatus, LoadedKey};
use crate::reason::Reason;
use crate::token::Audience;
pub use crate::token::ClaimText;

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
    pub kid: ClaimText,
    pub alg: Alg,
    pub jti: ClaimText,
    pub sub: Option<ClaimText>,
    pub iat: i64,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub sid: Option<ClaimText>,
    pub aud: Option<Audience>,
    pub iss: ClaimText,
    pub client_id: Option<ClaimText>,
    pub scope: Option<ClaimText>,
    /// `tid`, when a string (veto sets it on every token it issues).
    pub tid: Option<ClaimText>,
    /// `fam`, when a string: the refresh family of a refresh token, or of an access token
    /// minted by a refresh (revoking the family ends both).
    pub fam: Option<ClaimText>,
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

/// The JOSE header, reduced to what the rules look at: `alg`, `typ` and `kid`, when present,
/// must be strings; every member name at most once (`json_scan`).
#[derive(Default)]
struct Header<'a> {
    alg: Option<Cow<'a, str>>,
    typ: Option<Cow<'a, str>>,
    kid: Option<Cow<'a, str>>,
    /// A member that carries or points at a key, or a `crit`: the token is refused whatever
    /// the value (even `null`).
    refused: bool,
}

fn header(json: &str) -> Result<Header<'_>, Invalid> {
    let mut h = Header::default();
    json_scan::object(json, |name, value| {
        let slot = match name {
            "alg" => &mut h.alg,
            "typ" => &mut h.typ,
            "kid" => &mut h.kid,
            other => {
                if other == "crit" || KEY_CARRYING_HEADERS.contains(&other) {
                    h.refused = true;
                }
                return Ok(());
            }
        };
        match value {
            Member::Str(v) => *slot = Some(v),
            _ => return Err(Invalid),
        }
        Ok(())
    })?;
    Ok(h)
}

/// A JSON object with distinct member names, as a map (a plain map would keep the last of two
/// equal names silently, so the names are checked first).
fn strict_object(json: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(json).ok()?;
    json_scan::is_strict_object(text).then_some(())?;
    serde_json::from_str(text).ok()
}

/// Splits a compact JWS into exactly three segments; anything else (a JWE has five) is `None`.
/// The dots are found with SIMD (`memchr`): the signature alone is 342 characters in RS256.
fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let bytes = token.as_bytes();
    let first = memchr::memchr(b'.', bytes)?;
    let second = first + 1 + memchr::memchr(b'.', bytes.get(first + 1..)?)?;
    let (h, p, s) = (
        token.get(..first)?,
        token.get(first + 1..second)?,
        token.get(second + 1..)?,
    );
    if h.is_empty() || p.is_empty() || memchr::memchr(b'.', s.as_bytes()).is_some() {
        return None;
    }
    Some((h, p, s))
}

/// A NumericDate: a JSON number (integer, or a float truncated towards zero) within i64.
/// A string, bool or null is not a date, whatever it contains.
fn numeric_date(m: &Member<'_>) -> Option<i64> {
    match m {
        Member::Num(literal) => json_scan::numeric_date(literal),
        _ => None,
    }
}

/// The registered claims veto reads, taken out of the payload in the one pass that also checks
/// it is an object with distinct member names (at every depth, names compared decoded, so
/// `"\u0065xp"` is `exp` and a repeat of it is caught). Every other member is checked and
/// left as text.
#[derive(Default)]
struct Registered<'a> {
    exp: Option<Member<'a>>,
    iat: Option<Member<'a>>,
    nbf: Option<Member<'a>>,
    jti: Option<Member<'a>>,
    iss: Option<Member<'a>>,
    sub: Option<Member<'a>>,
    sid: Option<Member<'a>>,
    aud: Option<Member<'a>>,
    client_id: Option<Member<'a>>,
    scope: Option<Member<'a>>,
    token_use: Option<Member<'a>>,
    tid: Option<Member<'a>>,
    fam: Option<Member<'a>>,
}

fn registered(json: &str) -> Result<Registered<'_>, Invalid> {
    let mut r = Registered::default();
    const EXP: u64 = name_key("exp");
    const IAT: u64 = name_key("iat");
    const NBF: u64 = name_key("nbf");
    const JTI: u64 = name_key("jti");
    const ISS: u64 = name_key("iss");
    const SUB: u64 = name_key("sub");
    const SID: u64 = name_key("sid");
    const AUD: u64 = name_key("aud");
    const SCOPE: u64 = name_key("scope");
    const TID: u64 = name_key("tid");
    const FAM: u64 = name_key("fam");
    json_scan::object(json, |name, value| {
        let slot = match short_name(name) {
            Some(EXP) => &mut r.exp,
            Some(IAT) => &mut r.iat,
            Some(NBF) => &mut r.nbf,
            Some(JTI) => &mut r.jti,
            Some(ISS) => &mut r.iss,
            Some(SUB) => &mut r.sub,
            Some(SID) => &mut r.sid,
            Some(AUD) => &mut r.aud,
            Some(SCOPE) => &mut r.scope,
            Some(TID) => &mut r.tid,
            Some(FAM) => &mut r.fam,
            Some(_) => return Ok(()),
            None => match name {
                "client_id" => &mut r.client_id,
                "token_use" => &mut r.token_use,
                _ => return Ok(()),
            },
        };
        *slot = Some(value);
        Ok(())
    })?;
    Ok(r)
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3); anything else is malformed.
fn audience(m: Member<'_>) -> Option<Audience> {
    match m {
        Member::Str(s) => Some(Audience::One(ClaimText::from(s))),
        Member::Other(raw) => json_scan::string_array(raw).map(Audience::Many),
        Member::Num(_) => None,
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
    // A header is a few dozen bytes: decoded on the stack unless it is unusually long.
    let mut header_buf = [MaybeUninit::<u8>::uninit(); 256];
    let header_vec;
    let header_json: &[u8] = match b64url_decode_uninit(h64.as_bytes(), &mut header_buf) {
        Some(decoded) => decoded,
        None => {
            header_vec = b64url_decode(h64).ok_or(Reason::Malformed)?;
            &header_vec
        }
    };
    // Only base64 here, so that a payload that is not strict base64url is `malformed` whatever
    // its signature; its JSON is read only once the signature holds (step 3).
    let payload_json = b64url_decode(p64).ok_or(Reason::Malformed)?;
    // The signature is decoded only once a key is found, but its shape is checked here: a third
    // segment outside the base64url alphabet is not a JWS at all (RFC 7515 §7.1), just like such
    // a header or payload, so it is `malformed` rather than a signature that happens not to match.
    if !is_b64url_text(s64.as_bytes()) {
        return Err(Reason::Malformed);
    }
    let header_text = std::str::from_utf8(header_json).map_err(|_| Reason::Malformed)?;
    let header = header(header_text).map_err(|_| Reason::Malformed)?;
    let alg: Alg = header
        .alg
        .as_ref()
        .and_then(|a| a.parse().ok())
        .ok_or(Reason::Malformed)?;
    if header.refused {
        return Err(Reason::Malformed);
    }
    match &header.typ {
        Some(t) if typ_matches(t, expect.typ) => {}
        _ => return Err(Reason::WrongType),
    }
    let kid: &str = header
        .kid
        .as_ref()
        .map(|k| k.as_ref())
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
    let mut sig_buf = [MaybeUninit::<u8>::uninit(); MAX_SIGNATURE_BYTES];
    let signature =
        b64url_decode_uninit(s64.as_bytes(), &mut sig_buf).ok_or(Reason::BadSignature)?;
    let signed = token
        .as_bytes()
        .get(..h64.len() + 1 + p64.len())
        .ok_or(Reason::Malformed)?;
    if !key.verify_signature(signed, signature) {
        return Err(Reason::BadSignature);
    }

    // 3. Claims. Signature first, then parse: an unsigned payload is never interpreted.
    let payload = String::from_utf8(payload_json).map_err(|_| Reason::Malformed)?;
    let r = registered(&payload).map_err(|_| Reason::Malformed)?;
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
        Some(Member::Str(j)) if !j.is_empty() => ClaimText::from(j),
        _ => return Err(Reason::Malformed),
    };
    let iss = match r.iss {
        Some(Member::Str(i)) => ClaimText::from(i),
        _ => return Err(Reason::Malformed),
    };
    let opt_str = |v: Option<Member<'_>>| -> Result<Option<ClaimText>, Reason> {
        match v {
            None => Ok(None),
            Some(Member::Str(s)) => Ok(Some(ClaimText::from(s))),
            Some(_) => Err(Reason::Malformed),
        }
    };
    // Read leniently, as before they were read at all: veto sets both as strings.
    let lenient = |v: Option<Member<'_>>| match v {
        Some(Member::Str(s)) => Some(ClaimText::from(s)),
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
    let aud = match r.aud {
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
        kid: kid.into(),
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
        claims: Claims(payload),
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

    #[test]
    fn numeric_dates_are_numbers_only() {
        assert_eq!(numeric_date(&Member::Num("1.9")), Some(1));
        assert_eq!(numeric_date(&Member::Num("1e19")), None);
        for not_a_number in [
            Member::Str(Cow::Borrowed("1")),
            Member::Other("null"),
            Member::Other("true"),
            Member::Other("[1]"),
        ] {
            assert_eq!(numeric_date(&not_a_number), None, "{not_a_number:?}");
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
        let h = header(r#"{"alg":"ES256","kid":"k1","x":[1]}"#).unwrap();
        assert!(matches!(h.kid, Some(Cow::Borrowed("k1"))));
        assert!(!h.refused);
        let escaped = header(r#"{"kid":"k\u0031"}"#).unwrap();
        assert_eq!(escaped.kid.map(Cow::into_owned).as_deref(), Some("k1"));
        for bad in [
            r#"{"alg":"ES256","alg":"ES256"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"x":1,"\u0078":2}"#,
            r#"{"x":{"y":1,"y":2}}"#,
            r#"{"kid":1}"#,
            r#"{"typ":null}"#,
            r#"[]"#,
            r#"{"alg":"ES256"} {}"#,
        ] {
            assert!(header(bad).is_err(), "{bad}");
        }
        for refused in [r#"{"crit":null}"#, r#"{"x5t#S256":"a"}"#, r#"{"jwk":{}}"#] {
            assert!(header(refused).unwrap().refused);
        }
    }
}
