//! The `SessionStore` conformance suite against the embedded SQLite backend: one fresh temp file
//! per case.
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tempfile::TempDir;
use veto_store::session_conformance::SessionTestDatabase;
use veto_store::{SessionStore, SqliteStore, Store};

struct TempSqlite {
    // Held so the directory (and the database with its -wal and -shm files) lives as long as
    // the case; removed on drop.
    _dir: TempDir,
    path: PathBuf,
}

#[async_trait]
impl SessionTestDatabase for TempSqlite {
    async fn open(&self) -> (Arc<dyn Store>, Arc<dyn SessionStore>) {
        let store = SqliteStore::open(&self.path).await.expect("open sqlite");
        store.migrate().await.expect("migrate");
        let store = Arc::new(store);
        (store.clone(), store)
    }
}

async fn fresh() -> TempSqlite {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("veto.db");
    TempSqlite { _dir: dir, path }
}

veto_store::session_conformance_tests!(fresh);
