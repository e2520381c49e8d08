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

/// Whether signing with `alg` is slow enough to leave the async workers (RSA: milliseconds).
fn slow_to_sign(alg: Option<&str>) -> bool {
    alg.is_some_and(|a| a.starts_with("RS") || a.starts_with("PS"))
}

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
        } else if slow_to_sign(req.alg.as_deref()) {
            let (st, t, a, r) = (
                self.clone(),
                tenant.to_owned(),
                actor.to_owned(),
                req.clone(),
            );
            self.signing
                .run(tenant, move || st.issue_token(&t, &a, &r))
                .await?
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
        // The checks that may read the store first, here; then all the signing in one job.
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            // Items are parsed one by one, so a malformed item fails alone, not the whole batch.
            ready.push(match serde_json::from_value::<IssueRequest>(item) {
                Err(e) => Err(ApiError::bad_request(format!(
                    "the request does not match the expected shape: {e}"
                ))),
                Ok(req) => self.require_live_sid(tenant, &req).await.map(|()| req),
            });
        }
        let (st, t, a) = (self.clone(), tenant.to_owned(), actor.to_owned());
        self.signing
            .run(tenant, move || {
                ready
                    .into_iter()
                    .enumerate()
                    .map(|(i, req)| {
                        req.and_then(|r| {
                            // On a blocking-pool thread: sleeping here holds no async worker.
                            if let Some(wait) = st.cutoff_wait(&t, &r.sub) {
                                std::thread::sleep(wait);
                            }
                            st.issue_token(&t, &a, &r)
                        })
                        .map_err(|e| e.at_index(i))
                    })
                    .collect()
            })
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_leaves_the_async_workers_the_cheap_algorithms_do_not() {
        for alg in ["RS256", "RS512", "PS256"] {
            assert!(slow_to_sign(Some(alg)), "{alg}");
        }
        for alg in [None, Some("ES256"), Some("EdDSA"), Some("HS256")] {
            assert!(!slow_to_sign(alg), "{alg:?}");
        }
    }
}
