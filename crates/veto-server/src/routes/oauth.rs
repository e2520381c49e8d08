//! The OAuth endpoints: RFC 7662 introspection, RFC 7009 revocation and the RFC 6749 token
//! endpoint. These speak OAuth's own error shape (`{"error", "error_description"}`), take form
//! bodies, and never tell an unauthenticated caller anything about a token beyond what the RFCs
//! allow. Client authentication is `auth`'s ([`OAuthClient`]).
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use veto_core::apikey::Scope;
use veto_core::oauth_scope;
use veto_core::token::Audience;
use veto_core::verify::VerifiedToken;

use crate::auth::OAuthClient;
use crate::extract::{ApiPath, body_bytes};
use crate::service::grants::{Grant, TokenResponse};
use crate::service::tokens::Check;
use crate::state::AppState;

// `ratelimit` renders its 429 on these endpoints with it and still imports it from here.
pub use crate::error::OAuthError;

/// The largest form an OAuth endpoint reads: a token (16 KiB at most, `veto_core::verify`) and
/// a few short parameters. Anonymous callers may send forms (self-logout), so they are kept
/// far below the general body limit.
pub const FORM_LIMIT: usize = 32 * 1024;

/// An `application/x-www-form-urlencoded` body. A parameter given twice is an error
/// (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once"),
/// except `resource`, which RFC 8707 §2 lets a client repeat, one per resource.
pub struct OAuthForm(Vec<(String, String)>);

/// The one parameter that may be repeated.
const REPEATABLE: &str = "resource";

impl OAuthForm {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter, in order.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `token` parameter both endpoints take.
    fn token(&self) -> Result<&str, OAuthError> {
        self.get("token")
            .ok_or_else(|| OAuthError::invalid_request("the token parameter is missing"))
    }
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;
    async fn from_request(req: Request, state: &S) -> Result<Self, OAuthError> {
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Err(OAuthError::invalid_request(
                "send the parameters as application/x-www-form-urlencoded",
            ));
        }
        let bytes = body_bytes(req, state).await?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            OAuthError::invalid_request(format!("the form body cannot be decoded: {e}"))
        })?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if k != REPEATABLE && pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k:?} is given more than once"
                )));
            }
        }
        Ok(OAuthForm(pairs))
    }
}

/// RFC 7662 token introspection: access tokens and refresh tokens, each active while usable.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/introspect", tag = "oauth",
    security(("bearer" = []), ("basic" = [])),
    params(("tenant" = String, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token=...&token_type_hint=..."),
    responses((status = 200, body = Object), (status = 401, body = Object), (status = 403, body = Object)))]
pub async fn introspect(
    State(st): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    client: OAuthClient,
    req: Request,
) -> Result<Json<Value>, OAuthError> {
    // Credentials before the body: a caller without them is refused without being read from.
    client.require(&tenant, Scope::TokensVerify)?;
    let form = OAuthForm::from_request(req, &st).await?;
    st.require_tenant(&tenant)?;
    let token = form.token()?;
    // The token says which kind it is, so `token_type_hint` is not needed to find it (RFC 7662
    // §2.1 has the server search every kind whatever the hint): a refresh token claims
    // `token_use: "refresh"`, and its check then requires the JOSE type `rt+jwt` under the
    // signature, so a forged claim only leads to a failing check.
    let active = if is_refresh_token(token) {
        st.usable_refresh_token(&tenant, token)
            .await?
            .map(|v| introspection(v, "refresh_token"))
    } else {
        match st.check_token(&tenant, token, None) {
            Check::Active(v) => Some(introspection(*v, "Bearer")),
            Check::Inactive(_) => None,
        }
    };
    // RFC 7662 §2.2: nothing but `active: false`, whatever the reason.
    Ok(Json(active.unwrap_or_else(|| json!({"active": false}))))
}

/// Whether `token` claims to be a refresh token (unverified: only to pick the check to run).
fn is_refresh_token(token: &str) -> bool {
    veto_core::verify::decode_unverified_claims(token).is_some_and(|c| {
        c.get("token_use").and_then(Value::as_str) == Some(veto_core::refresh::TOKEN_USE_REFRESH)
    })
}

/// An active token's introspection answer, from the claims the check already read: the token's
/// other claims are not parsed again. `token_type` is `Bearer` for access tokens (RFC 6749
/// §7.1's type, as RFC 7662 defines the member) and `refresh_token` for refresh tokens, which
/// have no access token type: the name RFC 7009 gives them as a hint.
fn introspection(v: VerifiedToken, token_type: &'static str) -> Value {
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    for (name, val) in [
        ("sub", v.sub.as_deref().map(Value::from)),
        ("aud", v.aud.as_ref().map(Audience::to_json)),
        ("iss", Some(Value::from(v.iss.as_str()))),
        ("exp", Some(Value::from(v.exp))),
        ("iat", Some(Value::from(v.iat))),
        ("nbf", v.nbf.map(Value::from)),
        ("jti", Some(Value::from(v.jti.as_str()))),
        ("client_id", v.client_id.as_deref().map(Value::from)),
        ("scope", v.scope.as_deref().map(Value::from)),
        ("sid", v.sid.as_deref().map(Value::from)),
        ("tid", v.tid.as_deref().map(Value::from)),
    ] {
        if let Some(val) = val {
            out.insert(name.into(), val);
        }
    }
    out.insert("token_type".into(), Value::String(token_type.into()));
    Value::Object(out)
}

/// RFC 7009 token revocation: 200 with an empty body, also for unknown, malformed or already
/// revoked tokens.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/revoke", tag = "oauth",
    security((), ("bearer" = []), ("basic" = [])),
    params(("tenant" = String, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token=...&token_type_hint=..."),
    responses((status = 200), (status = 400, body = Object), (status = 401, body = Object)))]
pub async fn revoke(
    State(st): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    client: OAuthClient,
    req: Request,
) -> Result<StatusCode, OAuthError> {
    // Bad credentials are refused before the body is read; none at all is a self-logout, whose
    // body is bounded by `FORM_LIMIT` like every OAuth form.
    let client = client.optional(&tenant, Scope::TokensRevoke)?;
    let form = OAuthForm::from_request(req, &st).await?;
    st.require_tenant(&tenant)?;
    st.revoke_presented(&tenant, client.as_deref(), form.token()?)
        .await?;
    Ok(StatusCode::OK)
}

/// RFC 6749 token endpoint (§3.2): `grant_type=refresh_token` rotates the refresh token exactly
/// as `POST /v1/tenants/{tenant}/tokens/refresh` does (a rotated token presented again is
/// `invalid_grant` and revokes its whole family); `grant_type=client_credentials` issues an
/// access token whose `sub` and `client_id` are the client's API key id. The client is an API
/// key of the tenant with scope `tokens:issue`, as HTTP Basic (key id and secret) or Bearer.
#[utoipa::path(post, path = "/t/{tenant}/oauth2/token", tag = "oauth",
    security(("bearer" = []), ("basic" = [])),
    params(("tenant" = String, Path)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "grant_type=refresh_token&refresh_token=…[&scope=…] (scope: at most the refresh token's), \
or grant_type=client_credentials[&scope=…][&resource=…] (resource, RFC 8707, repeatable: absolute URIs that become the token's aud)"),
    responses((status = 200, body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, body = Object, description = "RFC 6749 §5.2: invalid_request, invalid_grant, invalid_scope, unsupported_grant_type; RFC 8707: invalid_target"),
        (status = 401, body = Object, description = "invalid_client"),
        (status = 403, body = Object, description = "unauthorized_client: the key lacks tokens:issue in this tenant")))]
pub async fn token(
    State(st): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    client: OAuthClient,
    req: Request,
) -> Result<Response, OAuthError> {
    // Credentials before the body, as on the other OAuth endpoints.
    let client = client
        .require(&tenant, Scope::TokensIssue)
        .map_err(OAuthError::from_token_endpoint)?;
    let form = OAuthForm::from_request(req, &st).await?;
    st.require_tenant(&tenant)?;
    if form.get("client_id").is_some_and(|id| id != client.id) {
        return Err(OAuthError::invalid_request(
            "client_id names another client than the credentials; leave it out or send the key's id",
        ));
    }
    let grant = grant_of(&form)?;
    let out = st
        .grant(&tenant, &client, grant)
        .await
        .map_err(OAuthError::from_token_endpoint)?;
    Ok(no_store(Json(out).into_response()))
}

/// RFC 6749 §5.1: a token answer is never cached (`Pragma` for HTTP/1.0 caches).
fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// The grant a token request asks for, its parameters checked (RFC 6749 §5.2's codes).
fn grant_of(form: &OAuthForm) -> Result<Grant<'_>, OAuthError> {
    let scope = form
        .get("scope")
        .map(|s| oauth_scope::parse(s).map_err(OAuthError::invalid_scope))
        .transpose()?;
    let resource = resources(form)?;
    match form.get("grant_type") {
        None => Err(OAuthError::invalid_request(
            "the grant_type parameter is missing; use refresh_token or client_credentials",
        )),
        Some("refresh_token") => {
            let refresh_token = form
                .get("refresh_token")
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    OAuthError::invalid_request("the refresh_token parameter is missing")
                })?;
            if resource.is_some() {
                // RFC 8707 lets a refresh narrow the audience; veto keeps the refresh token's,
                // and says so rather than ignore a restriction the client relies on.
                return Err(OAuthError::invalid_target(
                    "a refreshed access token keeps the audience of its refresh token; leave resource out",
                ));
            }
            Ok(Grant::RefreshToken {
                refresh_token,
                scope,
            })
        }
        Some("client_credentials") => Ok(Grant::ClientCredentials {
            scope,
            audience: resource,
        }),
        Some(other) => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {other:?} is not offered; use refresh_token or client_credentials"
        ))),
    }
}

/// Most `resource` values in one request: as many audiences as a token may name.
const MAX_RESOURCES: usize = 32;
/// Longest `resource`: an audience is at most 256 bytes.
const MAX_RESOURCE_BYTES: usize = 256;

/// RFC 8707 resource indicators, the audience of a client_credentials token: each an absolute
/// URI without a fragment, kept as the client spelt it (a resource server compares `aud` as a
/// string).
fn resources(form: &OAuthForm) -> Result<Option<Audience>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for r in form.all(REPEATABLE) {
        let bad = |why: &str| OAuthError::invalid_target(format!("resource {r:?} {why}"));
        if r.len() > MAX_RESOURCE_BYTES {
            return Err(bad("is longer than 256 bytes"));
        }
        let url = url::Url::parse(r).map_err(|_| bad("is not an absolute URI"))?;
        if url.fragment().is_some() {
            return Err(bad("has a fragment, which RFC 8707 forbids"));
        }
        if !out.iter().any(|o| o == r) {
            out.push(r.to_owned());
        }
    }
    if out.len() > MAX_RESOURCES {
        return Err(OAuthError::invalid_target(format!(
            "give at most {MAX_RESOURCES} resources"
        )));
    }
    Ok(match out.len() {
        0 => None,
        1 => out.pop().map(|a| Audience::One(a.into())),
        _ => Some(Audience::Many(out)),
    })
}
