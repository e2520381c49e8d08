//! The storage conformance suites (`conformance`), and what only a shared database has to get
//! right (the change feed under out-of-order commits and concurrent writers, concurrent identical
//! revocations, row locks deciding session races), against a real PostgreSQL.
//!
//! `VETO_TEST_DATABASE_URL` names a database on a server where the user may create databases
//! (`./scripts/test.sh` starts a throwaway server and sets it). Each case gets its own database,
//! created here and dropped afterwards. Without the variable these tests fail, telling you how
//! to get one, unless `VETO_SKIP_POSTGRES=1` says to skip them: never a silent pass.
use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use veto_core::audit::AuditEvent;
use veto_core::prelogin::{PRELOGIN_TTL, PreLoginRecord, new_prelogin_id};
use veto_core::refresh::RefreshFamily;
use veto_core::revocation::Revocation;
use veto_store::{Change, FeedCursor, PgStore, SessionStore, Store, change};

use conformance::{TestDatabase, add_tenants, at, rev, rev_audit, suspension};

mod conformance;

/// One database, `veto_t_<uuid>`, dropped (with its connections) when this goes away.
struct PgTestDb {
    admin_url: String,
    name: String,
    url: String,
}

#[async_trait]
impl TestDatabase for PgTestDb {
    async fn open(&self) -> Box<dyn Store> {
        Box::new(self.store().await)
    }

    async fn open_sessions(&self) -> (Arc<dyn Store>, Arc<dyn SessionStore>) {
        // As many connections as the suite's races have callers (8): each concurrent consume or
        // rotation runs on a connection of its own, so PostgreSQL decides the winner.
        let store = PgStore::connect(&self.url, 8)
            .await
            .expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let store = Arc::new(store);
        (store.clone(), store)
    }
}

impl PgTestDb {
    /// A migrated store on this database with a small pool (several may be open at once).
    async fn store(&self) -> PgStore {
        let store = PgStore::connect(&self.url, 4)
            .await
            .expect("connect to the test database");
        store.migrate().await.expect("migrate");
        store
    }

    /// A plain connection, for transactions the test controls statement by statement.
    async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("raw connection")
    }
}

impl Drop for PgTestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with its own.
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await?;
                // FORCE: the case's pools may still hold connections.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// The server to test against, or `None` when told to skip; a missing URL otherwise fails.
fn admin_url() -> Option<String> {
    match std::env::var("VETO_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("VETO_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("VETO_SKIP_POSTGRES=1: PostgreSQL tests skipped");
            None
        }
        _ => panic!(
            "VETO_TEST_DATABASE_URL is not set: run ./scripts/test.sh (it starts a throwaway \
             PostgreSQL), or set it to a database URL whose user may create databases, or set \
             VETO_SKIP_POSTGRES=1 to skip the PostgreSQL tests"
        ),
    }
}

/// `url` with its database replaced by `name` (keeping user, host and query parameters).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..path])
}

/// A new database for one case (the conformance suites' too), or `None` when told to skip.
async fn fresh() -> Option<PgTestDb> {
    let admin_url = admin_url()?;
    // Fail early with the URL's own error rather than a confusing one from the first query.
    PgConnectOptions::from_str(&admin_url).expect("VETO_TEST_DATABASE_URL is a PostgreSQL URL");
    let name = format!("veto_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin_url)
        .await
        .expect("connect to VETO_TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let url = with_database(&admin_url, &name);
    Some(PgTestDb {
        admin_url,
        name,
        url,
    })
}

// ---- helpers ----------------------------------------------------------------------------------

async fn with_acme(db: &PgTestDb) -> PgStore {
    let store = db.store().await;
    add_tenants(&store, &["acme"]).await;
    store
}

/// Revokes `jti` of acme, as a client would.
async fn revoke(store: &PgStore, jti: &str) -> veto_store::RevokeOutcome {
    let r = rev("acme", jti);
    store
        .insert_revocation(&r, &rev_audit(&r))
        .await
        .expect("revoke")
        .value
}

/// A node's view of the feed: where it is, and everything it received, in order.
#[derive(Default)]
struct Follower {
    cursor: FeedCursor,
    seen: Vec<Change>,
}

impl Follower {
    /// Reads until the feed has nothing more (for now), checking the order as it goes.
    async fn catch_up(&mut self, store: &dyn Store, limit: u32) {
        loop {
            let page = store
                .changes_after(self.cursor, limit)
                .await
                .expect("changes_after");
            if page.is_empty() {
                return;
            }
            assert!(page.len() <= limit as usize);
            for c in page {
                assert!(
                    c.cursor > self.cursor,
                    "{:?} after {:?}",
                    c.cursor,
                    self.cursor
                );
                self.cursor = c.cursor;
                self.seen.push(c);
            }
        }
    }

    /// Catches up until `done` holds. Bounded: a feed that never delivers fails the test (the
    /// bound is generous; nothing about time is asserted).
    async fn until(&mut self, store: &dyn Store, limit: u32, done: impl Fn(&[Change]) -> bool) {
        for _ in 0..6_000 {
            self.catch_up(store, limit).await;
            if done(&self.seen) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the feed never delivered what was expected");
    }

    fn keys(&self) -> Vec<&str> {
        self.seen.iter().map(|c| c.key()).collect()
    }
}

fn has_key(key: &str) -> impl Fn(&[Change]) -> bool + '_ {
    move |seen| seen.iter().any(|c| c.key() == key)
}

/// Writes a revocation and its change row in a transaction the test controls, as a node would
/// (same tables, same column defaults), and returns the change's (position, xid).
async fn raw_revocation(conn: &mut PgConnection, jti: &str) -> (i64, i64) {
    sqlx::query(
        "INSERT INTO revocations (tenant, jti, sub, expires_at, revoked_at, reason, revoked_by, \
                                  metadata, until) \
         VALUES ('acme', $1, NULL, $2, $3, NULL, 'raw', '{}', NULL)",
    )
    .bind(jti)
    .bind(at(3_600).unix_timestamp())
    .bind(at(0).unix_timestamp())
    .execute(&mut *conn)
    .await
    .expect("raw revocation");
    sqlx::query_as(
        "INSERT INTO changes (tenant, kind, key, value, at) \
         VALUES ('acme', 'revocation', $1, NULL, 0) RETURNING position, xid",
    )
    .bind(jti)
    .fetch_one(&mut *conn)
    .await
    .expect("raw change")
}

async fn exec(conn: &mut PgConnection, sql: &'static str) {
    sqlx::query(sql).execute(conn).await.expect(sql);
}

/// A store with tenant acme, a reader that has seen its creation, and two raw connections.
async fn two_writers(db: &PgTestDb) -> (PgStore, Follower, PgConnection, PgConnection) {
    let store = with_acme(db).await;
    let mut reader = Follower::default();
    reader
        .until(&store, 10, |s| {
            s.iter()
                .any(|c| c.kind.name() == change::names::TENANT_CREATE)
        })
        .await;
    (store, reader, db.raw().await, db.raw().await)
}

// ---- the change feed under out-of-order commits ---------------------------------------------------

/// Transaction A takes the lower position but commits after B: a reader must get both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_waits_for_a_lower_position_that_commits_later() {
    let Some(db) = fresh().await else { return };
    let (store, mut reader, mut a, mut b) = two_writers(&db).await;
    exec(&mut a, "BEGIN").await;
    let (pos_a, _) = raw_revocation(&mut a, "a").await;
    exec(&mut b, "BEGIN").await;
    let (pos_b, _) = raw_revocation(&mut b, "b").await;
    assert!(pos_a < pos_b, "A holds the lower position");
    exec(&mut b, "COMMIT").await;

    // B is committed and visible, but A (older) is still open: B is not final yet.
    assert!(
        store
            .get_revocation("acme", "b")
            .await
            .expect("get")
            .is_some(),
        "B committed"
    );
    reader.catch_up(&store, 10).await;
    assert_eq!(reader.keys(), [""], "nothing past A while A is open");
    // A snapshot taken now holds B but not A, and its cursor lies before both.
    let snapshot = store.load_state(at(0)).await.expect("state");
    let jtis: HashSet<&str> = snapshot
        .revocations
        .iter()
        .map(|r| r.jti.as_str())
        .collect();
    assert_eq!(jtis, HashSet::from(["b"]));
    // It says which changes after its cursor it holds already: B's.
    let included: Vec<&str> = snapshot.included_after.iter().map(|c| c.key()).collect();
    assert_eq!(included, ["b"]);
    let tenant = store
        .tenant_revocation_state("acme", at(0))
        .await
        .expect("tenant state")
        .expect("acme");
    assert_eq!(tenant.included_after, [snapshot.included_after[0].cursor]);

    exec(&mut a, "COMMIT").await;
    reader.until(&store, 10, has_key("b")).await;
    assert_eq!(reader.keys(), ["", "a", "b"], "both, in transaction order");
    // Snapshot + feed: A (missing from the snapshot) comes; B comes again, as the snapshot said.
    let mut from_snapshot = Follower {
        cursor: snapshot.cursor,
        seen: Vec::new(),
    };
    from_snapshot.until(&store, 1, has_key("b")).await;
    assert!(from_snapshot.keys().contains(&"a"));
    // Folding what the tenant snapshot lacked up to the last change it held gives the state at
    // that change, exactly: A and B, and nothing to apply twice after it.
    let mut exact = tenant;
    let to = exact.included_after[0];
    exact.fold("acme", &from_snapshot.seen, to, 0);
    assert_eq!(exact.cursor, to);
    assert!(exact.included_after.is_empty());
    let jtis: HashSet<&str> = exact.revocations.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jtis, HashSet::from(["a", "b"]));
}

/// The hazard itself: B writes first (older transaction) but A's row gets the lower position and
/// commits last. A reader going by position alone would pass A's position before A commits and
/// never see A; going by (xid, position) it gets A afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_delivers_a_lower_position_committed_after_a_higher_one_was_read() {
    let Some(db) = fresh().await else { return };
    let (store, mut reader, mut a, mut b) = two_writers(&db).await;
    exec(&mut b, "BEGIN").await;
    // B takes its transaction id first...
    exec(&mut b, "SELECT pg_current_xact_id()").await;
    exec(&mut a, "BEGIN").await;
    // ...A writes its change first (lower position), B after.
    let (pos_a, xid_a) = raw_revocation(&mut a, "a").await;
    let (pos_b, xid_b) = raw_revocation(&mut b, "b").await;
    assert!(pos_a < pos_b && xid_b < xid_a);
    exec(&mut b, "COMMIT").await;

    reader.until(&store, 10, has_key("b")).await;
    assert_eq!(
        reader.keys(),
        ["", "b"],
        "B is final (older than every open transaction)"
    );
    assert!(
        reader.cursor.position > pos_a,
        "the reader is already past A's position"
    );

    exec(&mut a, "COMMIT").await;
    reader.until(&store, 10, has_key("a")).await;
    assert_eq!(reader.keys(), ["", "b", "a"], "A arrives after all, once");
}

/// An open transaction that has written nothing holds nothing back; one that has, does (the
/// documented cost), and only until it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_transactions_that_write_hold_the_feed_back() {
    let Some(db) = fresh().await else { return };
    let store = with_acme(&db).await;
    let mut reader = Follower::default();
    let mut idle = db.raw().await;
    exec(&mut idle, "BEGIN").await;
    exec(&mut idle, "SELECT count(*) FROM changes").await;
    revoke(&store, "j1").await;
    reader.until(&store, 10, has_key("j1")).await;
    exec(&mut idle, "ROLLBACK").await;

    let mut writer = db.raw().await;
    exec(&mut writer, "BEGIN").await;
    exec(&mut writer, "SELECT pg_current_xact_id()").await;
    revoke(&store, "j2").await;
    reader.catch_up(&store, 10).await;
    assert!(
        !reader.keys().contains(&"j2"),
        "held back by the open writer"
    );
    // ...and the store says so: the node is fresh only up to when j2 was written.
    let now_ms = veto_core::timeutil::now().unix_timestamp() * 1_000;
    let pending = store
        .feed_pending_since(reader.cursor)
        .await
        .expect("pending")
        .expect("j2 is pending");
    assert!(
        pending <= now_ms && pending > now_ms - 3_600_000,
        "{pending}"
    );
    exec(&mut writer, "ROLLBACK").await;
    reader.until(&store, 10, has_key("j2")).await;
    assert_eq!(
        store
            .feed_pending_since(reader.cursor)
            .await
            .expect("pending"),
        None,
        "nothing pending once caught up"
    );
}

/// Per key, the feed is in commit order, so a node replaying it ends where the database is.
/// The race: a batch re-revokes a jti (its transaction already has an id from the rows before
/// it) while a lift of that jti commits; the batch then inserts the jti again. Ordered by
/// transaction id alone, the re-revocation would sort before the lift and a replaying node would
/// drop a jti the database holds (fail-open). The key locks make the batch wait for the lift
/// before it gets an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_the_feed_matches_the_database_when_lift_and_rerevoke_race() {
    const ROUNDS: usize = 150;
    let Some(db) = fresh().await else { return };
    let store = with_acme(&db).await;
    let (batcher, lifter) = (db.store().await, db.store().await);
    let suspended = |jti: &str| suspension("acme", jti, at(1_000));
    for round in 0..ROUNDS {
        let j = format!("race-{round}");
        store
            .insert_revocation(&suspended(&j), &rev_audit(&suspended(&j)))
            .await
            .expect("suspend");
        // The contested jti last, after rows that give the batch its transaction id.
        let batch: Vec<(Revocation, AuditEvent)> = (0..40)
            .map(|i| rev("acme", &format!("fill-{round}-{i}")))
            .chain([suspended(&j)])
            .map(|r| {
                let a = rev_audit(&r);
                (r, a)
            })
            .collect();
        let lift = AuditEvent::new("acme", "ak_test", "revocation.lift", &j);
        let (b, l) = tokio::join!(
            batcher.insert_revocations(&batch),
            lifter.lift_suspension("acme", &j, &lift)
        );
        b.expect("batch");
        l.expect("lift");
    }
    revoke(&store, "marker").await;
    let mut reader = Follower::default();
    reader.until(&store, 500, has_key("marker")).await;
    // Replay as a node's index would: revocations add, lifts and purges remove.
    let mut replayed: HashSet<&str> = HashSet::new();
    for c in &reader.seen {
        match c.kind.name() {
            change::names::REVOCATION => {
                replayed.insert(c.key());
            }
            change::names::REVOCATION_LIFT | change::names::REVOCATION_PURGE => {
                replayed.remove(c.key());
            }
            _ => {}
        }
    }
    let mut mismatched = Vec::new();
    for round in 0..ROUNDS {
        let j = format!("race-{round}");
        let stored = store
            .get_revocation("acme", &j)
            .await
            .expect("get")
            .is_some();
        if stored != replayed.contains(j.as_str()) {
            mismatched.push((j, stored));
        }
    }
    assert!(
        mismatched.is_empty(),
        "replayed feed differs from the database (jti, stored): {mismatched:?}"
    );
}

// ---- concurrency ----------------------------------------------------------------------------------

/// 8 writers (each its own pool, like separate nodes) × 200 revocations, while 2 readers follow
/// the feed in small pages: every reader gets every revocation exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_lose_nothing() {
    const WRITERS: usize = 8;
    const EACH: usize = 200;
    let Some(db) = fresh().await else { return };
    let db = Arc::new(db);
    let _acme = with_acme(&db).await;
    let expected: HashSet<String> = (0..WRITERS)
        .flat_map(|w| (0..EACH).map(move |i| format!("w{w}-{i}")))
        .collect();

    let mut readers = tokio::task::JoinSet::new();
    for (n, limit) in [(0, 7u32), (1, 13u32)] {
        let (db, expected) = (db.clone(), expected.clone());
        readers.spawn(async move {
            let store = db.store().await;
            // One reader wakes on notifications (falling back to a timer), the other polls.
            let mut listener = if n == 0 {
                Some(store.listen_changes().await.expect("listen"))
            } else {
                None
            };
            let mut follower = Follower::default();
            for _ in 0..20_000 {
                follower.catch_up(&store, limit).await;
                let got: HashSet<&str> = follower
                    .seen
                    .iter()
                    .filter(|c| c.kind.name() == change::names::REVOCATION)
                    .map(|c| c.key())
                    .collect();
                if got.len() == expected.len() {
                    break;
                }
                match listener.as_mut() {
                    Some(l) => {
                        let _ = tokio::time::timeout(Duration::from_millis(50), l.recv()).await;
                    }
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            follower.seen
        });
    }
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let db = db.clone();
        writers.spawn(async move {
            let store = db.store().await;
            for i in 0..EACH {
                assert!(revoke(&store, &format!("w{w}-{i}")).await.created);
            }
        });
    }
    while let Some(w) = writers.join_next().await {
        w.expect("writer");
    }
    while let Some(seen) = readers.join_next().await {
        let seen = seen.expect("reader");
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for c in seen
            .iter()
            .filter(|c| c.kind.name() == change::names::REVOCATION)
        {
            *count.entry(c.key()).or_default() += 1;
        }
        assert_eq!(
            count.len(),
            expected.len(),
            "every revocation reached the reader"
        );
        assert!(count.values().all(|n| *n == 1), "each exactly once");
        assert!(count.keys().all(|k| expected.contains(*k)));
    }
}

/// The same revocation sent to 8 nodes at once: one creates it, all answer with the same record,
/// one audit event and one change are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_revocations_create_one() {
    let Some(db) = fresh().await else { return };
    let db = Arc::new(db);
    let store = with_acme(&db).await;
    let r = rev("acme", "same");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (db, r) = (db.clone(), r.clone());
        tasks.spawn(async move {
            let store = db.store().await;
            store
                .insert_revocation(&r, &rev_audit(&r))
                .await
                .expect("revoke")
                .value
        });
    }
    let mut outcomes = Vec::new();
    while let Some(o) = tasks.join_next().await {
        outcomes.push(o.expect("task"));
    }
    assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1);
    assert!(
        outcomes.iter().all(|o| o.record == r),
        "the same original everywhere"
    );
    let trail = store
        .list_audit(
            "acme",
            Some("revocation.create"),
            &veto_store::PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .expect("audit");
    assert_eq!(trail.items.len(), 1, "one audit event");

    // One change for it: write a marker after everything, and read the feed up to it.
    revoke(&store, "marker").await;
    let mut reader = Follower::default();
    reader.until(&store, 100, has_key("marker")).await;
    assert_eq!(reader.keys(), ["", "same", "marker"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_woken_by_committed_changes() {
    let Some(db) = fresh().await else { return };
    let store = with_acme(&db).await;
    let mut listener = store.listen_changes().await.expect("listen");
    revoke(&store, "j1").await;
    // Bounded so that a missing notification fails instead of hanging; not a timing assertion.
    let note = tokio::time::timeout(Duration::from_secs(30), listener.recv())
        .await
        .expect("a notification arrives")
        .expect("listener");
    assert_eq!(note.channel(), veto_store::PG_NOTIFY_CHANNEL);
    assert_eq!(note.payload(), "", "a wake-up only");
}

#[tokio::test]
async fn connect_refuses_a_bad_url_as_unavailable() {
    let err = PgStore::connect("mysql://nope", 1)
        .await
        .expect_err("not a PostgreSQL URL");
    assert!(
        matches!(err, veto_store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the URL parser's error is kept"
    );
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://u@h:5/veto_test", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

// ---- session atomicity comes from PostgreSQL, not from a lock of ours -----------------------

/// A connection with an open transaction that has run `sql` (on `$1` = `id`), which changed one
/// row: the row stays locked until the test ends the transaction.
async fn in_flight(db: &PgTestDb, sql: &'static str, id: &str) -> PgConnection {
    let mut conn = db.raw().await;
    exec(&mut conn, "BEGIN").await;
    let done = sqlx::query(sql)
        .bind(id)
        .execute(&mut conn)
        .await
        .expect(sql);
    assert_eq!(done.rows_affected(), 1, "{sql}");
    conn
}

/// A pre-login consume in flight on another connection (a transaction that deleted the row and
/// has not ended) holds the store's consume of the same row until it ends; then the store's gets
/// nothing if it committed and the record if it rolled back. No advisory lock is involved: this
/// is the row lock and READ COMMITTED's re-check that the concurrent-consume conformance case
/// relies on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prelogin_consume_waits_for_a_concurrent_one() {
    let Some(db) = fresh().await else { return };
    let store = Arc::new(with_acme(&db).await);
    for commit in [true, false] {
        let p = PreLoginRecord {
            id: new_prelogin_id(),
            tenant: "acme".into(),
            state: "s".into(),
            nonce: "n".into(),
            encrypted_pkce_verifier: vec![1, 2, 3],
            redirect_uri: None,
            created_at: at(0),
            expires_at: at(0) + PRELOGIN_TTL,
        };
        store.insert_prelogin(&p).await.expect("insert");
        let sql = "DELETE FROM prelogin WHERE tenant = 'acme' AND id = $1";
        let mut other = in_flight(&db, sql, &p.id).await;
        let take = tokio::spawn({
            let (store, id) = (store.clone(), p.id.clone());
            async move { store.take_prelogin("acme", &id).await.expect("take") }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!take.is_finished(), "the consume waits for the other one");
        exec(&mut other, if commit { "COMMIT" } else { "ROLLBACK" }).await;
        let got = take.await.expect("task");
        assert_eq!(got, (!commit).then_some(p), "commit: {commit}");
    }
}

/// The same for a refresh rotation: one in flight on another connection holds the store's
/// rotation of the same family, which then fails if the other committed (the generation moved)
/// and succeeds if it rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_waits_for_a_concurrent_one() {
    let Some(db) = fresh().await else { return };
    let store = Arc::new(with_acme(&db).await);
    for commit in [true, false] {
        let fam = RefreshFamily::new("acme", "user-1", at(86_400));
        store.create_refresh_family(&fam).await.expect("create");
        let sql = "UPDATE refresh_families SET current_gen = 1 \
                   WHERE tenant = 'acme' AND id = $1 AND current_gen = 0";
        let mut other = in_flight(&db, sql, &fam.id).await;
        let rotate = tokio::spawn({
            let (store, id) = (store.clone(), fam.id.clone());
            async move {
                store
                    .rotate_refresh_family("acme", &id, 0, 1)
                    .await
                    .expect("rotate")
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !rotate.is_finished(),
            "the rotation waits for the other one"
        );
        exec(&mut other, if commit { "COMMIT" } else { "ROLLBACK" }).await;
        assert_eq!(rotate.await.expect("task"), !commit, "commit: {commit}");
        let stored = store
            .get_refresh_family("acme", &fam.id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(stored.current_gen, 1);
    }
}
