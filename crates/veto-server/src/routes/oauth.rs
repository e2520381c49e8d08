//! RFC 7662 introspection and RFC 7009 revocation. These speak OAuth's own error shape
//! (`{"error", "error_description"}`), take form bodies, and never tell an unauthenticated caller
//! anything about a token beyond what the RFCs allow. Client authentication is `auth`'s
//! ([`OAuthClient`]).
use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};
use veto_core::apikey::Scope;
use veto_core::token::Audience;
use veto_core::verify::VerifiedToken;

use crate::auth::OAuthClient;
use crate::extract::{ApiPath, body_bytes};
use crate::service::tokens::Check;
use crate::state::AppState;

// `ratelimit` renders its 429 on these endpoints with it and still imports it from here.
pub use crate::error::OAuthError;

/// The largest form an OAuth endpoint reads: a token (16 KiB at most, `veto_core::verify`) and
/// a few short parameters. Anonymous callers may send forms (self-logout), so they are kept
/// far below the general body limit.
pub const FORM_LIMIT: usize = 32 * 1024;

/// An `application/x-www-form-urlencoded` body. A parameter given twice is an error
/// (RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once").
pub struct OAuthForm(Vec<(String, String)>);

impl OAuthForm {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
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
            if pairs[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k:?} is given more than once"
                )));
            }
        }
        Ok(OAuthForm(pairs))
    }
}

/// RFC 7662 token introspection.
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
    match st.check_token(&tenant, form.token()?, None) {
        Check::Active(v) => Ok(Json(introspection(*v))),
        // RFC 7662 §2.2: nothing but `active: false`, whatever the reason.
        Check::Inactive(_) => Ok(Json(json!({"active": false}))),
    }
}

/// An active token's introspection answer, from the claims the check already read: the token's
/// other claims are not parsed again.
fn introspection(v: VerifiedToken) -> Value {
    let mut out = Map::new();
    out.insert("active".into(), Value::Bool(true));
    for (name, val) in [
        ("sub", v.sub.map(Value::from)),
        ("aud", v.aud.as_ref().map(Audience::to_json)),
        ("iss", Some(Value::from(v.iss))),
        ("exp", Some(Value::from(v.exp))),
        ("iat", Some(Value::from(v.iat))),
        ("nbf", v.nbf.map(Value::from)),
        ("jti", Some(Value::from(v.jti))),
        ("client_id", v.client_id.map(Value::from)),
        ("scope", v.scope.map(Value::from)),
        ("sid", v.sid.map(Value::from)),
        ("tid", v.tid.map(Value::from)),
    ] {
        if let Some(val) = val {
            out.insert(name.into(), val);
        }
    }
    out.insert("token_type".into(), Value::String("Bearer".into()));
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
