//! Where signing that would stall the async workers runs: the blocking pool, bounded per tenant
//! and in all (why: `service::issuance`). Its own module, below the state that holds it and the
//! services that use it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

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
}
