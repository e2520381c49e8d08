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
use crate::memory::Tenants;
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
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id,
            display_name: t.display_name,
            suspended: t.suspended,
            created_at: t.created_at,
        }
    }
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
    Ok((StatusCode::CREATED, Json(t.into())))
}

/// Read a tenant (any key of the tenant).
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path)), responses((status = 200, body = TenantView), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(tenants): State<Tenants>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantView>> {
    caller.require_member(&tenant)?;
    Ok(Json(tenants.require(&tenant)?.into()))
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
    Ok(Json(t.into()))
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
    Ok(Json(t.into()))
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
