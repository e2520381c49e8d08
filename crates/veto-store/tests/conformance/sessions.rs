//! The conformance suite of [`SessionStore`], written once for every backend like its parent
//! for `Store`, and run by every backend that runs its parent (see there). The database is seen
//! through both traits (`TestDatabase::open_sessions`): as a `Store` to create tenants and read
//! the audit trail and the change feed, and as a `SessionStore`.
//!
//! The races among the cases spawn their calls at once on the two-worker runtime: a backend
//! whose store has a pool of connections runs them on several at the same time.
use std::sync::Arc;

use serde_json::json;
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::{SessionKeyRecord, SessionKeyStatus};
use veto_core::prelogin::{PRELOGIN_TTL, PreLoginRecord, new_prelogin_id};
use veto_core::refresh::{REUSE_REASON, RefreshFamily};
use veto_core::session::{NewSession, SessionPolicy, SessionRecord};
use veto_store::sessions::{Revoked, SessionKeyInsert, SessionPurge, SessionStore, StoredSession};
use veto_store::{FeedCursor, PageRequest, Store, StoreError, change};

use super::{
    TestDatabase, all_audit, at, audit, audit_at, changes_before_marker, collect_pages,
    marker_feed, rev, rev_audit, said, signing_key, suspension, tenant, what,
};
use crate::fresh;

// ---- fixtures ---------------------------------------------------------------------------------

struct Fixture {
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionStore>,
}

/// The end of the feed as of now: exactly the changes written from here on come after it.
async fn feed_end(store: &dyn Store) -> FeedCursor {
    marker_feed(store, FeedCursor::default()).await.1
}

async fn open_with_tenants(db: &dyn TestDatabase, ids: &[&str]) -> Fixture {
    let (store, sessions) = db.open_sessions().await;
    for id in ids {
        store
            .create_tenant(&tenant(id), &audit_at(id, "tenant.create", id, -10_000))
            .await
            .expect("create fixture tenant");
    }
    Fixture { store, sessions }
}

/// A session of `actor` opened at `at(offset)` with a 1 h idle and 8 h absolute timeout.
fn session(tenant: &str, actor: &str, offset: i64) -> StoredSession {
    let input = NewSession {
        tenant,
        actor_id: actor,
        actor_type: "user",
        ip_address: Some("2001:db8::1"),
        user_agent: Some("fixture-agent/1.0"),
    };
    let policy = SessionPolicy::default();
    let (record, _csrf) = SessionRecord::new(&input, &policy, at(offset)).expect("valid input");
    StoredSession {
        record,
        idle_timeout_seconds: policy.idle().whole_seconds(),
    }
}

async fn put_session(f: &Fixture, s: &StoredSession) {
    f.sessions.create_session(s).await.expect("create session");
}

fn revoke_audit(tenant: &str, id: &str, offset: i64, reason: &str) -> AuditEvent {
    audit_at(tenant, "session.revoke", id, offset).with_reason(Some(reason))
}

/// Revokes a session of `acme` at `at(offset)`.
async fn revoke(
    f: &Fixture,
    id: &str,
    offset: i64,
    reason: &str,
) -> Option<Revoked<SessionRecord>> {
    let audit = revoke_audit("acme", id, offset, reason);
    f.sessions
        .revoke_session("acme", id, &audit)
        .await
        .unwrap()
        .value
}

async fn put_sessions<'a>(f: &Fixture, all: impl IntoIterator<Item = &'a StoredSession>) {
    for s in all {
        put_session(f, s).await;
    }
}

fn session_key(tenant: &str, kid: &str, created: i64) -> SessionKeyRecord {
    SessionKeyRecord {
        tenant: tenant.to_owned(),
        kid: kid.to_owned(),
        status: SessionKeyStatus::Active,
        created_at: at(created),
        retain_until: None,
        encrypted_secret: [b"sealed:".as_slice(), kid.as_bytes(), &[0, 255]].concat(),
    }
}

/// Inserts an active key `kid` (created at 0) as `acme`'s first key, and returns it.
async fn first_key(f: &Fixture, kid: &str) -> SessionKeyRecord {
    let k = session_key("acme", kid, 0);
    let audit = audit("acme", "session_key.create", kid);
    let mode = SessionKeyInsert::IfNoneActive;
    assert!(
        f.sessions
            .insert_session_key(&k, mode, &audit)
            .await
            .unwrap()
            .value
    );
    k
}

fn prelogin(tenant: &str, created: i64) -> PreLoginRecord {
    PreLoginRecord {
        id: new_prelogin_id(),
        tenant: tenant.to_owned(),
        state: "state-123".to_owned(),
        nonce: "nonce-456".to_owned(),
        encrypted_pkce_verifier: vec![1, 2, 3, 0, 255],
        redirect_uri: Some("https://app.example/callback".to_owned()),
        created_at: at(created),
        expires_at: at(created) + PRELOGIN_TTL,
    }
}

fn family(tenant: &str, expires: i64) -> RefreshFamily {
    RefreshFamily::new(tenant, "user-1", at(expires))
}

fn reuse_audit(tenant: &str, id: &str, offset: i64) -> AuditEvent {
    audit_at(tenant, "refresh.reuse", id, offset).with_reason(Some(REUSE_REASON))
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

async fn list_all(f: &Fixture, actor: &str, now: OffsetDateTime, limit: u32) -> Vec<String> {
    let sessions = &f.sessions;
    collect_pages(limit, |p| async move {
        sessions
            .list_active_sessions("acme", "user", actor, now, &p)
            .await
    })
    .await
    .0
    .into_iter()
    .map(|s| s.id)
    .collect()
}

// ---- cases ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_roundtrip_and_errors() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let s = session("acme", "alice", 0);
    put_session(&f, &s).await;
    assert_eq!(
        f.sessions.get_session("acme", &s.record.id).await.unwrap(),
        Some(s.clone()),
        "every field reads back, the idle timeout and CSRF hash included"
    );
    assert_eq!(
        f.sessions.get_session("acme", "ses-nope").await.unwrap(),
        None
    );
    // Sessions belong to their tenant.
    f.store
        .create_tenant(
            &tenant("globex"),
            &audit("globex", "tenant.create", "globex"),
        )
        .await
        .unwrap();
    assert_eq!(
        f.sessions
            .get_session("globex", &s.record.id)
            .await
            .unwrap(),
        None
    );
    let err = f.sessions.create_session(&s).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = f
        .sessions
        .create_session(&session("nowhere", "alice", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    // Optional fields stay absent.
    let mut bare = session("acme", "bob", 5);
    bare.record.ip_address = None;
    bare.record.user_agent = None;
    put_session(&f, &bare).await;
    let got = f
        .sessions
        .get_session("acme", &bare.record.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.record.ip_address, got.record.user_agent), (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_sessions_of_an_actor_in_pages() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let mut alice: Vec<StoredSession> = (0..7).map(|i| session("acme", "alice", i * 10)).collect();
    // Two sessions in the same second: the id breaks the tie.
    alice.push(session("acme", "alice", 60));
    put_sessions(&f, &alice).await;
    put_session(&f, &session("acme", "bob", 5)).await;
    let mut admin = session("acme", "alice", 7);
    admin.record.actor_type = "admin".into();
    put_session(&f, &admin).await;
    // One revoked, one idle-expired by the time of listing.
    revoke(&f, &alice[0].record.id, 100, "test").await;
    let mut newest_first: Vec<&StoredSession> = alice[1..].iter().collect();
    newest_first.sort_by(|a, b| {
        (b.record.created_at, &b.record.id).cmp(&(a.record.created_at, &a.record.id))
    });
    let expected: Vec<String> = newest_first.iter().map(|s| s.record.id.clone()).collect();
    for limit in [1, 2, 3, 100] {
        assert_eq!(
            list_all(&f, "alice", at(100), limit).await,
            expected,
            "limit {limit}"
        );
    }
    // At 1 h + 15 s, the sessions opened at 0 and 10 have idle-expired (exclusive).
    let later = list_all(&f, "alice", at(3_600 + 15), 100).await;
    assert_eq!(later, expected[..expected.len() - 1].to_vec());
    assert!(list_all(&f, "nobody", at(100), 10).await.is_empty());
    let err = f
        .sessions
        .list_active_sessions(
            "acme",
            "user",
            "alice",
            at(100),
            &page(10, Some("???".into())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BadCursor), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_only_moves_times_forward() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let s = session("acme", "alice", 0);
    put_session(&f, &s).await;
    let id = &s.record.id;
    let get = || async {
        f.sessions
            .get_session("acme", id)
            .await
            .unwrap()
            .unwrap()
            .record
    };
    let sessions = f.sessions.as_ref();
    let touch = |seen: i64, idle: i64| async move {
        sessions
            .touch_session("acme", id, at(seen), at(idle))
            .await
            .unwrap()
            .value
    };
    assert!(touch(120, 3_720).await);
    let r = get().await;
    assert_eq!((r.last_seen_at, r.idle_expires_at), (at(120), at(3_720)));
    // An older write-back (another node, a lagging clock) moves nothing back.
    assert!(touch(60, 3_660).await);
    let r = get().await;
    assert_eq!((r.last_seen_at, r.idle_expires_at), (at(120), at(3_720)));
    // Never past the absolute expiry, whatever the caller passes.
    assert!(touch(200, 99_999).await);
    assert_eq!(get().await.idle_expires_at, s.record.absolute_expires_at);
    // Revoked or unknown sessions are not touched.
    revoke(&f, id, 300, "logout").await;
    assert!(!touch(400, 4_000).await);
    assert_eq!(get().await.last_seen_at, at(200));
    assert!(
        !f.sessions
            .touch_session("acme", "ses-nope", at(1), at(2))
            .await
            .unwrap()
            .value
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_revocation_is_audited_once() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let s = session("acme", "alice", 0);
    put_session(&f, &s).await;
    let id = s.record.id.as_str();
    let first = revoke_audit("acme", id, 100, "stolen laptop");
    let Revoked { record, newly } = f
        .sessions
        .revoke_session("acme", id, &first)
        .await
        .unwrap()
        .value
        .expect("known session");
    assert!(newly);
    assert_eq!(record.revoked_at, Some(at(100)));
    assert_eq!(record.revoke_reason.as_deref(), Some("stolen laptop"));
    let after_first = feed_end(f.store.as_ref()).await;
    // The first revocation stands.
    let again = f
        .sessions
        .revoke_session("acme", id, &revoke_audit("acme", id, 200, "other"))
        .await
        .unwrap()
        .value
        .unwrap();
    assert!(!again.newly);
    assert_eq!(again.record, record);
    assert_eq!(
        f.sessions
            .get_session("acme", id)
            .await
            .unwrap()
            .unwrap()
            .record,
        record
    );
    let trail = all_audit(f.store.as_ref(), "acme", Some("session.revoke")).await;
    assert_eq!(trail, vec![first]);
    assert!(
        changes_before_marker(f.store.as_ref(), after_first)
            .await
            .is_empty(),
        "a repeated revocation logs nothing"
    );
    assert_eq!(revoke(&f, "ses-nope", 1, "x").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_revoke_all_revokes_each_session_once() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let alice: Vec<StoredSession> = (0..3).map(|i| session("acme", "alice", i)).collect();
    put_sessions(&f, &alice).await;
    let bob = session("acme", "bob", 0);
    put_session(&f, &bob).await;
    // One already revoked on its own: its first revocation stands.
    revoke(&f, &alice[0].record.id, 10, "one").await;
    let before = feed_end(f.store.as_ref()).await;
    let template = audit_at("acme", "session.revoke", "user:alice", 50)
        .with_reason(Some("logout everywhere"))
        .with_metadata(json!({"revoke_all": true}));
    let ids = f
        .sessions
        .revoke_actor_sessions("acme", "user", "alice", &template)
        .await
        .unwrap()
        .value;
    let mut expected: Vec<String> = alice[1..].iter().map(|s| s.record.id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for s in &alice[1..] {
        let r = f
            .sessions
            .get_session("acme", &s.record.id)
            .await
            .unwrap()
            .unwrap()
            .record;
        assert_eq!(
            (r.revoked_at, r.revoke_reason.as_deref()),
            (Some(at(50)), Some("logout everywhere"))
        );
    }
    let first = f
        .sessions
        .get_session("acme", &alice[0].record.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.record.revoke_reason.as_deref(), Some("one"));
    let bob_now = f
        .sessions
        .get_session("acme", &bob.record.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_now.record.revoked_at, None);
    // One audit event per session, each with its own id and the session as target.
    let trail = all_audit(f.store.as_ref(), "acme", Some("session.revoke")).await;
    let mut targets: Vec<&str> = trail
        .iter()
        .filter(|e| e.at == at(50))
        .map(|e| e.target.as_str())
        .collect();
    targets.sort_unstable();
    assert_eq!(
        targets,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(trail.iter().filter(|e| e.at == at(50)).all(|e| {
        e.actor == template.actor
            && e.reason == template.reason
            && e.metadata == template.metadata
            && e.id != template.id
    }));
    let mut logged = what(&changes_before_marker(f.store.as_ref(), before).await);
    logged.sort();
    let mut want: Vec<_> = expected
        .iter()
        .map(|id| said("acme", change::names::SESSION_REVOKE, id, None))
        .collect();
    want.sort();
    assert_eq!(logged, want);
    // Nothing left to revoke.
    assert!(
        f.sessions
            .revoke_actor_sessions("acme", "user", "alice", &template)
            .await
            .unwrap()
            .value
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_keys_first_key_and_rotation() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme", "globex"]).await;
    let k1 = session_key("acme", "k1", 0);
    let create = audit("acme", "session_key.create", "k1");
    assert!(
        f.sessions
            .insert_session_key(&k1, SessionKeyInsert::IfNoneActive, &create)
            .await
            .unwrap()
            .value
    );
    // A second "first key" (another node racing) inserts nothing and audits nothing.
    let k1b = session_key("acme", "k1b", 1);
    assert!(
        !f.sessions
            .insert_session_key(
                &k1b,
                SessionKeyInsert::IfNoneActive,
                &audit("acme", "session_key.create", "k1b")
            )
            .await
            .unwrap()
            .value
    );
    assert_eq!(
        f.sessions.list_session_keys("acme").await.unwrap(),
        vec![k1.clone()]
    );
    // Rotation retires every other active key of the tenant, and only of that tenant.
    let g1 = session_key("globex", "g1", 0);
    f.sessions
        .insert_session_key(
            &g1,
            SessionKeyInsert::IfNoneActive,
            &audit("globex", "session_key.create", "g1"),
        )
        .await
        .unwrap();
    let k2 = session_key("acme", "k2", 10);
    let rotate = audit("acme", "session_key.rotate", "k2");
    assert!(
        f.sessions
            .insert_session_key(
                &k2,
                SessionKeyInsert::Rotate {
                    retain_until: at(86_410)
                },
                &rotate
            )
            .await
            .unwrap()
            .value
    );
    let retired = SessionKeyRecord {
        status: SessionKeyStatus::Retired,
        retain_until: Some(at(86_410)),
        ..k1.clone()
    };
    assert_eq!(
        f.sessions.list_session_keys("acme").await.unwrap(),
        vec![k2.clone(), retired]
    );
    assert_eq!(
        f.sessions.list_session_keys("globex").await.unwrap(),
        vec![g1]
    );
    let trail = all_audit(f.store.as_ref(), "acme", None).await;
    assert!(trail.contains(&create) && trail.contains(&rotate));
    assert!(!trail.iter().any(|e| e.target == "k1b"));
    let err = f
        .sessions
        .insert_session_key(
            &k2,
            SessionKeyInsert::Rotate {
                retain_until: at(1),
            },
            &audit("acme", "session_key.rotate", "k2"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = f
        .sessions
        .insert_session_key(
            &session_key("nowhere", "n1", 0),
            SessionKeyInsert::IfNoneActive,
            &audit("nowhere", "session_key.create", "n1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prelogin_is_consumed_exactly_once() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme", "globex"]).await;
    let p = prelogin("acme", 0);
    f.sessions.insert_prelogin(&p).await.unwrap();
    let mut bare = prelogin("acme", 0);
    bare.redirect_uri = None;
    f.sessions.insert_prelogin(&bare).await.unwrap();
    // Not another tenant's to take.
    assert_eq!(
        f.sessions.take_prelogin("globex", &p.id).await.unwrap(),
        None
    );
    assert_eq!(
        f.sessions.take_prelogin("acme", &p.id).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(f.sessions.take_prelogin("acme", &p.id).await.unwrap(), None);
    assert_eq!(
        f.sessions.take_prelogin("acme", &bare.id).await.unwrap(),
        Some(bare)
    );
    let err = f
        .sessions
        .insert_prelogin(&prelogin("nowhere", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

/// Runs `n` copies of `op` at once (spawned tasks on the multi-thread runtime, released
/// together) and returns their results.
async fn race<T, F, Fut>(n: usize, op: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (start, fut) = (start.clone(), op());
        tasks.spawn(async move {
            start.wait().await;
            fut.await
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        out.push(r.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_prelogin_consumes_have_one_winner() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    for round in 0..5 {
        let p = prelogin("acme", round);
        f.sessions.insert_prelogin(&p).await.unwrap();
        let got = race(8, || {
            let (sessions, id) = (f.sessions.clone(), p.id.clone());
            async move { sessions.take_prelogin("acme", &id).await.expect("take") }
        })
        .await;
        let winners: Vec<&PreLoginRecord> = got.iter().flatten().collect();
        assert_eq!(
            winners,
            vec![&p],
            "round {round}: exactly one consume gets the record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_is_a_compare_and_swap() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let fam = family("acme", 86_400);
    f.sessions.create_refresh_family(&fam).await.unwrap();
    assert_eq!(
        f.sessions
            .get_refresh_family("acme", &fam.id)
            .await
            .unwrap(),
        Some(fam.clone())
    );
    let err = f.sessions.create_refresh_family(&fam).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        f.sessions
            .rotate_refresh_family("acme", &fam.id, 0, 1)
            .await
            .unwrap()
    );
    // The same generation again: the swap fails (this is how a reuse is noticed).
    assert!(
        !f.sessions
            .rotate_refresh_family("acme", &fam.id, 0, 1)
            .await
            .unwrap()
    );
    assert!(
        f.sessions
            .rotate_refresh_family("acme", &fam.id, 1, 2)
            .await
            .unwrap()
    );
    let now = f
        .sessions
        .get_refresh_family("acme", &fam.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.current_gen, 2);
    let before = feed_end(f.store.as_ref()).await;
    let reuse = reuse_audit("acme", &fam.id, 500);
    let Revoked { record, newly } = f
        .sessions
        .revoke_refresh_family("acme", &fam.id, &reuse)
        .await
        .unwrap()
        .value
        .unwrap();
    assert!(newly);
    assert_eq!(
        (
            record.revoked_at,
            record.revoke_reason.as_deref(),
            record.current_gen
        ),
        (Some(at(500)), Some(REUSE_REASON), 2)
    );
    assert_eq!(
        what(&changes_before_marker(f.store.as_ref(), before).await),
        vec![said("acme", change::names::REFRESH_REVOKE, &fam.id, None)]
    );
    assert_eq!(
        all_audit(f.store.as_ref(), "acme", Some("refresh.reuse")).await,
        vec![reuse]
    );
    // A revoked family never rotates again, and its first revocation stands.
    assert!(
        !f.sessions
            .rotate_refresh_family("acme", &fam.id, 2, 3)
            .await
            .unwrap()
    );
    let again = f
        .sessions
        .revoke_refresh_family("acme", &fam.id, &reuse_audit("acme", &fam.id, 900))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!((again.newly, again.record), (false, record));
    assert!(
        !f.sessions
            .rotate_refresh_family("acme", "rf-nope", 0, 1)
            .await
            .unwrap()
    );
    assert_eq!(
        f.sessions
            .get_refresh_family("acme", "rf-nope")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_rotations_have_one_winner() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let fam = family("acme", 86_400);
    f.sessions.create_refresh_family(&fam).await.unwrap();
    for generation in 0..5u32 {
        let won = race(8, || {
            let (sessions, id) = (f.sessions.clone(), fam.id.clone());
            async move {
                sessions
                    .rotate_refresh_family("acme", &id, generation, generation + 1)
                    .await
                    .expect("rotate")
            }
        })
        .await;
        assert_eq!(
            won.iter().filter(|w| **w).count(),
            1,
            "generation {generation}"
        );
    }
    let now = f
        .sessions
        .get_refresh_family("acme", &fam.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.current_gen, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_purge_in_bounded_batches() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    // Sessions end 8 h after they open: those opened at 0..5 end at 28,800..28,804.
    let old: Vec<StoredSession> = (0..5).map(|i| session("acme", "alice", i)).collect();
    put_sessions(&f, &old).await;
    let young = session("acme", "alice", 50_000);
    put_session(&f, &young).await;
    // Revocation does not make a session purgeable early: its tokens may still be live.
    revoke(&f, &young.record.id, 50_001, "x").await;
    let old_prelogin: Vec<PreLoginRecord> = (0..3).map(|i| prelogin("acme", i)).collect();
    for p in &old_prelogin {
        f.sessions.insert_prelogin(p).await.unwrap();
    }
    let fresh_prelogin = prelogin("acme", 40_000);
    f.sessions.insert_prelogin(&fresh_prelogin).await.unwrap();
    let old_fam = family("acme", 1_000);
    let young_fam = family("acme", 50_000);
    for fam in [&old_fam, &young_fam] {
        f.sessions.create_refresh_family(fam).await.unwrap();
    }
    let k1 = session_key("acme", "k1", 0);
    let none = SessionKeyInsert::IfNoneActive;
    f.sessions
        .insert_session_key(&k1, none, &audit("acme", "a", "k1"))
        .await
        .unwrap();
    let k2 = session_key("acme", "k2", 10);
    let rotate = SessionKeyInsert::Rotate {
        retain_until: at(2_000),
    };
    f.sessions
        .insert_session_key(&k2, rotate, &audit("acme", "a", "k2"))
        .await
        .unwrap();

    // With a linger of 1 h, `before` at 33,000 reaches sessions that ended before 29,400 and
    // families that expired before 29,400; pre-login records and keys go by `before` itself.
    let feed_before = feed_end(f.store.as_ref()).await;
    let before = at(33_000);
    let linger = Duration::hours(1);
    let mut total = SessionPurge::default();
    let mut passes = 0;
    loop {
        let p = f
            .sessions
            .purge_sessions_batch(before, linger, 2)
            .await
            .unwrap()
            .value;
        assert!(p.sessions.len() <= 2 && p.prelogin <= 2 && p.refresh_families.len() <= 2);
        if p.is_empty() {
            break;
        }
        passes += 1;
        total.sessions.extend(p.sessions);
        total.prelogin += p.prelogin;
        total.refresh_families.extend(p.refresh_families);
        total.session_keys.extend(p.session_keys);
        assert!(passes < 100);
    }
    assert_eq!(passes, 3, "5 sessions in batches of 2");
    let mut purged: Vec<String> = total.sessions.iter().map(|(_, id)| id.clone()).collect();
    purged.sort();
    let mut expected: Vec<String> = old.iter().map(|s| s.record.id.clone()).collect();
    expected.sort();
    assert_eq!(purged, expected);
    assert_eq!(total.prelogin, 3);
    assert_eq!(
        total.refresh_families,
        vec![("acme".to_owned(), old_fam.id.clone())]
    );
    assert_eq!(
        total.session_keys,
        vec![("acme".to_owned(), "k1".to_owned())]
    );
    assert!(
        f.sessions
            .get_session("acme", &young.record.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        f.sessions
            .take_prelogin("acme", &fresh_prelogin.id)
            .await
            .unwrap(),
        Some(fresh_prelogin)
    );
    assert!(
        f.sessions
            .get_refresh_family("acme", &young_fam.id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        f.sessions.list_session_keys("acme").await.unwrap(),
        vec![k2]
    );
    // Nodes learn of every deleted session and family through the feed.
    let mut logged = what(&changes_before_marker(f.store.as_ref(), feed_before).await);
    logged.sort();
    let mut want: Vec<_> = expected
        .iter()
        .map(|id| said("acme", change::names::SESSION_PURGE, id, None))
        .chain([said(
            "acme",
            change::names::REFRESH_PURGE,
            &old_fam.id,
            None,
        )])
        .collect();
    want.sort();
    assert_eq!(logged, want);
    let snap = f.sessions.load_sessions().await.unwrap();
    assert_eq!(
        snap.revoked_sessions,
        vec![("acme".to_owned(), young.record.id.clone())]
    );
    assert!(snap.sessions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_sessions_reflects_everything() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme", "globex"]).await;
    let live = session("acme", "alice", 0);
    let expired = session("globex", "bob", -100_000);
    let revoked = session("acme", "carol", 0);
    put_sessions(&f, [&live, &expired, &revoked]).await;
    f.sessions
        .touch_session("acme", &live.record.id, at(600), at(4_200))
        .await
        .unwrap();
    revoke(&f, &revoked.record.id, 10, "x").await;
    let k = first_key(&f, "k1").await;
    let fam_ok = family("acme", 86_400);
    let fam_bad = family("globex", 86_400);
    for fam in [&fam_ok, &fam_bad] {
        f.sessions.create_refresh_family(fam).await.unwrap();
    }
    f.sessions
        .revoke_refresh_family(
            "globex",
            &fam_bad.id,
            &reuse_audit("globex", &fam_bad.id, 5),
        )
        .await
        .unwrap();
    let snap = f.sessions.load_sessions().await.unwrap();
    let mut sessions = snap.sessions.clone();
    sessions.sort();
    let mut want = vec![
        (
            "acme".to_owned(),
            live.record.id.clone(),
            1_800_000_600,
            1_800_004_200,
        ),
        (
            "globex".to_owned(),
            expired.record.id.clone(),
            expired.record.last_seen_at.unix_timestamp(),
            expired.record.idle_expires_at.unix_timestamp(),
        ),
    ];
    want.sort();
    assert_eq!(
        sessions, want,
        "expired sessions are loaded too: their tokens must fail"
    );
    assert_eq!(
        snap.revoked_sessions,
        vec![("acme".to_owned(), revoked.record.id.clone())]
    );
    assert_eq!(snap.session_keys, vec![k]);
    assert_eq!(
        snap.revoked_families,
        vec![("globex".to_owned(), fam_bad.id.clone())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_writes_reach_the_change_feed() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme"]).await;
    let before = feed_end(f.store.as_ref()).await;
    let s = session("acme", "alice", 0);
    put_session(&f, &s).await;
    let id = s.record.id.as_str();
    f.sessions
        .touch_session("acme", id, at(300), at(3_900))
        .await
        .unwrap();
    revoke(&f, id, 400, "x").await;
    let k = first_key(&f, "k1").await;
    // Pre-login records and refresh rotations live in the store only: nothing to log.
    let p = prelogin("acme", 0);
    f.sessions.insert_prelogin(&p).await.unwrap();
    f.sessions.take_prelogin("acme", &p.id).await.unwrap();
    let fam = family("acme", 86_400);
    f.sessions.create_refresh_family(&fam).await.unwrap();
    f.sessions
        .rotate_refresh_family("acme", &fam.id, 0, 1)
        .await
        .unwrap();
    f.sessions
        .revoke_refresh_family("acme", &fam.id, &reuse_audit("acme", &fam.id, 1))
        .await
        .unwrap();
    let idle = s.record.idle_expires_at.unix_timestamp();
    assert_eq!(
        what(&changes_before_marker(f.store.as_ref(), before).await),
        vec![
            said("acme", change::names::SESSION_CREATE, id, Some(idle)),
            said(
                "acme",
                change::names::SESSION_TOUCH,
                id,
                Some(1_800_003_900)
            ),
            said("acme", change::names::SESSION_REVOKE, id, None),
            said("acme", change::names::SESSION_KEY_INSERT, &k.kid, None),
            said("acme", change::names::REFRESH_REVOKE, &fam.id, None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_reopen() {
    let Some(db) = &fresh().await else {
        return;
    };
    let s = session("acme", "alice", 0);
    let fam = family("acme", 86_400);
    let p = prelogin("acme", 0);
    let k = session_key("acme", "k1", 0);
    {
        let f = open_with_tenants(db, &["acme"]).await;
        put_session(&f, &s).await;
        revoke(&f, &s.record.id, 5, "x").await;
        f.sessions.create_refresh_family(&fam).await.unwrap();
        f.sessions
            .rotate_refresh_family("acme", &fam.id, 0, 1)
            .await
            .unwrap();
        f.sessions.insert_prelogin(&p).await.unwrap();
        f.sessions
            .insert_session_key(
                &k,
                SessionKeyInsert::IfNoneActive,
                &audit("acme", "a", "k1"),
            )
            .await
            .unwrap();
    }
    let (_store, sessions) = db.open_sessions().await;
    let got = sessions
        .get_session("acme", &s.record.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.record.revoked_at, Some(at(5)));
    assert_eq!(
        sessions
            .get_refresh_family("acme", &fam.id)
            .await
            .unwrap()
            .map(|f| f.current_gen),
        Some(1)
    );
    assert_eq!(
        sessions.take_prelogin("acme", &p.id).await.unwrap(),
        Some(p)
    );
    assert_eq!(sessions.list_session_keys("acme").await.unwrap(), vec![k]);
}

// ---- a tenant's revocation state (the revocation stream's snapshot) -----------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_revocation_state_is_the_tenants_alone_at_one_cursor() {
    let Some(db) = &fresh().await else {
        return;
    };
    let f = open_with_tenants(db, &["acme", "globex"]).await;
    let store = f.store.as_ref();
    let now = at(100);
    let empty = store
        .tenant_revocation_state("acme", now)
        .await
        .unwrap()
        .expect("acme exists");
    assert_eq!(
        (
            empty.suspended,
            empty.tenant_cutoff,
            empty.revocations.len()
        ),
        (false, None, 0)
    );
    assert!(
        store
            .tenant_revocation_state("nope", now)
            .await
            .unwrap()
            .is_none()
    );

    for r in [
        rev("acme", "gone-for-good"),
        suspension("acme", "on-hold", at(500)),
        suspension("acme", "already-lifted", at(50)),
        rev("globex", "not-acme"),
    ] {
        store.insert_revocation(&r, &rev_audit(&r)).await.unwrap();
    }
    for (t, sub, nbf) in [
        ("acme", None, 70),
        ("acme", Some("user-9"), 90),
        ("globex", Some("g"), 1),
    ] {
        let c = veto_core::revocation::Cutoff {
            tenant: t.to_owned(),
            sub: sub.map(str::to_owned),
            not_before_iat: super::T0 + nbf,
            expires_at: at(3_600),
        };
        store
            .set_cutoff(&c, &audit(t, "cutoff", "x"))
            .await
            .unwrap();
    }
    for (kid, created) in [("k-live", 1), ("k-leaked", 2)] {
        let k = signing_key("acme", kid, veto_core::Alg::ES256, None, created);
        store
            .insert_signing_key(&k, None, &audit("acme", "key.create", kid))
            .await
            .unwrap();
    }
    store
        .revoke_signing_key(
            "acme",
            "k-leaked",
            Some("leaked"),
            &audit("acme", "key.revoke", "k"),
        )
        .await
        .unwrap();
    let (live, ended) = (session("acme", "ann", 0), session("acme", "bob", 0));
    put_sessions(&f, [&live, &ended, &session("globex", "gil", 0)]).await;
    revoke(&f, &ended.record.id, 10, "logout")
        .await
        .expect("revoked");
    let fam = family("acme", 9_000);
    f.sessions.create_refresh_family(&fam).await.unwrap();
    f.sessions
        .revoke_refresh_family("acme", &fam.id, &reuse_audit("acme", &fam.id, 20))
        .await
        .unwrap();
    store
        .set_tenant_suspended("acme", true, &audit("acme", "tenant.suspend", "acme"))
        .await
        .unwrap();

    let mut s = store
        .tenant_revocation_state("acme", now)
        .await
        .unwrap()
        .expect("acme exists");
    s.revocations.sort();
    assert!(s.suspended);
    assert_eq!(s.tenant_cutoff, Some(super::T0 + 70));
    assert_eq!(
        s.subject_cutoffs,
        vec![("user-9".to_owned(), super::T0 + 90)]
    );
    assert_eq!(
        s.revocations,
        vec![
            ("gone-for-good".to_owned(), None),
            ("on-hold".to_owned(), Some(super::T0 + 500)),
        ],
        "a suspension whose time has passed rejects nothing and is left out"
    );
    assert_eq!(s.revoked_keys, vec!["k-leaked".to_owned()]);
    assert_eq!(
        s.sessions,
        vec![(
            live.record.id.clone(),
            live.record.idle_expires_at.unix_timestamp()
        )]
    );
    assert_eq!(s.revoked_sessions, vec![ended.record.id.clone()]);
    assert_eq!(s.revoked_families, vec![fam.id.clone()]);

    // The cursor is the end of what the snapshot holds: every acme change after it is one the
    // snapshot names as already included. On PostgreSQL the cursor stops below a transaction
    // still open anywhere in the cluster (another test's, say), so changes that committed after
    // that one began sit beyond the cursor yet are in the snapshot: `included_after` lists them.
    let later: Vec<_> = store
        .changes_after(s.cursor, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.tenant == "acme"
                && !matches!(c.kind, veto_store::ChangeKind::Unreadable { .. })
                && !s.included_after.contains(&c.cursor)
        })
        .collect();
    assert_eq!(what(&later), vec![], "every acme change is in the snapshot");

    // The log's oldest change is at or before every change it returns.
    let oldest = store
        .oldest_change()
        .await
        .unwrap()
        .expect("the log has changes");
    let all = store
        .changes_after(FeedCursor::default(), 10_000)
        .await
        .unwrap();
    assert!(all.iter().all(|c| c.cursor >= oldest));
    assert_eq!(all.first().map(|c| c.cursor), Some(oldest));
}

#[test]
fn a_position_reads_back_as_written_and_nothing_else_reads() {
    for c in [
        FeedCursor::default(),
        FeedCursor {
            xid: 0,
            position: 42,
        },
        FeedCursor {
            xid: 1527,
            position: -1,
        },
        FeedCursor {
            xid: i64::MAX,
            position: 1,
        },
    ] {
        assert_eq!(c.to_string().parse::<FeedCursor>(), Ok(c));
    }
    assert_eq!(
        FeedCursor {
            xid: 7,
            position: 42
        }
        .to_string(),
        "7:42"
    );
    for bad in [
        "",
        "42",
        "-1:2",
        "1:-2",
        "1::2",
        "+1:2",
        "1:2:3",
        "a:1",
        "1:",
        " 1:2",
        "1:2 ",
        "-:1",
        "99999999999999999999:1",
    ] {
        assert!(bad.parse::<FeedCursor>().is_err(), "{bad:?}");
    }
}
