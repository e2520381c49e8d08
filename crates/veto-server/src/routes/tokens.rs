use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use veto_core::Reason;
use veto_core::apikey::Scope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::service::tokens::{Check, IssueRequest, IssueResponse};
use crate::state::AppState;

pub const MAX_ISSUE_BATCH: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBatch {
    pub requests: Vec<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub token: String,
    /// When given, the token's `aud` must contain it.
    pub audience: Option<String>,
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
    require_live_sid(&st, &tenant, &body).await?;
    let out = if body.token_use.as_deref() == Some("refresh") {
        st.issue_refresh_token(&tenant, caller.actor(), &body)
            .await?
    } else {
        st.issue_token(&tenant, caller.actor(), &body)?
    };
    Ok((StatusCode::CREATED, Json(out)))
}

/// A token naming a veto session in `sid` is issued only while that session is live.
async fn require_live_sid(st: &AppState, tenant: &str, req: &IssueRequest) -> ApiResult<()> {
    st.require_tenant(tenant)?;
    match &req.sid {
        Some(sid) => st.require_live_session(tenant, sid).await,
        None => Ok(()),
    }
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
    st.require_tenant(&tenant)?;
    if body.requests.is_empty() || body.requests.len() > MAX_ISSUE_BATCH {
        return Err(ApiError::field(
            "requests",
            format!("give 1 to {MAX_ISSUE_BATCH} requests"),
        ));
    }
    let mut results: Vec<Value> = Vec::with_capacity(body.requests.len());
    for (i, item) in body.requests.into_iter().enumerate() {
        let res = match serde_json::from_value::<IssueRequest>(item) {
            Err(e) => Err(ApiError::bad_request(format!(
                "the request does not match the expected shape: {e}"
            ))),
            Ok(req) => match require_live_sid(&st, &tenant, &req).await {
                Ok(()) => st.issue_token(&tenant, caller.actor(), &req),
                Err(e) => Err(e),
            },
        };
        results.push(match res {
            Ok(r) => serde_json::to_value(r).unwrap_or(Value::Null),
            Err(e) => json!({"error": e.at_index(i).problem()}),
        });
    }
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
    Ok(Json(
        match st.check_token(&tenant, &body.token, body.audience.as_deref()) {
            Check::Active(v) => VerifyResponse {
                active: true,
                claims: Some(v.claims),
                reason: None,
                revocation: None,
            },
            Check::Inactive(reason) => {
                // The decision came from memory; the record is detail for the answer only, so a
                // store hiccup leaves it out rather than failing the check.
                let revocation = if matches!(reason, Reason::Revoked | Reason::Suspended) {
                    match veto_core::verify::decode_unverified_claims(&body.token)
                        .and_then(|c| c.get("jti").and_then(Value::as_str).map(str::to_owned))
                    {
                        Some(jti) => st.store.get_revocation(&tenant, &jti).await.ok().flatten(),
                        None => None,
                    }
                } else {
                    None
                };
                VerifyResponse {
                    active: false,
                    claims: None,
                    reason: Some(reason),
                    revocation,
                }
            }
        },
    ))
}
