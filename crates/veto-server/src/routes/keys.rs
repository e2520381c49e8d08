//! Signing keys: create, rotate, revoke, list. The public documents made from them (the JWKS,
//! RFC 8414 metadata) are `discovery.rs`'s.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use veto_core::apikey::Scope;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, PageBody, PageParams};
use crate::service::keys::{KeyView, parse_alg};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// HS256 HS384 HS512 RS256 RS384 RS512 PS256 ES256 ES384 EdDSA
    pub alg: String,
    /// Binds the key to tokens for this audience.
    pub audience: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {
    pub reason: Option<String>,
}

/// Create a signing key.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys", tag = "keys", request_body = CreateKey,
    params(("tenant" = String, Path)), responses((status = 201, body = KeyView)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    caller.require(&tenant, Scope::KeysManage)?;
    let alg = parse_alg(&body.alg)?;
    let k = st
        .create_signing_key(
            caller.actor(),
            &tenant,
            alg,
            body.audience.as_deref(),
            false,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// Rotate: a new active key; the other active keys of that alg are retired and keep verifying
/// through the retention window.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys/rotate", tag = "keys", request_body = CreateKey,
    params(("tenant" = String, Path)), responses((status = 201, body = KeyView)))]
pub async fn rotate(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    caller.require(&tenant, Scope::KeysManage)?;
    let alg = parse_alg(&body.alg)?;
    let k = st
        .create_signing_key(caller.actor(), &tenant, alg, body.audience.as_deref(), true)
        .await?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// Revoke a key: every token it signed is rejected at once; it leaves the JWKS.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/keys/{kid}/revoke", tag = "keys", request_body = RevokeKey,
    params(("tenant" = String, Path), ("kid" = String, Path)), responses((status = 200, body = KeyView)))]
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, kid)): ApiPath<(String, String)>,
    crate::extract::ApiJsonOrEmpty(body): crate::extract::ApiJsonOrEmpty<Option<RevokeKey>>,
) -> ApiResult<Json<KeyView>> {
    caller.require(&tenant, Scope::KeysManage)?;
    let reason = body.and_then(|b| b.reason);
    Ok(Json(
        st.revoke_signing_key(caller.actor(), &tenant, &kid, reason.as_deref())
            .await?,
    ))
}

/// List signing keys with their status; never private material.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/keys", tag = "keys",
    params(("tenant" = String, Path), PageParams), responses((status = 200, body = Object)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<PageBody<KeyView>>> {
    caller.require(&tenant, Scope::KeysManage)?;
    let page = st.list_signing_keys(&tenant, &page.to_request()?).await?;
    Ok(Json(PageBody {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}
