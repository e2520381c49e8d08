//! `/v1/tenants/{tenant}/revocations`: revoke by jti or token, batches, suspensions and their
//! lift, the ledger's listing and stats.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use veto_core::apikey::Scope;
use veto_core::revocation::{Revocation, RevocationFilter, RevocationStats};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery, PageBody, PageParams};
use crate::memory::Tenants;
use crate::routes::tenants::ReasonBody;
use crate::service::revocations::{BatchRevokeResult, RevokeRequest};
use crate::service::tenants::CutoffResult;
use crate::state::AppState;
use crate::stream::{OpenError, Streams};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBatch {
    pub revocations: Vec<RevokeRequest>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub sub: Option<String>,
    pub reason: Option<String>,
    pub revoked_by: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

const READ: &[Scope] = &[Scope::TokensRevoke, Scope::AuditRead];

/// Revoke a token by jti or by the token itself. 201 the first time; 200 with the unchanged
/// original record on every repeat. Answered only once durable.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/revocations", tag = "revocations", request_body = RevokeRequest,
    params(("tenant" = String, Path)), responses((status = 201, body = Object), (status = 200, body = Object)))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> ApiResult<(StatusCode, Json<Revocation>)> {
    caller.require(&tenant, Scope::TokensRevoke)?;
    let out = st.revoke(&tenant, caller.actor(), &body).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out.record)))
}

/// Revoke up to 10,000 tokens in one transaction, or none if any item is invalid.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/revocations/batch", tag = "revocations", request_body = RevokeBatch,
    params(("tenant" = String, Path)), responses((status = 200, body = BatchRevokeResult)))]
pub async fn batch(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<RevokeBatch>,
) -> ApiResult<Json<BatchRevokeResult>> {
    caller.require(&tenant, Scope::TokensRevoke)?;
    Ok(Json(
        st.revoke_batch(&tenant, caller.actor(), &body.revocations)
            .await?,
    ))
}

/// Read one revocation record.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/revocations/{jti}", tag = "revocations",
    params(("tenant" = String, Path), ("jti" = String, Path)), responses((status = 200, body = Object), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, jti)): ApiPath<(String, String)>,
) -> ApiResult<Json<Revocation>> {
    caller.require_any(&tenant, READ)?;
    Ok(Json(st.get_revocation(&tenant, &jti).await?))
}

/// List revocations, newest first, with filters.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/revocations", tag = "revocations",
    params(("tenant" = String, Path), ListParams), responses((status = 200, body = Object)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<PageBody<Revocation>>> {
    caller.require_any(&tenant, READ)?;
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .to_request()?;
    let filter = RevocationFilter {
        sub: q.sub,
        reason: q.reason,
        revoked_by: q.revoked_by,
    };
    let p = st.list_revocations(&tenant, &filter, &page).await?;
    Ok(Json(PageBody {
        items: p.items,
        next_cursor: p.next_cursor,
    }))
}

/// Counts of permanent and temporary revocations.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/revocations/stats", tag = "revocations",
    params(("tenant" = String, Path)), responses((status = 200, body = Object)))]
pub async fn stats(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<RevocationStats>> {
    caller.require_any(&tenant, READ)?;
    Ok(Json(st.revocation_stats(&tenant).await?))
}

/// Lift a temporary suspension early (204). Permanent revocations answer 409.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/revocations/{jti}", tag = "revocations",
    params(("tenant" = String, Path), ("jti" = String, Path)), responses((status = 204), (status = 409, body = crate::error::Problem)))]
pub async fn lift(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, jti)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(&tenant, Scope::TokensRevoke)?;
    st.lift(&tenant, caller.actor(), &jti).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Log a subject out everywhere: every token of it issued up to now is rejected.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/subjects/{sub}/revoke-all", tag = "revocations", request_body = ReasonBody,
    params(("tenant" = String, Path), ("sub" = String, Path)), responses((status = 200, body = CutoffResult)))]
pub async fn subject_revoke_all(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath((tenant, sub)): ApiPath<(String, String)>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ReasonBody>,
) -> ApiResult<Json<CutoffResult>> {
    caller.require(&tenant, Scope::TokensRevoke)?;
    Ok(Json(
        st.revoke_all_subject(caller.actor(), &tenant, &sub, body.reason.as_deref())
            .await?,
    ))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Resume after this position (a previous event's id); `Last-Event-ID` wins when both are
    /// given.
    pub from: Option<String>,
}

/// The tenant's revocation state as Server-Sent Events: a snapshot (or the changes after a
/// resume position), then every change, and heartbeats while this node is fresh. The event
/// format is in docs/stream.md.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/revocations/stream", tag = "revocations",
    params(("tenant" = String, Path), StreamParams,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this position")),
    responses((status = 200, content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(streams): State<Streams>,
    State(tenants): State<Tenants>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    headers: axum::http::HeaderMap,
    ApiQuery(q): ApiQuery<StreamParams>,
) -> ApiResult<impl axum::response::IntoResponse> {
    caller.require(&tenant, Scope::TokensVerify)?;
    tenants.require(&tenant)?;
    let header = headers.get("last-event-id").map(|v| {
        v.to_str()
            .map_err(|_| ApiError::field("Last-Event-ID", "not a position veto wrote"))
    });
    let resume = match header.transpose()?.or(q.from.as_deref()) {
        Some(text) => Some(crate::position::parse("Last-Event-ID", text)?),
        None => None,
    };
    let key = caller.0.key_hash;
    let events = streams
        .open(tenant, key, resume)
        .await
        .map_err(|e| match e {
            OpenError::Store(e) => ApiError::from(e),
        })?;
    Ok(axum::response::sse::Sse::new(events))
}
