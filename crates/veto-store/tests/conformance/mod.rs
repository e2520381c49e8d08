//! The storage conformance suite: what every backend must do, written once against `dyn Store`
//! (and, in `sessions`, against `dyn SessionStore`).
//!
//! Each backend's test file (`tests/sqlite.rs`, `tests/postgres.rs`) includes this module with
//! `mod conformance;` and defines, at its root, the database the suite runs on:
//!
//! ```ignore
//! /// A new, empty database, or `None` when this backend's tests were told to skip.
//! async fn fresh() -> Option<MyTestDb> { /* … */ }
//! impl conformance::TestDatabase for MyTestDb { /* … */ }
//! ```
//!
//! Every case is a `#[tokio::test]` of its own that takes a fresh database from there, so the
//! whole suite, and every case added to it, runs once per backend that includes it, with no list
//! of cases to keep. Deciding to skip (`None`: a backend whose server is not configured and that
//! was told to skip) and failing loudly otherwise is `fresh`'s job. Cases run on a two-worker
//! multi-thread runtime (concurrency is part of what they check). They assert on concrete values
//! (records, orders, counts), not merely on `is_ok()`.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use time::OffsetDateTime;
use veto_core::Alg;
use veto_core::apikey::{ApiKeyRecord, Scope};
use veto_core::audit::AuditEvent;
use veto_core::keys::{KeyStatus, SigningKeyRecord};
use veto_core::revocation::{Cutoff, Revocation, RevocationFilter, RevocationStatus};
use veto_core::tenant::Tenant;
use veto_store::{
    CHANGE_RETENTION_SECS, Change, ChangeKind, FeedCursor, LiftOutcome, Page, PageRequest,
    PurgeCounts, SessionStore, Store, StoreError, Written, change,
};

use crate::fresh;

mod sessions;
mod status_lists;

/// One empty database for one case.
#[async_trait]
pub trait TestDatabase: Send + Sync {
    /// A migrated store on this database. Called again after the previous store was dropped, it
    /// must show everything that store committed.
    async fn open(&self) -> Box<dyn Store>;

    /// The same, seen through both traits (for the `SessionStore` cases): as a `Store` to create
    /// tenants and read the audit trail and the change feed, and as a `SessionStore`. A store
    /// with a pool of connections should have enough for the races among those cases (8
    /// callers), so that each runs on a connection of its own and the database decides.
    async fn open_sessions(&self) -> (Arc<dyn Store>, Arc<dyn SessionStore>);
}

// ---- fixtures ---------------------------------------------------------------------------------

/// Fixed times: cases never depend on the wall clock (2027-01-15T08:00:00Z + offset).
const T0: i64 = 1_800_000_000;

pub fn at(offset_secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(T0 + offset_secs).expect("fixture time in range")
}

fn tenant(id: &str) -> Tenant {
    Tenant {
        id: id.to_owned(),
        display_name: format!("Tenant {id}"),
        suspended: false,
        created_at: at(0),
    }
}

fn audit(tenant: &str, action: &str, target: &str) -> AuditEvent {
    AuditEvent::new(tenant, "ak_test", action, target)
}

fn audit_at(tenant: &str, action: &str, target: &str, offset: i64) -> AuditEvent {
    let mut e = audit(tenant, action, target);
    e.at = at(offset);
    e
}

/// A permanent revocation fixture (public for the backends' own tests).
pub fn rev(tenant: &str, jti: &str) -> Revocation {
    Revocation {
        jti: jti.to_owned(),
        tenant: tenant.to_owned(),
        sub: Some("user-1".to_owned()),
        expires_at: at(3_600),
        revoked_at: at(0),
        reason: Some("logout".to_owned()),
        revoked_by: "ak_test".to_owned(),
        metadata: json!({"ticket": 42, "note": "fixture"}),
        until: None,
        status: RevocationStatus::Revoked,
    }
}

/// A suspension fixture, lifting at `until`.
pub fn suspension(tenant: &str, jti: &str, until: OffsetDateTime) -> Revocation {
    Revocation {
        until: Some(until),
        status: RevocationStatus::Suspended,
        ..rev(tenant, jti)
    }
}

/// The audit event of creating `r`.
pub fn rev_audit(r: &Revocation) -> AuditEvent {
    audit(&r.tenant, "revocation.create", &r.jti)
}

fn api_key(id: &str, tenant: Option<&str>, created: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_owned(),
        tenant: tenant.map(str::to_owned),
        name: format!("key {id}"),
        scopes: vec![Scope::TokensRevoke, Scope::AuditRead],
        key_hash: hash_of(id),
        created_at: at(created),
    }
}

/// A distinct 32-byte "hash" per name (the store treats it as opaque bytes).
fn hash_of(name: &str) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        h[i % 32] ^= b.wrapping_add(i as u8);
    }
    h[31] ^= name.len() as u8;
    h
}

fn signing_key(
    tenant: &str,
    kid: &str,
    alg: Alg,
    audience: Option<&str>,
    created: i64,
) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.to_owned(),
        tenant: tenant.to_owned(),
        alg,
        status: KeyStatus::Active,
        audience: audience.map(str::to_owned),
        created_at: at(created),
        retain_until: None,
        revoked_at: None,
        revoke_reason: None,
        encrypted_private: [b"sealed:".as_slice(), kid.as_bytes(), &[0, 255, 7]].concat(),
        public_jwk: (!alg.is_hmac()).then(|| json!({"kty": "EC", "kid": kid, "x": "abc"})),
    }
}

async fn open_with_tenants(db: &dyn TestDatabase, ids: &[&str]) -> Box<dyn Store> {
    let store = db.open().await;
    add_tenants(store.as_ref(), ids).await;
    store
}

/// Creates fixture tenants (public for the backends' own tests).
pub async fn add_tenants(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store
            .create_tenant(&tenant(id), &audit_at(id, "tenant.create", id, -10_000))
            .await
            .expect("create fixture tenant");
    }
}

async fn put_api_keys(store: &dyn Store, keys: &[&ApiKeyRecord]) {
    for k in keys {
        store
            .insert_api_key(k, &audit("acme", "api_key.create", &k.id))
            .await
            .expect("insert API key");
    }
}

fn req(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// Follows cursors to the end, checking every page's size, and returns all items in order.
async fn collect_pages<T, F, Fut>(limit: u32, mut fetch: F) -> (Vec<T>, usize)
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = veto_store::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = fetch(req(limit, cursor)).await.expect("list page");
        pages += 1;
        assert!(
            page.items.len() <= limit as usize,
            "page of {} items exceeds limit {limit}",
            page.items.len()
        );
        if page.next_cursor.is_some() {
            assert_eq!(
                page.items.len(),
                limit as usize,
                "only the last page may be short"
            );
        }
        all.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (all, pages),
        }
        assert!(pages < 100_000, "pagination does not terminate");
    }
}

async fn all_audit(store: &dyn Store, tenant: &str, action: Option<&str>) -> Vec<AuditEvent> {
    collect_pages(1000, |p| async move {
        store.list_audit(tenant, action, &p).await
    })
    .await
    .0
}

async fn count_audit(store: &dyn Store, tenant: &str, action: &str) -> usize {
    all_audit(store, tenant, Some(action)).await.len()
}

async fn cursor(store: &dyn Store) -> FeedCursor {
    store.load_state(at(0)).await.expect("load_state").cursor
}

/// The end of the feed as of now (a marker's cursor): exactly the changes written from here on
/// come after it. Not `load_state`'s cursor, after which a backend may replay changes the
/// snapshot already holds (PostgreSQL does).
async fn feed_end(store: &dyn Store) -> FeedCursor {
    marker_feed(store, FeedCursor::default()).await.1
}

/// What a change says, without where and when it was logged (backend-assigned).
type Said = (String, String, String, Option<i64>);

fn said(t: &str, kind: &str, key: &str, value: Option<i64>) -> Said {
    (t.to_owned(), kind.to_owned(), key.to_owned(), value)
}

fn what(changes: &[Change]) -> Vec<Said> {
    changes
        .iter()
        .map(|c| {
            let (kind, key, value) = c.kind.to_row();
            said(&c.tenant, kind, key, value)
        })
        .collect()
}

/// Follows the feed from `after` in pages of `limit` until a page comes back empty, checking
/// that cursors strictly increase (no repeats, the order the contract promises).
async fn follow(store: &dyn Store, mut after: FeedCursor, limit: u32) -> Vec<Change> {
    let mut all = Vec::new();
    loop {
        let page = store
            .changes_after(after, limit)
            .await
            .expect("changes_after");
        assert!(page.len() <= limit as usize, "a page exceeds its limit");
        if page.is_empty() {
            return all;
        }
        for c in &page {
            assert!(c.cursor > after, "{:?} is not after {after:?}", c.cursor);
            after = c.cursor;
        }
        all.extend(page);
    }
}

static MARKERS: AtomicU64 = AtomicU64::new(0);

/// Writes a marker (a new tenant, `zz-marker-N`) and follows the feed from `after` until it
/// arrives; returns the changes before it and the marker's cursor.
///
/// Why a marker: a backend may hold back changes that are committed but not yet final
/// (PostgreSQL, while an older transaction anywhere on the server is still open), so an empty
/// read right after a write proves nothing. The marker is written after everything under test;
/// once it is in the feed, everything committed before it is too, in order, and anything that
/// is not there was never logged. This makes "no change was logged" checkable as well.
/// The wait is bounded (a feed that never delivers is a failure), but nothing about time is
/// asserted.
async fn marker_feed(store: &dyn Store, after: FeedCursor) -> (Vec<Change>, FeedCursor) {
    let id = format!("zz-marker-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
    store
        .create_tenant(&tenant(&id), &audit(&id, "tenant.create", &id))
        .await
        .expect("marker tenant");
    let mut got: Vec<Change> = Vec::new();
    for _ in 0..3_000 {
        let from = got.last().map_or(after, |c| c.cursor);
        got.extend(follow(store, from, 100).await);
        if let Some(i) = got
            .iter()
            .position(|c| c.tenant == id && c.kind == ChangeKind::TenantCreated)
        {
            assert_eq!(i + 1, got.len(), "nothing is logged after the marker");
            let marker = got[i].cursor;
            got.truncate(i);
            return (got, marker);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the change feed never delivered the marker {id}");
}

/// The changes after `after` up to a marker written now (see `marker_feed`).
async fn changes_before_marker(store: &dyn Store, after: FeedCursor) -> Vec<Change> {
    marker_feed(store, after).await.0
}

async fn assert_no_change_since(store: &dyn Store, before: FeedCursor, what_happened: &str) {
    let logged = changes_before_marker(store, before).await;
    assert!(logged.is_empty(), "{what_happened} logged {logged:?}");
}

/// Purge counts without the change-log trim, which depends on how far the wall clock (when the
/// change rows were written) is from the fixed fixture times.
fn without_changes(c: PurgeCounts) -> PurgeCounts {
    PurgeCounts { changes: 0, ..c }
}

async fn jtis_in_state(
    store: &dyn Store,
    now: OffsetDateTime,
) -> BTreeMap<(String, String), Option<i64>> {
    store
        .load_state(now)
        .await
        .expect("load_state")
        .revocations
        .into_iter()
        .map(|r| ((r.tenant, r.jti), r.until))
        .collect()
}

fn key_of(t: &str, j: &str) -> (String, String) {
    (t.to_owned(), j.to_owned())
}

// ---- cases ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_idempotent_and_ping_answers() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    store.ping().await.expect("ping");
    assert_eq!(
        store.get_tenant("acme").await.expect("get"),
        Some(tenant("acme")),
        "migrating again must keep the data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_roundtrip() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = db.open().await;
    assert_eq!(store.get_tenant("acme").await.expect("get"), None);
    let mut t = tenant("acme");
    t.display_name = "Acme, Inc. — ünïcode".to_owned();
    let create = audit("acme", "tenant.create", "acme");
    store.create_tenant(&t, &create).await.expect("create");
    assert_eq!(
        store.get_tenant("acme").await.expect("get"),
        Some(t.clone())
    );
    assert_eq!(store.get_tenant("acm").await.expect("get"), None);
    assert_eq!(store.get_tenant("ACME").await.expect("get"), None);
    let trail = all_audit(store.as_ref(), "acme", None).await;
    let mut expected = create.clone();
    expected.at = create.at.replace_nanosecond(0).expect("whole seconds");
    assert_eq!(
        trail,
        vec![expected],
        "creation writes exactly its audit event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_duplicate_is_conflict() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let before = feed_end(store.as_ref()).await;
    let mut again = tenant("acme");
    again.display_name = "Impostor".to_owned();
    again.suspended = true;
    let err = store
        .create_tenant(&again, &audit("acme", "tenant.create", "acme"))
        .await
        .expect_err("duplicate id must fail");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_eq!(
        store.get_tenant("acme").await.expect("get"),
        Some(tenant("acme")),
        "the original is untouched"
    );
    assert_eq!(
        count_audit(store.as_ref(), "acme", "tenant.create").await,
        1
    );
    assert_no_change_since(store.as_ref(), before, "a failed create").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_suspend_and_resume() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let t = store
        .set_tenant_suspended("acme", true, &audit("acme", "tenant.suspend", "acme"))
        .await
        .expect("suspend")
        .value;
    assert_eq!(
        t,
        Tenant {
            suspended: true,
            ..tenant("acme")
        }
    );
    assert!(
        store
            .get_tenant("acme")
            .await
            .expect("get")
            .expect("acme")
            .suspended
    );
    assert!(
        !store
            .get_tenant("globex")
            .await
            .expect("get")
            .expect("globex")
            .suspended
    );
    let t = store
        .set_tenant_suspended("acme", false, &audit("acme", "tenant.resume", "acme"))
        .await
        .expect("resume")
        .value;
    assert_eq!(t, tenant("acme"));
    assert_eq!(
        store.get_tenant("acme").await.expect("get"),
        Some(tenant("acme"))
    );
    let err = store
        .set_tenant_suspended("nope", true, &audit("nope", "tenant.suspend", "nope"))
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
    assert_eq!(
        count_audit(store.as_ref(), "acme", "tenant.suspend").await,
        1
    );
    assert_eq!(
        count_audit(store.as_ref(), "acme", "tenant.resume").await,
        1
    );
    assert!(all_audit(store.as_ref(), "nope", None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutoff_max_wins() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let cutoff = |t: &str, sub: Option<&str>, nbf: i64, exp: i64| Cutoff {
        tenant: t.to_owned(),
        sub: sub.map(str::to_owned),
        not_before_iat: T0 + nbf,
        expires_at: at(exp),
    };
    let set = |c: Cutoff| {
        let store = &store;
        async move {
            let a = audit(&c.tenant, "cutoff", c.sub.as_deref().unwrap_or(""));
            store.set_cutoff(&c, &a).await
        }
    };
    set(cutoff("acme", None, 100, 1_000))
        .await
        .expect("tenant cutoff");
    // Older cutoff, later expiry: the cutoff stays, the expiry grows.
    set(cutoff("acme", None, 50, 2_000))
        .await
        .expect("older tenant cutoff");
    set(cutoff("acme", Some("alice"), 200, 100))
        .await
        .expect("subject");
    set(cutoff("acme", Some("alice"), 150, 300))
        .await
        .expect("older subject");
    set(cutoff("acme", Some("bob"), 10, 100))
        .await
        .expect("bob");
    set(cutoff("acme", Some("bob"), 20, 50))
        .await
        .expect("newer bob, earlier expiry");
    set(cutoff("globex", Some("alice"), 5, 100))
        .await
        .expect("other tenant");

    let state = store.load_state(at(0)).await.expect("load_state");
    let tenants: BTreeMap<String, Option<i64>> = state
        .tenants
        .iter()
        .map(|(t, c)| (t.id.clone(), *c))
        .collect();
    assert_eq!(
        tenants,
        BTreeMap::from([
            ("acme".to_owned(), Some(T0 + 100)),
            ("globex".to_owned(), None)
        ])
    );
    let mut subjects = state.subject_cutoffs.clone();
    subjects.sort_by(|a, b| (&a.tenant, &a.sub).cmp(&(&b.tenant, &b.sub)));
    assert_eq!(
        subjects,
        vec![
            cutoff("acme", Some("alice"), 200, 300),
            cutoff("acme", Some("bob"), 20, 100),
            cutoff("globex", Some("alice"), 5, 100),
        ]
    );
    // The tenant-wide expiry grew to 2,000: a purge at 1,500 keeps it.
    let (counts, _) = store
        .purge_batch(at(1_500), 100)
        .await
        .expect("purge")
        .value;
    assert_eq!(
        counts.cutoffs, 3,
        "only the three subject cutoffs had expired"
    );
    let state = store.load_state(at(0)).await.expect("load_state");
    assert!(state.subject_cutoffs.is_empty());
    assert!(
        state
            .tenants
            .iter()
            .any(|(t, c)| t.id == "acme" && *c == Some(T0 + 100))
    );

    let err = set(cutoff("nope", Some("alice"), 1, 1))
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
    assert_eq!(count_audit(store.as_ref(), "acme", "cutoff").await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_find_list_delete() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let a1 = api_key("ak_a1", Some("acme"), 1);
    let a2 = ApiKeyRecord {
        scopes: Scope::ALL.to_vec(),
        ..api_key("ak_a2", Some("acme"), 2)
    };
    let g1 = api_key("ak_g1", Some("globex"), 3);
    let admin = ApiKeyRecord {
        scopes: Scope::ALL.to_vec(),
        ..api_key("ak_admin", None, 4)
    };
    assert!(!store.has_admin_key().await.expect("has_admin_key"));
    for k in [&a1, &a2, &g1] {
        let t = k.tenant.clone().unwrap_or_default();
        store
            .insert_api_key(k, &audit(&t, "api_key.create", &k.id))
            .await
            .expect("insert");
    }
    assert!(!store.has_admin_key().await.expect("has_admin_key"));
    store
        .insert_api_key(&admin, &audit("default", "api_key.create", &admin.id))
        .await
        .expect("admin");
    assert!(store.has_admin_key().await.expect("has_admin_key"));

    for k in [&a1, &a2, &g1, &admin] {
        assert_eq!(
            store.find_api_key_by_hash(&k.key_hash).await.expect("find"),
            Some(k.clone())
        );
    }
    assert_eq!(
        store.find_api_key_by_hash(&[0u8; 32]).await.expect("find"),
        None
    );

    let acme = store
        .list_api_keys("acme", &req(100, None))
        .await
        .expect("list");
    assert_eq!(
        acme.items,
        vec![a2.clone(), a1.clone()],
        "newest first, own keys only"
    );
    assert_eq!(acme.next_cursor, None);
    let globex = store
        .list_api_keys("globex", &req(100, None))
        .await
        .expect("list");
    assert_eq!(globex.items, vec![g1.clone()]);

    // Same secret hash again (under another id) is refused.
    let dup = ApiKeyRecord {
        id: "ak_other".into(),
        ..a1.clone()
    };
    let err = store
        .insert_api_key(&dup, &audit("acme", "api_key.create", "ak_other"))
        .await
        .expect_err("duplicate hash");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    let err = store
        .insert_api_key(
            &api_key("ak_n", Some("nope"), 1),
            &audit("nope", "api_key.create", "ak_n"),
        )
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");

    // Another tenant's key, or the admin key, cannot be deleted through acme.
    for id in [&g1.id, &admin.id, &"ak_missing".to_owned()] {
        let err = store
            .delete_api_key("acme", id, &audit("acme", "api_key.delete", id))
            .await
            .expect_err("not acme's key");
        assert!(matches!(err, StoreError::NotFound(_)), "{id}: got {err:?}");
    }
    assert_eq!(
        store
            .find_api_key_by_hash(&g1.key_hash)
            .await
            .expect("find"),
        Some(g1.clone())
    );
    store
        .delete_api_key("acme", &a1.id, &audit("acme", "api_key.delete", &a1.id))
        .await
        .expect("delete own key");
    assert_eq!(
        store
            .find_api_key_by_hash(&a1.key_hash)
            .await
            .expect("find"),
        None
    );
    let acme = store
        .list_api_keys("acme", &req(100, None))
        .await
        .expect("list");
    assert_eq!(acme.items, vec![a2.clone()]);
    let err = store
        .delete_api_key("acme", &a1.id, &audit("acme", "api_key.delete", &a1.id))
        .await
        .expect_err("already deleted");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
    assert_eq!(
        count_audit(store.as_ref(), "acme", "api_key.create").await,
        2
    );
    assert_eq!(
        count_audit(store.as_ref(), "acme", "api_key.delete").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_pagination() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    // Ties on created_at: order falls back to id, descending.
    let keys: Vec<ApiKeyRecord> = (0..7)
        .map(|i| api_key(&format!("ak_{:02}", (i * 5) % 7), Some("acme"), i / 2))
        .collect();
    for k in &keys {
        store
            .insert_api_key(k, &audit("acme", "api_key.create", &k.id))
            .await
            .expect("insert");
    }
    let mut expected = keys.clone();
    expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let (got, pages) = collect_pages(3, |p| {
        let store = &store;
        async move { store.list_api_keys("acme", &p).await }
    })
    .await;
    assert_eq!(got, expected);
    assert_eq!(pages, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotation_and_revocation() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let e1 = signing_key("acme", "e1", Alg::ES256, None, 1);
    let e2 = signing_key("acme", "e2", Alg::ES256, Some("api"), 2);
    let r1 = signing_key("acme", "r1", Alg::RS256, None, 3);
    let h1 = signing_key("acme", "h1", Alg::HS256, None, 4);
    let g1 = signing_key("globex", "g1", Alg::ES256, None, 1);
    for k in [&e1, &e2, &r1, &h1, &g1] {
        let retired = store
            .insert_signing_key(k, None, &audit(&k.tenant, "key.create", &k.kid))
            .await
            .expect("insert")
            .value;
        assert!(retired.is_empty(), "no rotation requested");
    }
    assert_eq!(
        store.list_signing_keys("acme").await.expect("list"),
        vec![h1.clone(), r1.clone(), e2.clone(), e1.clone()],
        "newest first, every field round-trips"
    );

    // Rotating unbound ES256 retires e1 only: not the audience-bound e2, not RS256, not globex.
    let e3 = signing_key("acme", "e3", Alg::ES256, None, 5);
    let retired = store
        .insert_signing_key(&e3, Some(at(100)), &audit("acme", "key.rotate", "e3"))
        .await
        .expect("rotate")
        .value;
    let e1_retired = SigningKeyRecord {
        status: KeyStatus::Retired,
        retain_until: Some(at(100)),
        ..e1.clone()
    };
    assert_eq!(retired, vec![e1_retired.clone()]);
    // Rotating the "api" binding retires e2 only.
    let e4 = signing_key("acme", "e4", Alg::ES256, Some("api"), 6);
    let retired = store
        .insert_signing_key(&e4, Some(at(200)), &audit("acme", "key.rotate", "e4"))
        .await
        .expect("rotate api")
        .value;
    let e2_retired = SigningKeyRecord {
        status: KeyStatus::Retired,
        retain_until: Some(at(200)),
        ..e2.clone()
    };
    assert_eq!(retired, vec![e2_retired.clone()]);
    assert_eq!(
        store.list_signing_keys("acme").await.expect("list"),
        vec![
            e4.clone(),
            e3.clone(),
            h1.clone(),
            r1.clone(),
            e2_retired,
            e1_retired
        ],
    );
    assert_eq!(
        store.list_signing_keys("globex").await.expect("list"),
        vec![g1.clone()]
    );
    assert!(
        store
            .list_signing_keys("nope")
            .await
            .expect("list")
            .is_empty()
    );

    let err = store
        .insert_signing_key(&e3, None, &audit("acme", "key.create", "e3"))
        .await
        .expect_err("duplicate kid");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    let err = store
        .insert_signing_key(
            &signing_key("nope", "n1", Alg::ES256, None, 1),
            None,
            &audit("nope", "key.create", "n1"),
        )
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");

    let revoked = store
        .revoke_signing_key(
            "acme",
            "e3",
            Some("leaked"),
            &audit("acme", "key.revoke", "e3"),
        )
        .await
        .expect("revoke")
        .value;
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.revoke_reason.as_deref(), Some("leaked"));
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        SigningKeyRecord {
            status: KeyStatus::Active,
            revoked_at: None,
            revoke_reason: None,
            ..revoked.clone()
        },
        e3,
        "revoking changes status, revoked_at and reason only"
    );
    let again = store
        .revoke_signing_key(
            "acme",
            "e3",
            Some("other"),
            &audit("acme", "key.revoke", "e3"),
        )
        .await
        .expect("revoke again")
        .value;
    assert_eq!(again, revoked, "a repeat returns the record unchanged");
    assert_eq!(count_audit(store.as_ref(), "acme", "key.revoke").await, 1);
    for (t, kid) in [("acme", "missing"), ("acme", "g1"), ("nope", "e1")] {
        let err = store
            .revoke_signing_key(t, kid, None, &audit(t, "key.revoke", kid))
            .await
            .expect_err("unknown key");
        assert!(
            matches!(err, StoreError::NotFound(_)),
            "{t}/{kid}: got {err:?}"
        );
    }
    assert_eq!(
        store.list_signing_keys("globex").await.expect("list"),
        vec![g1],
        "globex's key is untouched"
    );
    let listed = store.list_signing_keys("acme").await.expect("list");
    assert_eq!(listed[1], revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_insert_is_idempotent() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let first = rev("acme", "jti-1");
    let out = store
        .insert_revocation(&first, &rev_audit(&first))
        .await
        .expect("insert")
        .value;
    assert!(out.created);
    assert_eq!(out.record, first);
    assert_eq!(
        store.get_revocation("acme", "jti-1").await.expect("get"),
        Some(first.clone())
    );
    let pos = feed_end(store.as_ref()).await;

    let mut repeat = suspension("acme", "jti-1", at(60));
    repeat.sub = Some("someone-else".into());
    repeat.reason = Some("compromised".into());
    repeat.revoked_at = at(30);
    repeat.metadata = json!({"other": true});
    let out = store
        .insert_revocation(&repeat, &rev_audit(&repeat))
        .await
        .expect("repeat")
        .value;
    assert!(!out.created);
    assert_eq!(
        out.record, first,
        "a repeat returns the original, unchanged"
    );
    assert_eq!(
        store.get_revocation("acme", "jti-1").await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.create").await,
        1
    );
    assert_no_change_since(store.as_ref(), pos, "a repeat").await;

    // Same jti in another tenant is another revocation.
    let other = rev("globex", "jti-1");
    let out = store
        .insert_revocation(&other, &rev_audit(&other))
        .await
        .expect("other tenant")
        .value;
    assert!(out.created);

    // Optional fields empty, sub-second times: the returned record is what reads return.
    let mut sparse = rev("acme", "jti-2");
    sparse.sub = None;
    sparse.reason = None;
    sparse.metadata = json!({});
    sparse.revoked_at = at(5) + time::Duration::milliseconds(700);
    sparse.until = Some(at(90) + time::Duration::milliseconds(1));
    sparse.status = RevocationStatus::Suspended;
    let out = store
        .insert_revocation(&sparse, &rev_audit(&sparse))
        .await
        .expect("sparse")
        .value;
    assert!(out.created);
    let read = store
        .get_revocation("acme", "jti-2")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(out.record, read, "returned record equals the stored one");
    assert_eq!(read.revoked_at, at(5), "whole seconds");
    assert_eq!(read.until, Some(at(90)));
    assert_eq!(read.status, RevocationStatus::Suspended);
    assert_eq!((read.sub, read.reason), (None, None));
    assert_eq!(read.metadata, json!({}));
    assert_eq!(
        store.get_revocation("acme", "jti-3").await.expect("get"),
        None
    );
    assert_eq!(
        store.get_revocation("nope", "jti-1").await.expect("get"),
        None
    );
}

/// Revokes concurrently: `jtis` each by `per_jti` callers at once, plus `unknown` callers that
/// name a tenant that does not exist. Checks every caller's answer and returns nothing.
async fn revoke_concurrently(
    store: &std::sync::Arc<dyn Store>,
    prefix: &str,
    jtis: usize,
    per_jti: usize,
    unknown: usize,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..per_jti {
        for i in 0..jtis {
            let store = store.clone();
            let jti = format!("{prefix}{i:02}");
            tasks.spawn(async move {
                let mut r = rev("acme", &jti);
                r.reason = Some(format!("round {round}"));
                let out = store.insert_revocation(&r, &rev_audit(&r)).await;
                (r.jti, out)
            });
        }
        if round < unknown {
            let store = store.clone();
            let jti = format!("unknown-{prefix}{round}");
            tasks.spawn(async move {
                let r = rev("nope", &jti);
                let out = store.insert_revocation(&r, &rev_audit(&r)).await;
                (r.jti, out)
            });
        }
    }
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut records: BTreeMap<String, Vec<Revocation>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (jti, out) = joined.expect("task");
        if jti.starts_with("unknown-") {
            assert!(
                matches!(out, Err(StoreError::NotFound(_))),
                "{jti}: {out:?}"
            );
            continue;
        }
        let Written {
            value: out,
            changes,
        } = out.expect("insert");
        // Each caller gets back the change of its own revocation, and only a creator does.
        let mine: Vec<_> = changes.iter().map(|c| c.kind.clone()).collect();
        let expected = if out.created {
            vec![ChangeKind::Revoked {
                jti: jti.clone(),
                until: None,
            }]
        } else {
            vec![]
        };
        assert_eq!(mine, expected, "{jti}");
        *created.entry(jti.clone()).or_default() += usize::from(out.created);
        records.entry(jti).or_default().push(out.record);
    }
    assert_eq!(created.len(), jtis);
    assert!(
        created.values().all(|n| *n == 1),
        "exactly one creator per jti: {created:?}"
    );
    for (jti, recs) in &records {
        let stored = store
            .get_revocation("acme", jti)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(recs.len(), per_jti);
        assert!(
            recs.iter().all(|r| *r == stored),
            "{jti}: every caller sees the stored record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_each_get_their_own_outcome() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store: std::sync::Arc<dyn Store> = open_with_tenants(db, &["acme"]).await.into();
    // Many callers at once, repeats among them: a backend may commit them together, but each
    // caller gets its own answer: one `created`, the others the stored original.
    revoke_concurrently(&store, "a", 40, 3, 0).await;
    // The same with callers naming an unknown tenant in the crowd: they fail alone.
    revoke_concurrently(&store, "b", 40, 3, 3).await;
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.create").await,
        80
    );
    assert!(all_audit(store.as_ref(), "nope", None).await.is_empty());
    assert_eq!(jtis_in_state(store.as_ref(), at(0)).await.len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_for_unknown_tenant_is_not_found() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let pos = feed_end(store.as_ref()).await;
    let r = rev("nope", "jti-1");
    let err = store
        .insert_revocation(&r, &rev_audit(&r))
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
    assert_eq!(
        store.get_revocation("nope", "jti-1").await.expect("get"),
        None
    );
    assert!(all_audit(store.as_ref(), "nope", None).await.is_empty());
    assert_no_change_since(store.as_ref(), pos, "a refused revocation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_batch_counts_and_leaves_existing_alone() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let a = rev("acme", "a");
    store
        .insert_revocation(&a, &rev_audit(&a))
        .await
        .expect("a");
    let changed_a = Revocation {
        reason: Some("changed".into()),
        ..a.clone()
    };
    let b = rev("acme", "b");
    let c = suspension("acme", "c", at(500));
    let b_again = Revocation {
        reason: Some("second b".into()),
        ..b.clone()
    };
    let d = rev("acme", "d");
    let batch: Vec<(Revocation, AuditEvent)> = [&changed_a, &b, &c, &b_again, &d]
        .into_iter()
        .map(|r| (r.clone(), rev_audit(r)))
        .collect();
    let (created, existing, records) = store.insert_revocations(&batch).await.expect("batch").value;
    assert_eq!((created, existing), (3, 2));
    assert_eq!(
        records,
        vec![b.clone(), c.clone(), d.clone()],
        "first occurrence wins"
    );
    assert_eq!(
        store.get_revocation("acme", "a").await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(
        store.get_revocation("acme", "b").await.expect("get"),
        Some(b.clone())
    );
    assert_eq!(
        store.get_revocation("acme", "c").await.expect("get"),
        Some(c.clone())
    );
    let trail = all_audit(store.as_ref(), "acme", Some("revocation.create")).await;
    let ids: HashSet<&str> = trail.iter().map(|e| e.id.as_str()).collect();
    let expected: HashSet<&str> = [&batch[1].1, &batch[2].1, &batch[4].1]
        .into_iter()
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(trail.len(), 4, "one for `a`, one per created record");
    assert!(
        expected.is_subset(&ids),
        "the created records' own events are written"
    );

    let (created, existing, records) = store
        .insert_revocations(&[])
        .await
        .expect("empty batch")
        .value;
    assert_eq!((created, existing, records), (0, 0, vec![]));
    let (created, existing, records) = store
        .insert_revocations(&batch)
        .await
        .expect("replay")
        .value;
    assert_eq!((created, existing, records), (0, 5, vec![]));
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.create").await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_batch_is_all_or_nothing() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let pos = feed_end(store.as_ref()).await;
    // The failing item comes first, in the middle, or last after thousands of good ones (a
    // backend that writes in chunks must not commit the chunks before the failing one).
    for bad_at in [0, 1, 2_999] {
        let mut batch: Vec<(Revocation, AuditEvent)> = (0..3_000)
            .map(|i| {
                let r = rev("acme", &format!("x{i}"));
                let a = rev_audit(&r);
                (r, a)
            })
            .collect();
        let bad = rev("nope", "y");
        batch[bad_at] = (bad.clone(), rev_audit(&bad));
        let err = store
            .insert_revocations(&batch)
            .await
            .expect_err("an item of an unknown tenant fails the batch");
        assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
        for jti in ["x0", "x2", "x1500", "x2998"] {
            assert_eq!(
                store.get_revocation("acme", jti).await.expect("get"),
                None,
                "bad item at {bad_at}: {jti} must not be written"
            );
        }
    }
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.create").await,
        0
    );
    assert_no_change_since(store.as_ref(), pos, "a failed batch").await;
    assert!(jtis_in_state(store.as_ref(), at(0)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_batch_of_ten_thousand() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    // Pre-existing rows on both sides of likely chunk boundaries (250, 500, 1000), and a jti
    // repeated far apart in the batch.
    let pre = [
        "bulk-00249",
        "bulk-00250",
        "bulk-00499",
        "bulk-00500",
        "bulk-00999",
        "bulk-01000",
    ];
    for jti in pre {
        let r = rev("acme", jti);
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("pre");
    }
    let mut batch: Vec<(Revocation, AuditEvent)> = (0..9_999)
        .map(|i| {
            let mut r = rev("acme", &format!("bulk-{i:05}"));
            r.revoked_at = at(i64::from(i % 17));
            r.reason = Some("bulk".into());
            let a = rev_audit(&r);
            (r, a)
        })
        .collect();
    let dup = Revocation {
        reason: Some("dup".into()),
        ..batch[7].0.clone()
    };
    batch.push((dup.clone(), rev_audit(&dup)));
    assert_eq!(batch.len(), 10_000);
    let (created, existing, records) = store.insert_revocations(&batch).await.expect("batch").value;
    assert_eq!((created, existing), (9_993, 7));
    assert_eq!(records.len(), 9_993);
    let created_jtis: BTreeSet<&str> = records.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(created_jtis.len(), 9_993, "no record reported twice");
    for jti in pre {
        assert!(!created_jtis.contains(jti), "{jti} existed");
    }
    assert_eq!(
        store
            .get_revocation("acme", "bulk-00007")
            .await
            .expect("get")
            .and_then(|r| r.reason),
        Some("bulk".into()),
        "the first occurrence is the stored one"
    );
    assert_eq!(
        store
            .get_revocation("acme", "bulk-09998")
            .await
            .expect("get"),
        Some(batch[9_998].0.clone())
    );
    let stats = store.revocation_stats("acme", at(0)).await.expect("stats");
    assert_eq!(stats.revoked, 9_999);
    assert_eq!(stats.by_reason.get("bulk"), Some(&9_993));
    assert_eq!(stats.by_reason.get("logout"), Some(&6));
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.create").await,
        9_999
    );
    assert_eq!(jtis_in_state(store.as_ref(), at(0)).await.len(), 9_999);
}

/// 23 revocations in acme with ties on `revoked_at` and jtis out of insertion order, 2 in globex.
async fn listing_fixture(store: &dyn Store) -> Vec<Revocation> {
    let reasons = [Some("logout"), Some("compromised"), None];
    let mut acme = Vec::new();
    for i in 0..23i64 {
        let mut r = rev("acme", &format!("j{:02}", (i * 7) % 23));
        r.revoked_at = at(i / 3);
        r.sub = Some(if i % 2 == 0 { "alice" } else { "bob" }.into());
        r.reason = reasons[(i % 3) as usize].map(str::to_owned);
        r.revoked_by = if i % 4 == 0 { "ak_2" } else { "ak_1" }.into();
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("insert");
        acme.push(r);
    }
    for jti in ["g1", "g2"] {
        let r = rev("globex", jti);
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("insert");
    }
    acme.sort_by(|a, b| (b.revoked_at, &b.jti).cmp(&(a.revoked_at, &a.jti)));
    acme
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_list_filters_and_pagination() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let expected = listing_fixture(store.as_ref()).await;
    let list = |filter: RevocationFilter, limit: u32| {
        let store = &store;
        async move {
            collect_pages(limit, |p| {
                let filter = filter.clone();
                async move { store.list_revocations("acme", &filter, &p).await }
            })
            .await
        }
    };
    let (all, pages) = list(RevocationFilter::default(), 5).await;
    assert_eq!(
        all, expected,
        "newest first, ties by jti descending, no gaps or duplicates"
    );
    assert_eq!(pages, 5);
    let (all, pages) = list(RevocationFilter::default(), 23).await;
    assert_eq!(
        (all.len(), pages),
        (23, 1),
        "an exact fit needs no second page"
    );
    let (all, pages) = list(RevocationFilter::default(), 1000).await;
    assert_eq!((all, pages), (expected.clone(), 1));

    let filters = [
        RevocationFilter {
            sub: Some("alice".into()),
            ..Default::default()
        },
        RevocationFilter {
            reason: Some("compromised".into()),
            ..Default::default()
        },
        RevocationFilter {
            revoked_by: Some("ak_2".into()),
            ..Default::default()
        },
        RevocationFilter {
            sub: Some("bob".into()),
            reason: Some("logout".into()),
            revoked_by: Some("ak_1".into()),
        },
        RevocationFilter {
            sub: Some("carol".into()),
            ..Default::default()
        },
    ];
    for f in filters {
        let want: Vec<Revocation> = expected
            .iter()
            .filter(|r| f.sub.is_none() || r.sub == f.sub)
            .filter(|r| f.reason.is_none() || r.reason == f.reason)
            .filter(|r| f.revoked_by.is_none() || Some(&r.revoked_by) == f.revoked_by.as_ref())
            .cloned()
            .collect();
        let (got, _) = list(f.clone(), 2).await;
        assert_eq!(got, want, "filter {f:?}");
    }
    assert!(
        expected
            .iter()
            .filter(|r| r.sub.as_deref() == Some("alice"))
            .count()
            > 2,
        "the fixture exercises filtered pagination"
    );

    let globex = store
        .list_revocations("globex", &RevocationFilter::default(), &req(100, None))
        .await
        .expect("list");
    let jtis: Vec<&str> = globex.items.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, ["g2", "g1"]);
    assert_eq!(
        store.get_revocation("globex", "j00").await.expect("get"),
        None
    );
    assert_eq!(
        store
            .get_revocation("acme", "j00")
            .await
            .expect("get")
            .as_ref(),
        expected.iter().find(|r| r.jti == "j00")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cursors_are_bad_cursor() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    for bad in ["", "not base64!", "bm9jb2xvbg", "MTIzOg", "%%%", "eA=="] {
        let p = req(10, Some(bad.to_owned()));
        let r = store
            .list_revocations("acme", &RevocationFilter::default(), &p)
            .await;
        assert!(
            matches!(r, Err(StoreError::BadCursor)),
            "revocations {bad:?}: {r:?}"
        );
        let r = store.list_audit("acme", None, &p).await;
        assert!(
            matches!(r, Err(StoreError::BadCursor)),
            "audit {bad:?}: {r:?}"
        );
        let r = store.list_api_keys("acme", &p).await;
        assert!(
            matches!(r, Err(StoreError::BadCursor)),
            "api keys {bad:?}: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_stats_counts() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let now = at(100_000);
    let recent = at(100_000 - 3_600);
    let old = at(100_000 - 2 * 86_400);
    let rows = [
        (rev("acme", "p1"), Some("logout"), recent, None),
        (rev("acme", "p2"), Some("logout"), old, None),
        (rev("acme", "p3"), None, recent, None),
        (
            rev("acme", "s1"),
            Some("investigation"),
            recent,
            Some(at(200_000)),
        ),
        (
            rev("acme", "s2"),
            Some("investigation"),
            old,
            Some(at(100_001)),
        ),
        // Lapsed: its until has passed. Not "suspended", but still a row with a reason.
        (
            rev("acme", "s3"),
            Some("investigation"),
            old,
            Some(at(99_999)),
        ),
        (rev("globex", "g1"), Some("logout"), recent, None),
    ];
    for (mut r, reason, revoked_at, until) in rows {
        r.reason = reason.map(str::to_owned);
        r.revoked_at = revoked_at;
        r.until = until;
        r.status = RevocationStatus::of(until);
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("insert");
    }
    let stats = store.revocation_stats("acme", now).await.expect("stats");
    assert_eq!(stats.revoked, 3);
    assert_eq!(stats.suspended, 2);
    assert_eq!(stats.last_24h, 3);
    assert_eq!(
        stats.by_reason,
        BTreeMap::from([
            ("investigation".to_owned(), 3),
            ("logout".to_owned(), 2),
            ("unspecified".to_owned(), 1),
        ])
    );
    // s1 still holds; the "recent" rows are now more than a day old.
    let later = store
        .revocation_stats("acme", at(190_000))
        .await
        .expect("stats");
    assert_eq!((later.suspended, later.last_24h), (1, 0));
    let empty = store.revocation_stats("nope", now).await.expect("stats");
    assert_eq!(empty, Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_revocation_supersedes_a_suspension() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    for jti in ["single", "batched"] {
        let s = suspension("acme", jti, at(500));
        store
            .insert_revocation(&s, &rev_audit(&s))
            .await
            .expect("suspend");
    }
    let permanent = |jti: &str| Revocation {
        revoked_at: at(100),
        reason: Some("compromised".into()),
        expires_at: at(7_200),
        ..rev("acme", jti)
    };
    let pos = feed_end(store.as_ref()).await;
    // Single.
    let p = permanent("single");
    let out = store
        .insert_revocation(&p, &rev_audit(&p))
        .await
        .expect("revoke");
    assert!(out.value.made_permanent && !out.value.created);
    assert_eq!(
        out.value.record, p,
        "the record takes the permanent revocation's fields"
    );
    assert_eq!(out.changes.len(), 1);
    assert_eq!(
        store.get_revocation("acme", "single").await.expect("get"),
        Some(p.clone())
    );
    // A repeat of it, and a suspension after it, change nothing.
    let again = store
        .insert_revocation(&p, &rev_audit(&p))
        .await
        .expect("again");
    assert!(!again.value.made_permanent && again.changes.is_empty());
    let late = suspension("acme", "single", at(900));
    let out = store
        .insert_revocation(&late, &rev_audit(&late))
        .await
        .expect("late");
    assert_eq!((out.value.record.until, out.changes.len()), (None, 0));
    // Batch: a new jti, the suspended one, and the already permanent one.
    let batch: Vec<_> = [permanent("fresh"), permanent("batched"), p.clone()]
        .into_iter()
        .map(|r| {
            let a = rev_audit(&r);
            (r, a)
        })
        .collect();
    let out = store.insert_revocations(&batch).await.expect("batch");
    let (created, existing, written) = out.value;
    assert_eq!((created, existing), (1, 2));
    let jtis: Vec<_> = written.iter().map(|r| r.jti.as_str()).collect();
    assert_eq!(jtis, ["fresh", "batched"]);
    assert_eq!(
        store
            .get_revocation("acme", "batched")
            .await
            .expect("get")
            .map(|r| r.until),
        Some(None)
    );
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.make_permanent").await,
        2
    );
    assert_eq!(
        what(&changes_before_marker(store.as_ref(), pos).await),
        vec![
            said("acme", change::names::REVOCATION, "single", None),
            said("acme", change::names::REVOCATION, "fresh", None),
            said("acme", change::names::REVOCATION, "batched", None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lift_suspension_outcomes() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let s = suspension("acme", "s1", at(500));
    let p = rev("acme", "p1");
    for r in [&s, &p] {
        store
            .insert_revocation(r, &rev_audit(r))
            .await
            .expect("insert");
    }
    let lift = |t: &str, jti: &str| audit(t, "revocation.lift", jti);

    let pos = feed_end(store.as_ref()).await;
    let out = store
        .lift_suspension("acme", "p1", &lift("acme", "p1"))
        .await
        .expect("lift permanent")
        .value;
    assert_eq!(out, LiftOutcome::Permanent(p.clone()));
    assert_eq!(
        store.get_revocation("acme", "p1").await.expect("get"),
        Some(p.clone())
    );
    for (t, jti) in [("acme", "missing"), ("globex", "s1"), ("nope", "s1")] {
        let out = store
            .lift_suspension(t, jti, &lift(t, jti))
            .await
            .expect("lift")
            .value;
        assert_eq!(out, LiftOutcome::NotFound, "{t}/{jti}");
    }
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.lift").await,
        0
    );
    assert_no_change_since(store.as_ref(), pos, "refused lifts").await;
    let pos = feed_end(store.as_ref()).await;

    let out = store
        .lift_suspension("acme", "s1", &lift("acme", "s1"))
        .await
        .expect("lift")
        .value;
    assert_eq!(out, LiftOutcome::Lifted(s.clone()));
    assert_eq!(store.get_revocation("acme", "s1").await.expect("get"), None);
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.lift").await,
        1
    );
    assert_eq!(
        what(&changes_before_marker(store.as_ref(), pos).await),
        vec![said("acme", change::names::REVOCATION_LIFT, "s1", None)]
    );
    let out = store
        .lift_suspension("acme", "s1", &lift("acme", "s1"))
        .await
        .expect("lift again")
        .value;
    assert_eq!(out, LiftOutcome::NotFound);
    assert!(
        !jtis_in_state(store.as_ref(), at(0))
            .await
            .contains_key(&key_of("acme", "s1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_list_filter_and_pagination() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let mut expected = all_audit(store.as_ref(), "acme", None).await;
    assert_eq!(expected.len(), 1, "the tenant's creation");
    for i in 0..14i64 {
        let r = rev("acme", &format!("r{i:02}"));
        let action = if i % 3 == 0 {
            "revocation.suspend"
        } else {
            "revocation.create"
        };
        // Ties on `at` (two per second), and ids not in time order.
        let mut e = audit_at("acme", action, &r.jti, 100 - i / 2);
        e.metadata = json!({"i": i});
        if i == 5 {
            e.reason = Some("because".into());
        }
        store.insert_revocation(&r, &e).await.expect("insert");
        expected.push(e);
    }
    let g = rev("globex", "g");
    store
        .insert_revocation(&g, &audit_at("globex", "revocation.create", "g", 1_000))
        .await
        .expect("globex");
    expected.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));

    let (got, pages) = collect_pages(4, |p| {
        let store = &store;
        async move { store.list_audit("acme", None, &p).await }
    })
    .await;
    assert_eq!(
        got, expected,
        "newest first, every field round-trips, other tenants absent"
    );
    assert_eq!(pages, 4);
    let want: Vec<AuditEvent> = expected
        .iter()
        .filter(|e| e.action == "revocation.suspend")
        .cloned()
        .collect();
    assert_eq!(want.len(), 5);
    let (got, pages) = collect_pages(2, |p| {
        let store = &store;
        async move {
            store
                .list_audit("acme", Some("revocation.suspend"), &p)
                .await
        }
    })
    .await;
    assert_eq!((got, pages), (want, 3));
    assert!(
        all_audit(store.as_ref(), "acme", Some("nothing.like.this"))
            .await
            .is_empty()
    );
    assert_eq!(all_audit(store.as_ref(), "globex", None).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_revocations_in_bounded_batches() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let before = at(100);
    let mut purgeable = BTreeSet::new();
    let mut kept = BTreeSet::new();
    let mut put = |r: Revocation, gone: bool| {
        if gone {
            purgeable.insert(key_of(&r.tenant, &r.jti));
        } else {
            kept.insert(key_of(&r.tenant, &r.jti));
        }
        r
    };
    let mut rows = Vec::new();
    for i in 0..6 {
        let mut r = rev(
            if i % 2 == 0 { "acme" } else { "globex" },
            &format!("old{i}"),
        );
        r.expires_at = at(10 + i);
        rows.push(put(r, true));
    }
    for i in 0..3 {
        let mut r = rev("acme", &format!("live{i}"));
        r.expires_at = at(1_000);
        rows.push(put(r, false));
    }
    let mut edge = rev("acme", "edge");
    edge.expires_at = before; // strictly-before only
    rows.push(put(edge, false));
    let mut lapsed = suspension("acme", "lapsed", at(50));
    lapsed.expires_at = at(1_000);
    rows.push(put(lapsed, true));
    let mut lapsed2 = suspension("globex", "lapsed2", at(99));
    lapsed2.expires_at = at(1_000);
    rows.push(put(lapsed2, true));
    let mut holding = suspension("acme", "holding", at(500));
    holding.expires_at = at(1_000);
    rows.push(put(holding, false));
    for r in &rows {
        store
            .insert_revocation(r, &rev_audit(r))
            .await
            .expect("insert");
    }
    assert_eq!(purgeable.len(), 8);

    let mut deleted = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let (counts, pairs) = store.purge_batch(before, 3).await.expect("purge").value;
        assert_eq!(counts.revocations, pairs.len() as u64);
        assert!(pairs.len() <= 3, "a batch of 3 deleted {}", pairs.len());
        sizes.push(pairs.len());
        if without_changes(counts) == PurgeCounts::default() {
            break;
        }
        deleted.extend(pairs);
        assert!(sizes.len() < 20, "purge does not terminate");
    }
    assert_eq!(sizes, vec![3, 3, 2, 0]);
    let deleted_set: BTreeSet<(String, String)> = deleted.iter().cloned().collect();
    assert_eq!(deleted_set.len(), deleted.len(), "no pair reported twice");
    assert_eq!(deleted_set, purgeable);
    let left: BTreeSet<(String, String)> = jtis_in_state(store.as_ref(), at(0))
        .await
        .into_keys()
        .collect();
    assert_eq!(left, kept);
    for (t, j) in &purgeable {
        assert_eq!(
            store.get_revocation(t, j).await.expect("get"),
            None,
            "{t}/{j}"
        );
    }
    // Purge touches neither the audit trail nor anything else.
    assert_eq!(
        count_audit(store.as_ref(), "acme", "revocation.create").await,
        9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_cutoffs_and_keys() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let cut = |sub: Option<&str>, exp: i64| Cutoff {
        tenant: "acme".into(),
        sub: sub.map(str::to_owned),
        not_before_iat: T0,
        expires_at: at(exp),
    };
    for c in [cut(None, 10), cut(Some("s1"), 10), cut(Some("s2"), 1_000)] {
        store
            .set_cutoff(&c, &audit("acme", "cutoff", "x"))
            .await
            .expect("cutoff");
    }
    let active = signing_key("acme", "k-active", Alg::ES256, None, 1);
    let old_retired = SigningKeyRecord {
        status: KeyStatus::Retired,
        retain_until: Some(at(50)),
        ..signing_key("acme", "k-retired-old", Alg::ES256, None, 2)
    };
    let retired = SigningKeyRecord {
        status: KeyStatus::Retired,
        retain_until: Some(at(500)),
        ..signing_key("acme", "k-retired", Alg::ES256, None, 3)
    };
    let revoked = SigningKeyRecord {
        status: KeyStatus::Revoked,
        revoked_at: Some(at(4)),
        revoke_reason: Some("leaked".into()),
        retain_until: Some(at(5)),
        ..signing_key("acme", "k-revoked", Alg::ES256, None, 4)
    };
    for k in [&active, &old_retired, &retired, &revoked] {
        store
            .insert_signing_key(k, None, &audit("acme", "key.create", &k.kid))
            .await
            .expect("key");
    }
    let (counts, pairs) = store.purge_batch(at(100), 1).await.expect("purge").value;
    assert!(pairs.is_empty());
    assert!(counts.changes <= 1);
    assert_eq!(
        without_changes(counts),
        PurgeCounts {
            revocations: 0,
            cutoffs: 1,
            signing_keys: 1,
            status_entries: 0,
            changes: 0,
        },
        "a batch of 1 deletes at most 1 per table"
    );
    let (counts, _) = store.purge_batch(at(100), 1).await.expect("purge").value;
    assert_eq!(
        without_changes(counts),
        PurgeCounts {
            revocations: 0,
            cutoffs: 1,
            signing_keys: 0,
            status_entries: 0,
            changes: 0,
        }
    );
    let (counts, _) = store.purge_batch(at(100), 1).await.expect("purge").value;
    assert_eq!(without_changes(counts), PurgeCounts::default());
    assert_eq!(
        store.list_signing_keys("acme").await.expect("list"),
        vec![revoked, retired, active],
        "active keys, retired keys still retained and revoked keys stay"
    );
    let state = store.load_state(at(0)).await.expect("state");
    assert_eq!(state.subject_cutoffs, vec![cut(Some("s2"), 1_000)]);
    assert_eq!(state.tenants.len(), 1);
    assert_eq!(
        state.tenants[0].1, None,
        "the expired tenant-wide cutoff is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_state_reflects_everything() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let empty = store.load_state(at(0)).await.expect("state");
    assert!(empty.revocations.is_empty() && empty.signing_keys.is_empty());
    assert!(empty.api_keys.is_empty() && empty.subject_cutoffs.is_empty());

    store
        .set_tenant_suspended("globex", true, &audit("globex", "tenant.suspend", "globex"))
        .await
        .expect("suspend");
    let tenant_cut = Cutoff {
        tenant: "acme".into(),
        sub: None,
        not_before_iat: T0 + 7,
        expires_at: at(10_000),
    };
    let subject_cut = Cutoff {
        sub: Some("alice".into()),
        not_before_iat: T0 + 9,
        ..tenant_cut.clone()
    };
    for c in [&tenant_cut, &subject_cut] {
        store
            .set_cutoff(c, &audit("acme", "cutoff", "x"))
            .await
            .expect("cutoff");
    }
    let now = at(1_000);
    let permanent = rev("acme", "perm");
    let mut expired = rev("acme", "expired-but-unpurged");
    expired.expires_at = at(10);
    let holding = suspension("acme", "holding", at(2_000));
    let lapsed = suspension("acme", "lapsed", at(999));
    let at_now = suspension("acme", "lifts-now", now);
    let other = rev("globex", "perm");
    for r in [&permanent, &expired, &holding, &lapsed, &at_now, &other] {
        store
            .insert_revocation(r, &rev_audit(r))
            .await
            .expect("insert");
    }
    let k1 = signing_key("acme", "k1", Alg::EdDSA, None, 1);
    let k2 = signing_key("globex", "k2", Alg::HS512, Some("api"), 2);
    for k in [&k1, &k2] {
        store
            .insert_signing_key(k, None, &audit(&k.tenant, "key.create", &k.kid))
            .await
            .expect("key");
    }
    let k1_revoked = store
        .revoke_signing_key(
            "acme",
            "k1",
            Some("test"),
            &audit("acme", "key.revoke", "k1"),
        )
        .await
        .expect("revoke")
        .value;
    let a1 = api_key("ak_1", Some("acme"), 1);
    let admin = api_key("ak_admin", None, 2);
    put_api_keys(store.as_ref(), &[&a1, &admin]).await;

    let state = store.load_state(now).await.expect("state");
    let tenants: BTreeMap<String, (bool, Option<i64>)> = state
        .tenants
        .iter()
        .map(|(t, c)| (t.id.clone(), (t.suspended, *c)))
        .collect();
    assert_eq!(
        tenants,
        BTreeMap::from([
            ("acme".to_owned(), (false, Some(T0 + 7))),
            ("globex".to_owned(), (true, None)),
        ])
    );
    assert_eq!(state.subject_cutoffs, vec![subject_cut]);
    let revs: BTreeMap<(String, String), Option<i64>> = state
        .revocations
        .iter()
        .map(|r| (key_of(&r.tenant, &r.jti), r.until))
        .collect();
    assert_eq!(
        revs,
        BTreeMap::from([
            (key_of("acme", "perm"), None),
            // Its `expires_at` has passed but the purge has not run: still enforced.
            (key_of("acme", "expired-but-unpurged"), None),
            (key_of("acme", "holding"), Some(T0 + 2_000)),
            (key_of("globex", "perm"), None),
        ]),
        "lapsed suspensions (until <= now) are left out"
    );
    assert_eq!(state.revocations.len(), 4, "no duplicates");
    let mut keys = state.signing_keys.clone();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(keys, vec![k1_revoked, k2]);
    let mut api = state.api_keys.clone();
    api.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(api, vec![a1, admin]);
    assert!(state.cursor > FeedCursor::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_records_every_state_write() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = db.open().await;
    let s = store.as_ref();
    // Every write hands back the changes it appended: the same ones, cursors included, that
    // the feed then shows (the writing node applies exactly these before answering).
    let mut written: Vec<Change> = Vec::new();
    written.extend(
        s.create_tenant(&tenant("acme"), &audit("acme", "tenant.create", "acme"))
            .await
            .expect("tenant")
            .changes,
    );
    let r = rev("acme", "j1");
    written.extend(
        s.insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("revoke")
            .changes,
    );
    written.extend(
        s.insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("repeat")
            .changes,
    );
    let batch: Vec<(Revocation, AuditEvent)> = ["j2", "j3"]
        .into_iter()
        .map(|j| {
            let r = suspension("acme", j, at(100));
            let a = rev_audit(&r);
            (r, a)
        })
        .collect();
    written.extend(s.insert_revocations(&batch).await.expect("batch").changes);
    written.extend(
        s.lift_suspension("acme", "j2", &audit("acme", "revocation.lift", "j2"))
            .await
            .expect("lift")
            .changes,
    );
    let c = Cutoff {
        tenant: "acme".into(),
        sub: Some("alice".into()),
        not_before_iat: T0,
        expires_at: at(100),
    };
    written.extend(
        s.set_cutoff(&c, &audit("acme", "cutoff", "alice"))
            .await
            .expect("cutoff")
            .changes,
    );
    // An older cutoff changes nothing stored, and its change carries the stored maximum.
    let older = Cutoff {
        not_before_iat: T0 - 5,
        ..c.clone()
    };
    written.extend(
        s.set_cutoff(&older, &audit("acme", "cutoff", "alice"))
            .await
            .expect("older cutoff")
            .changes,
    );
    written.extend(
        s.set_cutoff(
            &Cutoff {
                sub: None,
                not_before_iat: T0 + 1,
                ..c.clone()
            },
            &audit("acme", "cutoff", "acme"),
        )
        .await
        .expect("tenant cutoff")
        .changes,
    );
    written.extend(
        s.set_tenant_suspended("acme", true, &audit("acme", "tenant.suspend", "acme"))
            .await
            .expect("suspend")
            .changes,
    );
    written.extend(
        s.set_tenant_suspended("acme", false, &audit("acme", "tenant.resume", "acme"))
            .await
            .expect("resume")
            .changes,
    );
    let k = signing_key("acme", "k1", Alg::ES256, None, 1);
    written.extend(
        s.insert_signing_key(&k, None, &audit("acme", "key.create", "k1"))
            .await
            .expect("key")
            .changes,
    );
    let k2 = signing_key("acme", "k2", Alg::ES256, None, 2);
    written.extend(
        s.insert_signing_key(&k2, Some(at(50)), &audit("acme", "key.rotate", "k2"))
            .await
            .expect("rotate")
            .changes,
    );
    for _ in 0..2 {
        written.extend(
            s.revoke_signing_key("acme", "k2", None, &audit("acme", "key.revoke", "k2"))
                .await
                .expect("key revoke (the second is no change)")
                .changes,
        );
    }
    let keys = [
        api_key("ak_1", Some("acme"), 1),
        api_key("ak_admin", None, 2),
    ];
    for k in &keys {
        let a = audit("acme", "api_key.create", &k.id);
        written.extend(s.insert_api_key(k, &a).await.expect("api key").changes);
    }
    written.extend(
        s.delete_api_key("acme", "ak_1", &audit("acme", "api_key.delete", "ak_1"))
            .await
            .expect("api key delete")
            .changes,
    );

    let feed = changes_before_marker(s, FeedCursor::default()).await;
    assert_eq!(
        what(&feed),
        vec![
            said("acme", change::names::TENANT_CREATE, "", None),
            said("acme", change::names::REVOCATION, "j1", None),
            said("acme", change::names::REVOCATION, "j2", Some(T0 + 100)),
            said("acme", change::names::REVOCATION, "j3", Some(T0 + 100)),
            said("acme", change::names::REVOCATION_LIFT, "j2", None),
            said("acme", change::names::SUBJECT_CUTOFF, "alice", Some(T0)),
            said("acme", change::names::SUBJECT_CUTOFF, "alice", Some(T0)),
            said("acme", change::names::TENANT_CUTOFF, "", Some(T0 + 1)),
            said("acme", change::names::TENANT_SUSPEND, "", None),
            said("acme", change::names::TENANT_RESUME, "", None),
            said("acme", change::names::KEY_INSERT, "k1", None),
            said("acme", change::names::KEY_RETIRE, "k1", None),
            said("acme", change::names::KEY_INSERT, "k2", None),
            said("acme", change::names::KEY_REVOKE, "k2", None),
            said("acme", change::names::API_KEY_INSERT, "ak_1", None),
            // An admin key belongs to no tenant.
            said("", change::names::API_KEY_INSERT, "ak_admin", None),
            said("acme", change::names::API_KEY_DELETE, "ak_1", None),
        ],
        "one change per state write, in order; repeats log nothing"
    );
    assert_eq!(
        written, feed,
        "what the writes returned is what the feed holds"
    );
    // Stamped with the wall clock at write time (not a fixture time): not before this test.
    let started = veto_core::timeutil::now().unix_timestamp() - 3_600;
    assert!(feed.iter().all(|c| c.at > started), "{feed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_feed_pages_without_gaps_or_repeats() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let batch: Vec<(Revocation, AuditEvent)> = (0..250)
        .map(|i| {
            let r = rev(
                if i % 3 == 0 { "globex" } else { "acme" },
                &format!("b{i:03}"),
            );
            let a = rev_audit(&r);
            (r, a)
        })
        .collect();
    store.insert_revocations(&batch).await.expect("batch");
    for i in 0..20 {
        let r = rev("acme", &format!("s{i:02}"));
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("single");
    }
    let before = changes_before_marker(store.as_ref(), FeedCursor::default()).await;
    let expected: Vec<String> = ["", ""]
        .into_iter()
        .map(str::to_owned)
        .chain(batch.iter().map(|(r, _)| r.jti.clone()))
        .chain((0..20).map(|i| format!("s{i:02}")))
        .collect();
    assert_eq!(
        before
            .iter()
            .map(|c| c.kind.to_row().1.to_owned())
            .collect::<Vec<_>>(),
        expected
    );
    // The whole log (the marker included) is final now: every page size reads the same.
    let whole = follow(store.as_ref(), FeedCursor::default(), 1_000).await;
    assert_eq!(whole.len(), before.len() + 1);
    for limit in [1, 2, 7, 100] {
        assert_eq!(
            follow(store.as_ref(), FeedCursor::default(), limit).await,
            whole,
            "pages of {limit}"
        );
    }
    // From any cursor: exactly the changes after it.
    for i in [0, 1, 100, 250, whole.len() - 2] {
        let page = store
            .changes_after(whole[i].cursor, 5)
            .await
            .expect("changes_after");
        let end = (i + 6).min(whole.len());
        assert_eq!(page, whole[i + 1..end], "after change {i}");
    }
    assert!(
        store
            .changes_after(FeedCursor::default(), 0)
            .await
            .expect("limit 0")
            .is_empty()
    );
    let far = FeedCursor {
        xid: i64::MAX,
        position: i64::MAX,
    };
    assert!(store.changes_after(far, 10).await.expect("far").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_state_cursor_then_feed_is_everything_after() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    for j in ["a", "b"] {
        let r = rev("acme", j);
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("before");
    }
    let snapshot = store.load_state(at(0)).await.expect("state");
    assert_eq!(snapshot.revocations.len(), 2);

    let c = rev("acme", "c");
    store
        .insert_revocation(&c, &rev_audit(&c))
        .await
        .expect("after");
    let d = suspension("acme", "d", at(50));
    store
        .insert_revocation(&d, &rev_audit(&d))
        .await
        .expect("after");
    store
        .lift_suspension("acme", "d", &audit("acme", "revocation.lift", "d"))
        .await
        .expect("lift");
    store
        .insert_api_key(
            &api_key("ak_1", Some("acme"), 1),
            &audit("acme", "api_key.create", "ak_1"),
        )
        .await
        .expect("api key");
    let written_after = [
        said("acme", change::names::REVOCATION, "c", None),
        said("acme", change::names::REVOCATION, "d", Some(T0 + 50)),
        said("acme", change::names::REVOCATION_LIFT, "d", None),
        said("acme", change::names::API_KEY_INSERT, "ak_1", None),
    ];
    let written_before: HashSet<Said> = [
        said("acme", change::names::TENANT_CREATE, "", None),
        said("acme", change::names::REVOCATION, "a", None),
        said("acme", change::names::REVOCATION, "b", None),
    ]
    .into_iter()
    .collect();

    let feed = what(&changes_before_marker(store.as_ref(), snapshot.cursor).await);
    // A backend may replay a few changes the snapshot already holds (PostgreSQL: those of
    // transactions still open when the snapshot began), never skip one written after it.
    let replayed = feed
        .len()
        .checked_sub(written_after.len())
        .unwrap_or_else(|| {
            panic!("changes written after the snapshot are missing: {feed:?}");
        });
    assert_eq!(feed[replayed..], written_after[..]);
    assert!(
        feed[..replayed].iter().all(|c| written_before.contains(c)),
        "only changes already in the snapshot may be replayed: {feed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_appends_purge_changes() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let mut rows = Vec::new();
    for (t, j, exp) in [
        ("acme", "old1", 10),
        ("globex", "old2", 20),
        ("acme", "live", 1_000),
    ] {
        let mut r = rev(t, j);
        r.expires_at = at(exp);
        rows.push(r);
    }
    let mut lapsed = suspension("acme", "lapsed", at(50));
    lapsed.expires_at = at(1_000);
    rows.push(lapsed);
    for r in &rows {
        store
            .insert_revocation(r, &rev_audit(r))
            .await
            .expect("insert");
    }
    let (_, seen) = marker_feed(store.as_ref(), FeedCursor::default()).await;

    let (counts, mut pairs) = store.purge_batch(at(100), 10).await.expect("purge").value;
    assert_eq!(counts.revocations, 3);
    pairs.sort();
    let mut purged: Vec<Said> = what(&changes_before_marker(store.as_ref(), seen).await);
    purged.sort();
    assert_eq!(
        purged,
        pairs
            .iter()
            .map(|(t, j)| said(t, change::names::REVOCATION_PURGE, j, None))
            .collect::<Vec<_>>(),
        "one revocation.purge change per deleted revocation, nothing else"
    );
    assert_eq!(
        pairs,
        vec![
            key_of("acme", "lapsed"),
            key_of("acme", "old1"),
            key_of("globex", "old2")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_trims_the_change_log_after_retention() {
    let Some(db) = &fresh().await else {
        return;
    };
    // Tenants only: nothing else here is purgeable, so the change log is all a purge touches.
    let store = open_with_tenants(db, &["a", "b", "c"]).await;
    // Change rows carry the wall clock; `before` is placed an hour either side of "written
    // just now + retention", a margin no test run comes near.
    let now = veto_core::timeutil::now();
    let retention = time::Duration::seconds(CHANGE_RETENTION_SECS);
    let hour = time::Duration::hours(1);
    let (counts, _) = store
        .purge_batch(now + retention - hour, 100)
        .await
        .expect("purge")
        .value;
    assert_eq!(
        counts,
        PurgeCounts::default(),
        "changes within retention stay"
    );
    let kept = changes_before_marker(store.as_ref(), FeedCursor::default()).await;
    assert_eq!(
        kept.iter().map(|c| c.tenant.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );

    let (counts, _) = store
        .purge_batch(now + retention + hour, 2)
        .await
        .expect("purge")
        .value;
    assert_eq!(
        counts,
        PurgeCounts {
            changes: 2,
            ..PurgeCounts::default()
        },
        "at most a batch of the oldest"
    );
    let left = changes_before_marker(store.as_ref(), FeedCursor::default()).await;
    let tenants: Vec<&str> = left.iter().map(|c| c.tenant.as_str()).collect();
    assert_eq!(tenants.len(), 2, "{tenants:?}");
    assert_eq!(tenants[0], "c");
    assert!(tenants[1].starts_with("zz-marker-"), "{tenants:?}");
    assert_eq!(left[0], kept[2], "what is left is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_api_key_by_id() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let tenant_key = api_key("ak_1", Some("acme"), 1);
    let admin = api_key("ak_admin", None, 2);
    put_api_keys(store.as_ref(), &[&tenant_key, &admin]).await;
    assert_eq!(
        store.get_api_key("ak_1").await.expect("get"),
        Some(tenant_key)
    );
    assert_eq!(
        store.get_api_key("ak_admin").await.expect("get"),
        Some(admin)
    );
    for missing in ["ak_2", "AK_1", "ak_", ""] {
        assert_eq!(
            store.get_api_key(missing).await.expect("get"),
            None,
            "{missing:?}"
        );
    }
    store
        .delete_api_key("acme", "ak_1", &audit("acme", "api_key.delete", "ak_1"))
        .await
        .expect("delete");
    assert_eq!(store.get_api_key("ak_1").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopen() {
    let Some(db) = &fresh().await else {
        return;
    };
    let (pos, key, revocation, cutoff, api) = {
        let store = open_with_tenants(db, &["acme"]).await;
        let r = suspension("acme", "durable", at(5_000));
        store
            .insert_revocation(&r, &rev_audit(&r))
            .await
            .expect("revoke");
        let k = signing_key("acme", "k1", Alg::PS256, None, 1);
        store
            .insert_signing_key(&k, None, &audit("acme", "key.create", "k1"))
            .await
            .expect("key");
        let c = Cutoff {
            tenant: "acme".into(),
            sub: Some("alice".into()),
            not_before_iat: T0 + 3,
            expires_at: at(9_000),
        };
        store
            .set_cutoff(&c, &audit("acme", "cutoff", "alice"))
            .await
            .expect("cutoff");
        let a = api_key("ak_1", Some("acme"), 1);
        store
            .insert_api_key(&a, &audit("acme", "api_key.create", "ak_1"))
            .await
            .expect("api key");
        store
            .set_tenant_suspended("acme", true, &audit("acme", "tenant.suspend", "acme"))
            .await
            .expect("suspend");
        (cursor(store.as_ref()).await, k, r, c, a)
        // `store` is dropped here.
    };
    let store = db.open().await;
    assert_eq!(
        store.get_tenant("acme").await.expect("get"),
        Some(Tenant {
            suspended: true,
            ..tenant("acme")
        })
    );
    assert_eq!(
        store.get_revocation("acme", "durable").await.expect("get"),
        Some(revocation)
    );
    assert_eq!(
        store.list_signing_keys("acme").await.expect("keys"),
        vec![key]
    );
    assert_eq!(
        store
            .find_api_key_by_hash(&api.key_hash)
            .await
            .expect("find"),
        Some(api)
    );
    let state = store.load_state(at(0)).await.expect("state");
    assert_eq!(state.subject_cutoffs, vec![cutoff]);
    assert!(state.cursor >= pos, "the cursor never goes back");
    assert_eq!(
        what(&changes_before_marker(store.as_ref(), FeedCursor::default()).await),
        vec![
            said("acme", change::names::TENANT_CREATE, "", None),
            said(
                "acme",
                change::names::REVOCATION,
                "durable",
                Some(T0 + 5_000)
            ),
            said("acme", change::names::KEY_INSERT, "k1", None),
            said("acme", change::names::SUBJECT_CUTOFF, "alice", Some(T0 + 3)),
            said("acme", change::names::API_KEY_INSERT, "ak_1", None),
            said("acme", change::names::TENANT_SUSPEND, "", None),
        ],
        "the change log survives too"
    );
    assert_eq!(all_audit(store.as_ref(), "acme", None).await.len(), 6);
}

/// Master key rotation's two operations: pages of sealed blobs in (tenant, id) order, and a
/// re-seal that replaces a blob only where the row still holds the one it was read with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_blobs_page_and_reseal_only_what_is_unchanged() {
    let Some(db) = &fresh().await else {
        return;
    };
    use veto_store::{Resealed, SealedKind};
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let keys = [
        signing_key("globex", "g1", Alg::ES256, None, 1),
        signing_key("acme", "a2", Alg::ES256, Some("api"), 2),
        signing_key("acme", "a1", Alg::RS256, None, 3),
    ];
    for k in &keys {
        store
            .insert_signing_key(k, None, &audit(&k.tenant, "key.create", &k.kid))
            .await
            .expect("insert");
    }
    let ids = |page: &[veto_store::SealedBlob]| -> Vec<(String, String)> {
        page.iter()
            .map(|b| (b.tenant.clone(), b.id.clone()))
            .collect()
    };
    let first = store
        .sealed_page(SealedKind::SigningKey, None, 2)
        .await
        .expect("page");
    assert_eq!(
        ids(&first),
        [("acme".into(), "a1".into()), ("acme".into(), "a2".into())]
    );
    assert_eq!(first[0].sealed, keys[2].encrypted_private);
    let second = store
        .sealed_page(SealedKind::SigningKey, Some(("acme", "a2")), 2)
        .await
        .expect("page");
    assert_eq!(ids(&second), [("globex".into(), "g1".into())]);
    let after = store
        .sealed_page(SealedKind::SigningKey, Some(("globex", "g1")), 2)
        .await
        .expect("page");
    assert!(after.is_empty());
    for kind in [SealedKind::SessionKey, SealedKind::PreloginVerifier] {
        let page = store.sealed_page(kind, None, 10).await.expect("page");
        assert!(page.is_empty(), "{kind:?}: {page:?}");
    }

    let reseal = |id: &str, old: &[u8], new: &[u8]| Resealed {
        tenant: "acme".into(),
        id: id.into(),
        old: old.to_vec(),
        new: new.to_vec(),
    };
    let batch = [
        reseal("a1", &keys[2].encrypted_private, b"resealed a1"),
        // Changed since it was read: left alone.
        reseal("a2", b"not what the row holds", b"resealed a2"),
    ];
    let n = store
        .reseal(SealedKind::SigningKey, &batch)
        .await
        .expect("reseal");
    assert_eq!(n, 1);
    let acme = store.list_signing_keys("acme").await.expect("list");
    let blob = |kid: &str| {
        acme.iter()
            .find(|k| k.kid == kid)
            .map(|k| k.encrypted_private.clone())
    };
    assert_eq!(blob("a1").as_deref(), Some(b"resealed a1".as_slice()));
    assert_eq!(blob("a2"), Some(keys[1].encrypted_private.clone()));
    // Re-running the same batch changes nothing: a1 no longer holds its old blob.
    let n = store
        .reseal(SealedKind::SigningKey, &batch)
        .await
        .expect("reseal again");
    assert_eq!(n, 0);
}
