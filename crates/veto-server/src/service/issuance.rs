//! Issuing as the routes ask for it: the preconditions the token service (`tokens.rs`) leaves to
//! its callers, batches, and where the signing runs.
//!
//! Signing is CPU work: an RS512 signature takes milliseconds, a batch of a thousand seconds.
//! On the async workers it would stall every other request of every tenant (a node has as many
//! workers as cores), so batches and RSA signatures run on the blocking pool, through
//! [`crate::signing::SigningPool`]: at most one batch per tenant at a time, and at most one
//! signing job fewer than the cores in all, so that checks always have a core. Single ES, EdDSA
//! and HMAC signatures (tens of microseconds) stay inline, where a hop to another thread would
//! cost more than it saves.
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
        self.after_cutoff(tenant, &req.sub).await;
        if req.token_use.as_deref() == Some("refresh") {
            self.issue_refresh_token(tenant, actor, req).await
        } else {
            self.issue_access_token(tenant, actor, req).await
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
        // The checks that may read the store first, here; then all the signing in one job.
        // Items that get a status list entry are issued here one by one instead: their entry
        // is a write, made between their checks and their signature.
        // Each item ends in exactly one of `issued` (here) or `ready` (the signing job).
        let mut issued: Vec<Option<ApiResult<IssueResponse>>> = Vec::with_capacity(items.len());
        let mut ready = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            // Items are parsed one by one, so a malformed item fails alone, not the whole batch.
            let req = match serde_json::from_value::<IssueRequest>(item) {
                Err(e) => Err(ApiError::bad_request(format!(
                    "the request does not match the expected shape: {e}"
                ))),
                Ok(req) => self.require_live_sid(tenant, &req).await.map(|()| req),
            };
            match req {
                Ok(r)
                    if r.status_list
                        .unwrap_or_else(|| self.status_lists.enabled(tenant)) =>
                {
                    self.after_cutoff(tenant, &r.sub).await;
                    let out = self.issue_access_token(tenant, actor, &r).await;
                    issued.push(Some(out.map_err(|e| e.at_index(i))));
                    ready.push(None);
                }
                other => {
                    issued.push(None);
                    ready.push(Some(other));
                }
            }
        }
        let (st, t, a) = (self.clone(), tenant.to_owned(), actor.to_owned());
        let signed: Vec<Option<ApiResult<IssueResponse>>> = self
            .signing
            .run(tenant, move || {
                ready
                    .into_iter()
                    .enumerate()
                    .map(|(i, req)| {
                        req.map(|req| {
                            req.and_then(|r| {
                                // On a blocking-pool thread: sleeping here holds no async worker.
                                if let Some(wait) = st.cutoff_wait(&t, &r.sub) {
                                    std::thread::sleep(wait);
                                }
                                st.issue_token(&t, &a, &r)
                            })
                            .map_err(|e| e.at_index(i))
                        })
                    })
                    .collect()
            })
            .await?;
        Ok(issued
            .into_iter()
            .zip(signed)
            .filter_map(|(here, there)| here.or(there))
            .collect())
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
