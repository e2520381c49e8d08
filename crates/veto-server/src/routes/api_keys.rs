//! `/v1/tenants/{tenant}/api-keys`: create (the secret shown once), list, delete.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use veto_core::apikey::Scope;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery, PageBody, PageParams};
use crate::service::apikeys::{ApiKeyView, CreatedApiKey};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    pub scopes: Vec<String>,
}

/// Create an API key of the tenant. The secret (`key`) is shown only in this answer.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys", request_body = CreateApiKey,
    params(("tenant" = String, Path)), responses((status = 201, body = CreatedApiKey)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    caller.require(&tenant, Scope::KeysManage)?;
    let k = st
        .create_api_key(caller.actor(), &tenant, &body.name, &body.scopes)
        .await?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// List the tenant's API keys (never their secrets).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path), PageParams), responses((status = 200, body = Object)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<PageBody<ApiKeyView>>> {
    caller.require(&tenant, Scope::KeysManage)?;
    let p = st.list_api_keys(&tenant, &page.to_request()?).await?;
    Ok(Json(PageBody {
        items: p.items,
        next_cursor: p.next_cursor,
    }))
}

/// Delete an API key; it stops authenticating at once.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/api-keys/{id}", tag = "api-keys",
    params(("tenant" = String, Path), ("id" = String, Path)), responses((status = 204), (status = 404, body = crate::error::Problem)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(&tenant, Scope::KeysManage)?;
    st.delete_api_key(caller.actor(), &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
