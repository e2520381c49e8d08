//! Token issuance: the claims veto puts in an access token, and their signing.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::encoding::b64url;
use crate::keys::LoadedKey;
use crate::seal::KeyError;
use crate::secret::debug_fields;

/// A string claim of a verified token (`verify::VerifiedToken`) or a single audience. Most of them
/// (`sub`, `sid`, `client_id`, `scope`, `tid`) are short enough to live inline, which saves the
/// allocations of a check: five of the nine strings taken from every token never reach the
/// allocator.
pub type ClaimText = compact_str::CompactString;

/// `aud`: one audience or several, as the caller gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// Inline up to 24 bytes: a check of a token for one audience allocates nothing for it.
    One(ClaimText),
    Many(Vec<String>),
}

impl Audience {
    /// As the `aud` claim: a string, or an array of strings.
    pub fn to_json(&self) -> Value {
        match self {
            Audience::One(a) => Value::from(a.as_str()),
            Audience::Many(v) => Value::from(v.clone()),
        }
    }

    pub fn contains(&self, a: &str) -> bool {
        match self {
            Audience::One(x) => x == a,
            Audience::Many(v) => v.iter().any(|x| x == a),
        }
    }
}

/// Claims veto sets itself. A custom claim with one of these names would let a caller forge
/// identity or lifetime, so it is refused rather than silently overwritten.
pub const RESERVED_CLAIMS: [&str; 9] = [
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "tid", "sid",
];

/// Also set by veto and therefore refused as custom claims: `client_id` (RFC 9068 §2.2), and the
/// refresh-token claims `token_use`, `fam` and `gen` (`refresh`), so that no access token can
/// carry claims saying it is a refresh token, to veto or to anyone verifying it from the JWKS.
///
/// Not reserved, on purpose: `scope` is how a caller gives an access token its scopes (RFC 9068
/// §2.2.3), so it stays a custom claim, but it must be a string (below). A `typ` claim is inert:
/// the token type veto checks is the JOSE header's `typ`, which callers cannot set.
/// `status` is the Token Status List reference (draft-ietf-oauth-status-list §6.1): only veto may
/// point a token at one of its lists, or a caller could name a list entry that is not the token's.
const ALSO_SET_BY_VETO: [&str; 5] = ["client_id", "token_use", "fam", "gen", "status"];

/// Refuses custom claims that would collide with the ones veto sets, or that veto would later be
/// unable to read back: verification reads `scope` as a string, so a token carrying any other
/// shape would be issued only to be judged malformed.
pub fn check_custom_claims(claims: &Map<String, Value>) -> Result<(), String> {
    for (name, value) in claims {
        if RESERVED_CLAIMS.contains(&name.as_str()) || ALSO_SET_BY_VETO.contains(&name.as_str()) {
            return Err(format!(
                "claim {name:?} is set by veto and cannot be given as a custom claim; rename it"
            ));
        }
        if name == "scope" && !value.is_string() {
            return Err(
                "claim \"scope\" must be a string of space-separated scopes (RFC 9068 §2.2.3), \
                 e.g. \"read:orders write:orders\""
                    .into(),
            );
        }
    }
    Ok(())
}

pub struct IssueInput<'a> {
    pub issuer: &'a str,
    pub tenant: &'a str,
    pub sub: &'a str,
    pub aud: Option<&'a Audience>,
    pub iat: i64,
    pub ttl_seconds: i64,
    pub nbf: Option<i64>,
    pub sid: Option<&'a str>,
    pub client_id: &'a str,
    pub claims: &'a Map<String, Value>,
    /// JOSE `typ`: `at+jwt` for access tokens (RFC 9068).
    pub typ: &'a str,
}

#[derive(Clone)]
pub struct Issued {
    pub token: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

// The token is a bearer credential: whoever reads it in a log can use it until `exp`.
debug_fields!(Issued { jti, iat, exp });

/// A token's entry in a status list, carried as its `status` claim
/// (draft-ietf-oauth-status-list §6.1): `{"status_list": {"idx": .., "uri": ..}}`.
#[derive(Debug, Clone, Copy)]
pub struct StatusRef<'a> {
    pub idx: u32,
    pub uri: &'a str,
}

/// A fresh `jti`: a random (v4) UUID.
pub fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Builds and signs a compact JWS with a fresh `jti`. The header carries only `alg`, `typ` and
/// `kid`.
pub fn issue(key: &LoadedKey, input: &IssueInput<'_>) -> Result<Issued, KeyError> {
    issue_as(key, input, &new_jti(), None)
}

/// [`issue`] with the caller's `jti` and, optionally, a status list entry: for a token whose
/// `jti` had to be known before signing (its status list entry is allocated first).
pub fn issue_as(
    key: &LoadedKey,
    input: &IssueInput<'_>,
    jti: &str,
    status: Option<StatusRef<'_>>,
) -> Result<Issued, KeyError> {
    let claims = claims_of(input, jti, status);
    let token = sign_jws(key, input.typ, &claims)?;
    Ok(Issued {
        token,
        jti: jti.to_owned(),
        iat: input.iat,
        exp: input.iat.saturating_add(input.ttl_seconds),
    })
}

/// How long the token [`issue_as`] would make is without its signature (`header.payload`):
/// for a caller that must refuse an oversized token before a write it would otherwise make
/// first (a status list entry). The signature adds at most 683 characters (RSA 4096).
pub fn unsigned_len(
    key: &LoadedKey,
    input: &IssueInput<'_>,
    jti: &str,
    status: Option<StatusRef<'_>>,
) -> usize {
    let b64_len = |n: usize| n.div_ceil(3) * 4 - (3 - n % 3) % 3;
    let header = header_of(key, input.typ).to_string().len();
    let claims = claims_of(input, jti, status).to_string().len();
    b64_len(header) + 1 + b64_len(claims)
}

fn claims_of(input: &IssueInput<'_>, jti: &str, status: Option<StatusRef<'_>>) -> Value {
    // Custom claims first, registered ones after: `check_custom_claims` has already refused
    // collisions, and inserting ours last would win even if it had not.
    let mut claims = input.claims.clone();
    claims.insert("iss".into(), input.issuer.into());
    claims.insert("sub".into(), input.sub.into());
    if let Some(aud) = input.aud {
        claims.insert("aud".into(), aud.to_json());
    }
    claims.insert("iat".into(), input.iat.into());
    claims.insert(
        "exp".into(),
        input.iat.saturating_add(input.ttl_seconds).into(),
    );
    if let Some(nbf) = input.nbf {
        claims.insert("nbf".into(), nbf.into());
    }
    claims.insert("jti".into(), jti.into());
    claims.insert("tid".into(), input.tenant.into());
    claims.insert("client_id".into(), input.client_id.into());
    if let Some(sid) = input.sid {
        claims.insert("sid".into(), sid.into());
    }
    if let Some(s) = status {
        claims.insert(
            "status".into(),
            serde_json::json!({"status_list": {"idx": s.idx, "uri": s.uri}}),
        );
    }
    Value::Object(claims)
}

fn header_of(key: &LoadedKey, typ: &str) -> Value {
    serde_json::json!({"alg": key.alg.as_str(), "typ": typ, "kid": key.kid})
}

/// Signs `claims` as a compact JWS whose header carries only `alg`, `typ` and `kid`: veto's one
/// JWS writer, shared by access tokens ([`issue`]) and status list tokens
/// ([`crate::status_list::sign_token`]), so both get the same header rules.
pub fn sign_jws(key: &LoadedKey, typ: &str, claims: &Value) -> Result<String, KeyError> {
    let mut token = b64url(header_of(key, typ).to_string().as_bytes());
    token.push('.');
    token.push_str(&b64url(claims.to_string().as_bytes()));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}
