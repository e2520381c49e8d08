//! `/v1/tenants/{tenant}/audit`: the audit trail, newest first, filtered by action.
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use veto_core::apikey::Scope;
use veto_core::audit::AuditEvent;
use veto_store::Database;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{ApiPath, ApiQuery, PageBody, PageParams};
use crate::memory::Tenants;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// e.g. `revocation.create`, `key.rotate`, `tenant.suspend`.
    pub action: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The tenant's audit trail, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path), AuditParams), responses((status = 200, body = Object)))]
pub async fn list(
    State(tenants): State<Tenants>,
    State(store): State<Arc<dyn Database>>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult<Json<PageBody<AuditEvent>>> {
    caller.require(&tenant, Scope::AuditRead)?;
    tenants.require(&tenant)?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .to_request()?;
    let p = store
        .list_audit(&tenant, q.action.as_deref(), &page)
        .await?;
    Ok(Json(PageBody {
        items: p.items,
        next_cursor: p.next_cursor,
    }))
}
