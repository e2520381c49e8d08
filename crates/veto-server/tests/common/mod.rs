//! A node's state on a real SQLite store in a temporary directory, with tenant `acme`: what the
//! tests of this crate drive without HTTP.
use std::sync::Arc;

use veto_core::audit::AuditEvent;
use veto_core::keys::MasterKey;
use veto_core::tenant::Tenant;
use veto_core::timeutil;
use veto_server::{AppState, Config};
use veto_store::{SqliteStore, Store};

pub struct Node {
    pub state: AppState,
    pub store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

pub async fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("veto.db"))
            .await
            .expect("open"),
    );
    store.migrate().await.expect("migrate");
    let t = Tenant {
        id: "acme".into(),
        display_name: "Acme".into(),
        suspended: false,
        created_at: timeutil::now(),
    };
    let audit = AuditEvent::new("acme", "test", "tenant.create", "acme");
    store.create_tenant(&t, &audit).await.expect("tenant");
    let state = AppState::load(
        Config::new("http://127.0.0.1:1"),
        store.clone(),
        MasterKey::generate(),
        veto_server::metrics::install(),
    )
    .await
    .expect("load");
    Node {
        state,
        store,
        _dir: dir,
    }
}
