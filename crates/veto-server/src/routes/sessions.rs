//! Sessions, pre-login state, session keys and refresh-token rotation (the contract's "Sessions"
//! section). Each handler authorises, calls one service operation and shapes the answer.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use veto_core::apikey::Scope;
use veto_core::session::SessionRecord;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery, PageBody, PageParams};
use crate::position;
use crate::routes::tenants::ReasonBody;
use crate::service::refresh::{RefreshRequest, RefreshResponse};
use crate::service::sessions::{
    ActorRevokeResult, ConsumePreLogin, ConsumedPreLogin, CreatePreLogin, CreateSession,
    CreatedPreLogin, CreatedSession, SessionKeyView, ValidateSession,
};
use crate::state::AppState;

/// `{"session": …}`, the validate answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    #[schema(value_type = Object)]
    pub session: SessionRecord,
    /// The change-log position of the state the session was judged on (docs/stream.md).
    pub position: String,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SessionListParams {
    pub actor_id: String,
    pub actor_type: String,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// Open a session: the record, the cookie value to set, and the CSRF token (shown only now).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/sessions", tag = "sessions", request_body = CreateSession,
    params(("tenant" = String, Path)), responses((status = 201, body = CreatedSession), (status = 400, body = crate::error::Problem)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSession>,
) -> ApiResult<(StatusCode, Json<CreatedSession>)> {
    caller.require(&tenant, Scope::SessionsWrite)?;
    let out = st.create_session(caller.actor(), &tenant, &body).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Validate a session cookie (and CSRF token); `touch` (default true) slides the idle expiry.
/// 401 problem with `reason`: malformed, bad_signature, unknown_key, revoked, idle_expired,
/// absolute_expired (wins over idle) or csrf_mismatch.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/sessions/validate", tag = "sessions", request_body = ValidateSession,
    params(("tenant" = String, Path)), responses((status = 200, body = SessionBody), (status = 401, body = crate::error::Problem)))]
pub async fn validate(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<ValidateSession>,
) -> ApiResult<Json<SessionBody>> {
    caller.require(&tenant, Scope::SessionsWrite)?;
    position::reach(&st.feed, body.min_position.as_deref()).await?;
    let position = st.feed.cursor().to_string();
    let session = st.validate_session(&tenant, &body).await?;
    Ok(Json(SessionBody { session, position }))
}

/// The actor's active sessions, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/sessions", tag = "sessions",
    params(("tenant" = String, Path), SessionListParams), responses((status = 200, body = Object)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<SessionListParams>,
) -> ApiResult<Json<PageBody<SessionRecord>>> {
    caller.require(&tenant, Scope::SessionsRead)?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .to_request()?;
    let p = st
        .list_sessions(&tenant, &q.actor_type, &q.actor_id, &page)
        .await?;
    Ok(Json(PageBody {
        items: p.items,
        next_cursor: p.next_cursor,
    }))
}

/// One session, whatever its state.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/sessions/{id}", tag = "sessions",
    params(("tenant" = String, Path), ("id" = String, Path)), responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<SessionRecord>> {
    caller.require(&tenant, Scope::SessionsRead)?;
    Ok(Json(st.get_session(&tenant, &id).await?))
}

/// Revoke one session: its cookie stops validating and tokens with its `sid` are rejected.
/// Idempotent: the first revocation's time and reason stand.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/sessions/{id}/revoke", tag = "sessions", request_body = ReasonBody,
    params(("tenant" = String, Path), ("id" = String, Path)), responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReasonBody>,
) -> ApiResult<Json<SessionRecord>> {
    caller.require(&tenant, Scope::SessionsWrite)?;
    let rec = st
        .revoke_session(caller.actor(), &tenant, &id, body.reason.as_deref())
        .await?;
    Ok(Json(rec))
}

/// Revoke every session of an actor (log out everywhere).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/actors/{actor_type}/{actor_id}/sessions/revoke-all", tag = "sessions", request_body = ReasonBody,
    params(("tenant" = String, Path), ("actor_type" = String, Path), ("actor_id" = String, Path)), responses((status = 200, body = ActorRevokeResult)))]
pub async fn revoke_all(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, actor_type, actor_id)): ApiPath<(String, String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReasonBody>,
) -> ApiResult<Json<ActorRevokeResult>> {
    caller.require(&tenant, Scope::SessionsWrite)?;
    let out = st
        .revoke_actor_sessions(
            caller.actor(),
            &tenant,
            &actor_type,
            &actor_id,
            body.reason.as_deref(),
        )
        .await?;
    Ok(Json(out))
}

/// Store OIDC pre-login state (10 minutes, consumed once); answers the cookie naming it.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/prelogin", tag = "sessions", request_body = CreatePreLogin,
    params(("tenant" = String, Path)), responses((status = 201, body = CreatedPreLogin)))]
pub async fn create_prelogin(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreatePreLogin>,
) -> ApiResult<(StatusCode, Json<CreatedPreLogin>)> {
    caller.require(&tenant, Scope::SessionsWrite)?;
    let out = st.create_prelogin(caller.actor(), &tenant, &body).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Hand pre-login state back, exactly once. A wrong `state` is a 400 (and spends the record);
/// consumed, expired or unknown is a 410.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/prelogin/consume", tag = "sessions", request_body = ConsumePreLogin,
    params(("tenant" = String, Path)), responses((status = 200, body = ConsumedPreLogin), (status = 400, body = crate::error::Problem), (status = 410, body = crate::error::Problem)))]
pub async fn consume_prelogin(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<ConsumePreLogin>,
) -> ApiResult<Json<ConsumedPreLogin>> {
    caller.require(&tenant, Scope::SessionsWrite)?;
    Ok(Json(st.consume_prelogin(&tenant, &body).await?))
}

/// Rotate the tenant's session cookie key: cookies under the previous keys keep validating for
/// the retention window (24 h).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/session-keys/rotate", tag = "sessions",
    params(("tenant" = String, Path)), responses((status = 200, body = SessionKeyView)))]
pub async fn rotate_key(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<SessionKeyView>> {
    caller.require(&tenant, Scope::KeysManage)?;
    Ok(Json(st.rotate_session_key(caller.actor(), &tenant).await?))
}

/// The tenant's session cookie keys with their status; never the secrets.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/session-keys", tag = "sessions",
    params(("tenant" = String, Path)), responses((status = 200, body = Object)))]
pub async fn list_keys(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<PageBody<SessionKeyView>>> {
    caller.require(&tenant, Scope::KeysManage)?;
    // A handful of keys per tenant: one page carries them all.
    Ok(Json(PageBody {
        items: st.list_session_keys(&tenant).await?,
        next_cursor: None,
    }))
}

/// Rotate a refresh token: a new access token and the next refresh token; the presented one
/// stops working. Presenting an already rotated token again is treated as theft: 401 with
/// reason `refresh_token_reuse`, and the whole family is revoked.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens/refresh", tag = "tokens", request_body = RefreshRequest,
    params(("tenant" = String, Path)), responses((status = 200, body = RefreshResponse), (status = 401, body = crate::error::Problem)))]
pub async fn refresh(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> ApiResult<Json<RefreshResponse>> {
    caller.require(&tenant, Scope::TokensIssue)?;
    if body.refresh_token.is_empty() {
        return Err(ApiError::field("refresh_token", "must not be empty"));
    }
    Ok(Json(
        st.refresh(&tenant, caller.actor(), &body.refresh_token)
            .await?,
    ))
}
