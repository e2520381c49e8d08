//! `/v1/tenants`: create, read, suspend and resume, and the revoke-alls for a whole tenant or
//! one subject.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use veto_core::tenant::Tenant;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath};
use crate::service::tenants::CutoffResult;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// `[a-z0-9][a-z0-9-]{0,62}`
    pub id: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    pub reason: Option<String>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub display_name: String,
    pub suspended: bool,
    /// Whether its tokens get an OAuth Token Status List entry when the issuer does not say.
    pub status_list: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

impl TenantView {
    fn of(st: &AppState, t: Tenant) -> TenantView {
        TenantView {
            status_list: st.status_lists.enabled(&t.id),
            id: t.id,
            display_name: t.display_name,
            suspended: t.suspended,
            created_at: t.created_at,
        }
    }
}

/// The tenant's settings; fields left out keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// Give every token of the tenant an OAuth Token Status List entry unless its issuer says
    /// `"status_list": false`.
    pub status_list: Option<bool>,
}

/// Create a tenant (admin keys). It starts with one active ES256 key.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 400, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    caller.require_admin()?;
    let name = body.display_name.as_deref().unwrap_or(&body.id);
    let t = st.create_tenant(caller.actor(), &body.id, name).await?;
    Ok((StatusCode::CREATED, Json(TenantView::of(&st, t))))
}

/// Read a tenant (any key of the tenant).
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path)), responses((status = 200, body = TenantView), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantView>> {
    caller.require_member(&tenant)?;
    Ok(Json(TenantView::of(&st, st.require_tenant(&tenant)?)))
}

/// Change a tenant's settings (admin keys): `status_list`.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants", request_body = TenantSettings,
    params(("tenant" = String, Path)), responses((status = 200, body = TenantView), (status = 400, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn patch(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<TenantSettings>,
) -> ApiResult<Json<TenantView>> {
    caller.require_admin()?;
    if let Some(on) = body.status_list {
        st.set_status_list_setting(caller.actor(), &tenant, on)
            .await?;
    }
    Ok(Json(TenantView::of(&st, st.require_tenant(&tenant)?)))
}

/// Suspend a tenant: none of its tokens verifies, issuing answers 409.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/suspend", tag = "tenants", request_body = ReasonBody,
    params(("tenant" = String, Path)), responses((status = 200, body = TenantView)))]
pub async fn suspend(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReasonBody>,
) -> ApiResult<Json<TenantView>> {
    caller.require_admin()?;
    let t = st
        .set_suspended(caller.actor(), &tenant, true, body.reason.as_deref())
        .await?;
    Ok(Json(TenantView::of(&st, t)))
}

/// Resume a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/resume", tag = "tenants", request_body = ReasonBody,
    params(("tenant" = String, Path)), responses((status = 200, body = TenantView)))]
pub async fn resume(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReasonBody>,
) -> ApiResult<Json<TenantView>> {
    caller.require_admin()?;
    let t = st
        .set_suspended(caller.actor(), &tenant, false, body.reason.as_deref())
        .await?;
    Ok(Json(TenantView::of(&st, t)))
}

/// Reject every token of the tenant issued up to now.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/revoke-all", tag = "tenants", request_body = ReasonBody,
    params(("tenant" = String, Path)), responses((status = 200, body = CutoffResult)))]
pub async fn revoke_all(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReasonBody>,
) -> ApiResult<Json<CutoffResult>> {
    caller.require_admin()?;
    Ok(Json(
        st.revoke_all_tenant(caller.actor(), &tenant, body.reason.as_deref())
            .await?,
    ))
}
