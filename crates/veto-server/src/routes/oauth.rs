//! RFC 7662 introspection and RFC 7009 revocation. These speak OAuth's own error shape
//! (`{"error", "error_description"}`), take form bodies, and never tell an unauthenticated caller
//! anything about a token beyond what the RFCs allow.
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};
use veto_core::apikey::{ApiKeyRecord, Scope};
use veto_core::token::Audience;

use crate::error::ApiError;
use crate::extract::{ApiPath, body_bytes};
use crate::service::revocations::RevokeRequest;
use crate::service::tokens::Check;
use crate::state::AppState;

pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn invalid_request(d: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: d.into(),
        }
    }
    fn invalid_client(d: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: d.into(),
        }
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let error = match status {
            StatusCode::NOT_FOUND => "invalid_request",
            StatusCode::FORBIDDEN => "insufficient_scope",
            StatusCode::PAYLOAD_TOO_LARGE => "invalid_request",
            StatusCode::UNAUTHORIZED => "invalid_client",
            // No RFC defines a rate-limit error for these endpoints (`slow_down` is the device
            // flow's polling signal): "retry later" is what the client must do.
            StatusCode::TOO_MANY_REQUESTS => "temporarily_unavailable",
            s if s.is_client_error() => "invalid_request",
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            _ => "server_error",
        };
        OAuthError {
            status,
            error,
            description: e.problem().detail,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"veto\", Bearer"),
            );
        }
        crate::error::close_after_413(self.status, &mut resp);
        resp
    }
}

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

/// The caller's credentials: `Ok(None)` when it sent none, `Err` when it sent bad ones.
fn client(st: &AppState, headers: &HeaderMap) -> Result<Option<Arc<ApiKeyRecord>>, OAuthError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::invalid_client("unknown or malformed client credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return st.api_keys.authenticate(rest).map(Some).ok_or_else(bad);
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    // RFC 6749 §2.3.1: client id and secret are each form-urlencoded before being joined by ':'.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()?
            .pop()
            .map(|(_, v)| v)
    };
    let (id, secret) = (
        unescape(id).ok_or_else(bad)?,
        unescape(secret).ok_or_else(bad)?,
    );
    match st.api_keys.authenticate(&secret) {
        // The id must name the very key whose secret was given.
        Some(k) if k.id == id => Ok(Some(k)),
        _ => Err(bad()),
    }
}

fn authorise(key: &ApiKeyRecord, tenant: &str, scope: Scope) -> Result<(), OAuthError> {
    if key.allows(tenant, scope) {
        Ok(())
    } else {
        Err(OAuthError {
            status: StatusCode::FORBIDDEN,
            error: "insufficient_scope",
            description: format!(
                "this client needs scope {} in tenant {tenant:?}",
                scope.as_str()
            ),
        })
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
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<Value>, OAuthError> {
    let key = client(&st, &headers)?.ok_or_else(|| {
        OAuthError::invalid_client("authenticate with an API key (Bearer or HTTP Basic)")
    })?;
    authorise(&key, &tenant, Scope::TokensVerify)?;
    st.require_tenant(&tenant)?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("the token parameter is missing"))?;
    let Check::Active(v) = st.check_token(&tenant, token, None) else {
        // RFC 7662 §2.2: nothing but `active: false`, whatever the reason.
        return Ok(Json(json!({"active": false})));
    };
    // From the claims the check already read: the token's other claims are not parsed again.
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
    Ok(Json(Value::Object(out)))
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
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<StatusCode, OAuthError> {
    let key = client(&st, &headers)?;
    if let Some(k) = &key {
        authorise(k, &tenant, Scope::TokensRevoke)?;
    }
    st.require_tenant(&tenant)?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("the token parameter is missing"))?;
    // Hints (`access_token`, `refresh_token`) only say where to look first; every token veto
    // issues is a JWT of this tenant, so both paths end in the same signature check.
    let actor = key.as_ref().map_or("self", |k| k.id.as_str());
    let reason = if key.is_some() {
        "oauth2_revoke"
    } else {
        "logout"
    };
    // A refresh token (JOSE type `rt+jwt`) revokes its whole family; anything else is tried
    // as an access token below. A token is one or the other, so the order needs no hint.
    if st
        .revoke_refresh_token(&tenant, actor, token, reason)
        .await?
    {
        return Ok(StatusCode::OK);
    }
    let req = RevokeRequest {
        token: Some(token.to_owned()),
        reason: Some(reason.to_owned()),
        ..Default::default()
    };
    match st.revoke(&tenant, actor, &req).await {
        Ok(_) => Ok(StatusCode::OK),
        // A token that is not a valid token of this tenant: nothing to revoke (RFC 7009 §2.2).
        Err(ApiError::BadRequest { .. }) => Ok(StatusCode::OK),
        Err(e) => Err(e.into()),
    }
}
