//! Issuing as the routes ask for it: the preconditions the token service (`tokens.rs`) leaves to
//! its callers, batches, and where the signing runs.
//!
//! Signing is CPU work: an RS512 signature takes milliseconds, a batch of a thousand seconds.
//! On the async workers it would stall every other request of every tenant (a node has as many
//! workers as cores), so batches and RSA signatures run on the blocking pool, through
//! [`SigningPool`]: at most one batch per tenant at a time, and at most one signing job fewer
//! than the cores in all, so that checks always have a core. Single ES, EdDSA and HMAC
//! signatures (tens of microseconds) stay inline, where a hop to another thread would cost more
//! than it saves.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Semaphore;

use super::tokens::{IssueRequest, IssueResponse};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const MAX_ISSUE_BATCH: usize = 1000;

/// Bounds the signing work that runs off the async workers (module comment).
pub struct SigningPool {
    /// Jobs running at once, all tenants together.
    all: Arc<Semaphore>,
    /// One job at a time per tenant: a tenant's second batch waits for its first, instead of
    /// taking a second core from everyone else.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl SigningPool {
    /// `jobs` signing jobs at once (at least 1).
    pub fn new(jobs: usize) -> SigningPool {
        SigningPool {
            all: Arc::new(Semaphore::new(jobs.max(1))),
            tenants: Mutex::default(),
        }
    }

    /// For this machine: one job fewer than its cores, at least one.
    pub fn for_this_machine() -> SigningPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SigningPool::new(cores.saturating_sub(1))
    }

    fn tenant(&self, tenant: &str) -> Arc<Semaphore> {
        let mut map = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone()
    }

    /// Runs `job` on the blocking pool once `tenant`'s turn and a free slot come.
    pub async fn run<T: Send + 'static>(
        &self,
        tenant: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let closed = |_| ApiError::Unavailable("the signing pool is shutting down".into());
        let _mine = self.tenant(tenant).acquire_owned().await.map_err(closed)?;
        let _slot = self.all.clone().acquire_owned().await.map_err(closed)?;
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| ApiError::Internal(format!("a signing job failed: {e}")))
    }
}

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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Runs `jobs` jobs of `tenant` concurrently on `pool`, each holding its slot a moment, and
    /// returns the most that ran at once.
    async fn most_at_once(pool: Arc<SigningPool>, tenants: &[&str]) -> usize {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut all = Vec::new();
        for t in tenants {
            let (pool, running, most, t) =
                (pool.clone(), running.clone(), most.clone(), t.to_string());
            all.push(tokio::spawn(async move {
                pool.run(&t, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap();
            }));
        }
        for j in all {
            j.await.unwrap();
        }
        most.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_tenant_runs_one_job_at_a_time() {
        let pool = Arc::new(SigningPool::new(4));
        assert_eq!(most_at_once(pool, &["a"; 6]).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn all_tenants_together_stay_within_the_pool() {
        let pool = Arc::new(SigningPool::new(2));
        let most = most_at_once(pool, &["a", "b", "c", "d", "e", "f"]).await;
        assert!((1..=2).contains(&most), "{most}");
    }

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
