//! `/v1/tenants/{tenant}/tokens`: issue (one, or a batch) and verify. Refresh rotation is in
//! `sessions.rs`, beside the sessions it belongs with.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use veto_core::Reason;
use veto_core::apikey::Scope;

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath};
use crate::position;
use crate::service::tokens::{Check, IssueRequest, IssueResponse};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBatch {
    /// Kept as JSON and parsed item by item (a bad item fails alone); duplicate members are
    /// refused here already, before the values would keep only the last.
    #[serde(deserialize_with = "veto_core::strict_json::values")]
    pub requests: Vec<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub token: String,
    /// When given, the token's `aud` must contain it.
    pub audience: Option<String>,
    /// Answer only from a state holding every change up to this position (a `Veto-Position`
    /// header value), waiting up to 2 s for it; 503 `not_caught_up` otherwise.
    pub min_position: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerifyResponse {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Every claim of the token, as signed.
    #[schema(value_type = Option<Object>)]
    pub claims: Option<veto_core::verify::Claims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub revocation: Option<veto_core::revocation::Revocation>,
    /// The change-log position of the state the token was judged on (docs/stream.md).
    pub position: String,
}

impl VerifyResponse {
    fn active(claims: veto_core::verify::Claims, position: String) -> Self {
        VerifyResponse {
            active: true,
            claims: Some(claims),
            reason: None,
            revocation: None,
            position,
        }
    }

    fn inactive(
        reason: Reason,
        revocation: Option<veto_core::revocation::Revocation>,
        position: String,
    ) -> Self {
        VerifyResponse {
            active: false,
            claims: None,
            reason: Some(reason),
            revocation,
            position,
        }
    }
}

/// Issue an access token (RFC 9068 `at+jwt`), or with `token_use: "refresh"` the first refresh
/// token of a new family (JOSE type `rt+jwt`; rotate it with `POST …/tokens/refresh`).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tokens", request_body = IssueRequest,
    params(("tenant" = String, Path)), responses((status = 201, body = IssueResponse), (status = 409, body = crate::error::Problem)))]
pub async fn issue(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<IssueRequest>,
) -> ApiResult<(StatusCode, Json<IssueResponse>)> {
    caller.require(&tenant, Scope::TokensIssue)?;
    let out = st.issue(&tenant, caller.actor(), &body).await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Issue up to 1000 tokens; each result is a token or that item's problem, in request order.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens/batch", tag = "tokens", request_body = IssueBatch,
    params(("tenant" = String, Path)), responses((status = 200, body = Object)))]
pub async fn issue_batch(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<IssueBatch>,
) -> ApiResult<Json<Value>> {
    caller.require(&tenant, Scope::TokensIssue)?;
    let results: Vec<Value> = st
        .issue_batch(&tenant, caller.actor(), body.requests)
        .await?
        .into_iter()
        .map(|res| match res {
            Ok(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Err(e) => json!({"error": e.problem()}),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// Verify a token: signature, claims and revocation state. A bad token is a 200 with
/// `active: false` and a reason: the question was well asked.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens/verify", tag = "tokens", request_body = VerifyRequest,
    params(("tenant" = String, Path)), responses((status = 200, body = VerifyResponse)))]
pub async fn verify(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyResponse>> {
    caller.require(&tenant, Scope::TokensVerify)?;
    st.require_tenant(&tenant)?;
    position::reach(&st.feed, body.min_position.as_deref()).await?;
    // Read before the check: the state judged on holds at least every change up to it.
    let position = st.feed.cursor().to_string();
    Ok(Json(
        match st.check_token(&tenant, &body.token, body.audience.as_deref()) {
            Check::Active(v) => VerifyResponse::active(v.claims, position),
            Check::Inactive(reason) => {
                let revocation = st.revocation_behind(&tenant, &body.token, reason).await;
                VerifyResponse::inactive(reason, revocation, position)
            }
        },
    ))
}
