//! The storage conformance suites (`conformance`) against the embedded SQLite backend, one fresh
//! temp file per case, and what only this backend has (its file, its write batching).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tempfile::TempDir;
use veto_core::audit::AuditEvent;
use veto_core::revocation::{Revocation, RevocationStatus};
use veto_core::tenant::Tenant;
use veto_store::{SessionStore, SqliteStore, Store};

use conformance::{TestDatabase, at};

mod conformance;

struct TempSqlite {
    // Held so the directory (and the database with its -wal and -shm files) lives as long as
    // the case; removed on drop.
    _dir: TempDir,
    path: PathBuf,
}

impl TempSqlite {
    async fn store(&self) -> SqliteStore {
        let store = SqliteStore::open(&self.path).await.expect("open sqlite");
        store.migrate().await.expect("migrate");
        store
    }
}

#[async_trait]
impl TestDatabase for TempSqlite {
    async fn open(&self) -> Box<dyn Store> {
        Box::new(self.store().await)
    }

    async fn open_sessions(&self) -> (Arc<dyn Store>, Arc<dyn SessionStore>) {
        let store = Arc::new(self.store().await);
        (store.clone(), store)
    }
}

/// A new, empty database file in a directory of its own.
async fn temp_db() -> TempSqlite {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("veto.db");
    TempSqlite { _dir: dir, path }
}

/// The database every conformance case runs on: never skipped.
async fn fresh() -> Option<TempSqlite> {
    Some(temp_db().await)
}

#[tokio::test]
async fn open_creates_missing_file_in_wal_mode() {
    let db = temp_db().await;
    assert!(!db.path.exists());
    let _store = db.open().await;
    assert!(db.path.exists());
    assert!(
        db.path.with_extension("db-wal").exists(),
        "WAL journal in use"
    );
}

#[tokio::test]
async fn open_fails_cleanly_on_unusable_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("veto.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(err, veto_store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the backend's error is kept"
    );
}

fn batch(round: usize, n: usize) -> Vec<(Revocation, AuditEvent)> {
    (0..n)
        .map(|i| {
            let jti = format!("{round}-{:032x}", i * 7919);
            let r = Revocation {
                jti: jti.clone(),
                tenant: "acme".into(),
                sub: Some(format!("user-{}", i % 100)),
                expires_at: at(3_600),
                revoked_at: at(0),
                reason: Some("logout".into()),
                revoked_by: "ak_test".into(),
                metadata: serde_json::json!({}),
                until: None,
                status: RevocationStatus::Revoked,
            };
            let a = AuditEvent::new("acme", "ak_test", "revocation.create", &jti);
            (r, a)
        })
        .collect()
}

async fn store_with_acme(db: &TempSqlite) -> Box<dyn Store> {
    let store = db.open().await;
    let t = Tenant {
        id: "acme".into(),
        display_name: "Acme".into(),
        suspended: false,
        created_at: at(0),
    };
    store
        .create_tenant(
            &t,
            &AuditEvent::new("acme", "test", "tenant.create", "acme"),
        )
        .await
        .unwrap();
    store
}

/// Not a benchmark and no assertion on time: prints how long a 10,000-row batch takes, so a
/// regression is visible in `cargo test -p veto-store --test sqlite batch_timing -- --nocapture`.
#[tokio::test]
async fn batch_timing() {
    let db = temp_db().await;
    let store = store_with_acme(&db).await;
    for round in 0..3 {
        let items = batch(round, 10_000);
        let started = Instant::now();
        let (created, existing, _) = store.insert_revocations(&items).await.unwrap().value;
        let elapsed = started.elapsed();
        assert_eq!((created, existing), (10_000, 0));
        eprintln!("round {round}: 10,000 revocations in one batch: {elapsed:?}");
    }
}

/// Start-up cost with 100,000 revocations (ignored by default: it takes a few seconds to fill).
/// `cargo test -p veto-store --test sqlite load_state_timing -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn load_state_timing() {
    let db = temp_db().await;
    {
        let store = store_with_acme(&db).await;
        for round in 0..10 {
            store
                .insert_revocations(&batch(round, 10_000))
                .await
                .unwrap();
        }
    }
    // A fresh store, as at start-up: nothing cached in this process's connections.
    let store = db.open().await;
    for attempt in 0..2 {
        let started = Instant::now();
        let state = store.load_state(at(0)).await.unwrap();
        assert_eq!(state.revocations.len(), 100_000);
        eprintln!(
            "attempt {attempt}: load_state of {} revocations: {:?}",
            state.revocations.len(),
            started.elapsed()
        );
    }
}

/// Acknowledged single revocations per second, one at a time (each its own durable commit).
/// `cargo test -p veto-store --test sqlite single_insert_timing -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn single_insert_timing() {
    let db = temp_db().await;
    let store = store_with_acme(&db).await;
    let items = batch(0, 2_000);
    let started = Instant::now();
    for (r, a) in &items {
        assert!(store.insert_revocation(r, a).await.unwrap().value.created);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} single revocations in {elapsed:?}: {:.0}/s",
        items.len(),
        items.len() as f64 / elapsed.as_secs_f64()
    );
}

/// The same with concurrent callers, as the HTTP layer produces them: group commit lets callers
/// that arrive during one commit share the next one.
/// `cargo test -p veto-store --test sqlite concurrent_insert_timing -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn concurrent_insert_timing() {
    let db = temp_db().await;
    let store: std::sync::Arc<dyn Store> = store_with_acme(&db).await.into();
    for callers in [1usize, 8, 32, 128] {
        let items = std::sync::Arc::new(batch(callers, 4_000));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..callers {
            let (store, items) = (store.clone(), items.clone());
            tasks.spawn(async move {
                for (r, a) in items.iter().skip(c).step_by(callers) {
                    assert!(store.insert_revocation(r, a).await.unwrap().value.created);
                }
            });
        }
        while let Some(t) = tasks.join_next().await {
            t.unwrap();
        }
        let elapsed = started.elapsed();
        eprintln!(
            "{callers:>3} concurrent callers: {} revocations in {elapsed:?}: {:.0}/s",
            items.len(),
            items.len() as f64 / elapsed.as_secs_f64()
        );
    }
}
