//! Issuing as the routes ask for it: the preconditions the token service (`tokens.rs`) leaves to
//! its callers, and batches.
use serde_json::Value;

use super::tokens::{IssueRequest, IssueResponse};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const MAX_ISSUE_BATCH: usize = 1000;

impl AppState {
    /// One token: an access token, or with `token_use: "refresh"` the first refresh token of a
    /// new family.
    pub async fn issue(
        &self,
        tenant: &str,
        actor: &str,
        req: &IssueRequest,
    ) -> ApiResult<IssueResponse> {
        self.require_live_sid(tenant, req).await?;
        if req.token_use.as_deref() == Some("refresh") {
            self.issue_refresh_token(tenant, actor, req).await
        } else {
            self.issue_token(tenant, actor, req)
        }
    }

    /// Up to [`MAX_ISSUE_BATCH`] access tokens, each issued or refused on its own: the results
    /// are in request order, a refusal tagged with its item's index.
    pub async fn issue_batch(
        &self,
        tenant: &str,
        actor: &str,
        items: Vec<Value>,
    ) -> ApiResult<Vec<ApiResult<IssueResponse>>> {
        self.require_tenant(tenant)?;
        if items.is_empty() || items.len() > MAX_ISSUE_BATCH {
            return Err(ApiError::field(
                "requests",
                format!("give 1 to {MAX_ISSUE_BATCH} requests"),
            ));
        }
        let mut results = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            // Items are parsed one by one, so a malformed item fails alone, not the whole batch.
            let res = match serde_json::from_value::<IssueRequest>(item) {
                Err(e) => Err(ApiError::bad_request(format!(
                    "the request does not match the expected shape: {e}"
                ))),
                Ok(req) => match self.require_live_sid(tenant, &req).await {
                    Ok(()) => self.issue_token(tenant, actor, &req),
                    Err(e) => Err(e),
                },
            };
            results.push(res.map_err(|e| e.at_index(i)));
        }
        Ok(results)
    }

    /// A token naming a veto session in `sid` is issued only while that session is live.
    async fn require_live_sid(&self, tenant: &str, req: &IssueRequest) -> ApiResult<()> {
        self.require_tenant(tenant)?;
        match &req.sid {
            Some(sid) => self.require_live_session(tenant, sid).await,
            None => Ok(()),
        }
    }
}
