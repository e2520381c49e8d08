//! The status list part of the `Store` conformance suite (issue 14), run by every backend that
//! runs its parent (see there): lists, entries, the tenant setting, their changes, the purge of
//! expired entries and the start-up snapshot.
use std::collections::BTreeSet;
use std::sync::Arc;

use veto_store::change::names::{
    STATUS_ENTRY_ALLOCATE, STATUS_ENTRY_PURGE, STATUS_LIST_CREATE, TENANT_STATUS_LIST,
};
use veto_store::{
    EntryFacts, NewStatusEntry, NewStatusList, StatusEntry, StatusListInfo, Store, StoreError,
    Written,
};

use super::{
    assert_no_change_since, at, audit, changes_before_marker, count_audit, feed_end,
    open_with_tenants, said, what,
};
use crate::fresh;

// ---- fixtures ---------------------------------------------------------------------------------

/// An entry with every optional claim, expiring at `exp` (fixture offset).
fn entry<'a>(tenant: &'a str, jti: &'a str, exp: i64) -> NewStatusEntry<'a> {
    NewStatusEntry {
        tenant,
        jti,
        sub: Some("alice"),
        sid: Some("ses-1"),
        kid: "k1",
        fam: Some("fam-1"),
        iat: at(0).unix_timestamp(),
        exp: at(exp).unix_timestamp(),
    }
}

fn list(id: &str, size: u32) -> NewStatusList<'_> {
    NewStatusList {
        id,
        size,
        created_at: at(5),
    }
}

async fn allocate(
    store: &dyn Store,
    e: &NewStatusEntry<'_>,
    candidates: &[u32],
    new: &NewStatusList<'_>,
) -> Written<StatusEntry> {
    store
        .allocate_status_entry(e, candidates, new)
        .await
        .expect("allocate a status list entry")
}

fn slot(w: &Written<StatusEntry>) -> (String, u32) {
    (w.value.list.clone(), w.value.idx)
}

// ---- allocation -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_never_gives_an_index_twice() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let store = store.as_ref();
    // The first three candidates all fall on index 5; the rest walk the list.
    let candidates: Vec<u32> = [5, 5 + 64, 5 + 128].into_iter().chain(0..64).collect();
    let mut taken = Vec::new();
    for i in 0..64 {
        let jti = format!("j{i}");
        let w = allocate(
            store,
            &entry("acme", &jti, 1_000),
            &candidates,
            &list("l1", 64),
        )
        .await;
        taken.push(slot(&w));
    }
    assert_eq!(taken[0], ("l1".to_owned(), 5), "the first free candidate");
    assert_eq!(
        taken[1],
        ("l1".to_owned(), 0),
        "5 is taken: the next candidate"
    );
    let distinct: BTreeSet<_> = taken.iter().cloned().collect();
    assert_eq!(distinct.len(), 64, "no index twice: {taken:?}");
    let expected: BTreeSet<_> = (0..64).map(|i| ("l1".to_owned(), i)).collect();
    assert_eq!(distinct, expected, "the whole list, and only it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_never_share_an_index() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store: Arc<dyn Store> = open_with_tenants(db, &["acme"]).await.into();
    // 8 writers, 16 tokens each, candidates from only 40 values: they collide all the time,
    // lists fill up and several writers find the current one full at once.
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for n in 0..16u32 {
                let jti = format!("t{task}-{n}");
                let id = format!("l-{task}-{n}");
                let candidates: Vec<u32> = (0..4)
                    .map(|k| (task * 7919 + n * 104_729 + k * 1_299_709) % 40)
                    .collect();
                let w = store
                    .allocate_status_entry(
                        &entry("acme", &jti, 1_000),
                        &candidates,
                        &list(&id, 1024),
                    )
                    .await
                    .expect("allocate");
                got.push((w.value.clone(), w.changes.len()));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let lists = store.status_lists("acme").await.expect("lists");
    let slots: BTreeSet<(String, u32)> = all.iter().map(|(e, _)| (e.list.clone(), e.idx)).collect();
    assert_eq!(slots.len(), 128, "no index given twice");
    assert!(
        lists.len() >= 128 / 40,
        "full lists were followed by new ones"
    );
    let created = all.iter().filter(|(_, changes)| *changes == 2).count();
    assert_eq!(
        created,
        lists.len(),
        "each list created by exactly one allocation"
    );
    for (e, _) in &all {
        assert!(e.idx < 40, "{e:?}");
        let stored = store
            .status_entry("acme", &e.list, e.idx)
            .await
            .expect("read");
        assert_eq!(stored.as_ref(), Some(e), "the entry as returned");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_list_is_followed_by_the_new_one() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let store = store.as_ref();
    assert!(store.status_lists("acme").await.expect("lists").is_empty());
    let every = [0, 1, 2, 3];
    for i in 0..4 {
        let w = allocate(
            store,
            &entry("acme", &format!("j{i}"), 1_000),
            &every,
            &list("l1", 4),
        )
        .await;
        assert_eq!(slot(&w), ("l1".to_owned(), i));
    }
    // Full: the new list becomes current, at candidates[0] % size.
    let w = allocate(store, &entry("acme", "j4", 1_000), &[6, 1], &list("l2", 4)).await;
    assert_eq!(slot(&w), ("l2".to_owned(), 2));
    assert_eq!(
        what(&w.changes),
        [
            said("acme", STATUS_LIST_CREATE, "l2", None),
            said("acme", STATUS_ENTRY_ALLOCATE, "l2", Some(2)),
        ]
    );
    // The current list is the newest, and a list not needed is not created.
    let w = allocate(store, &entry("acme", "j5", 1_000), &[1], &list("unused", 4)).await;
    assert_eq!(slot(&w), ("l2".to_owned(), 1));
    assert_eq!(
        what(&w.changes),
        [said("acme", STATUS_ENTRY_ALLOCATE, "l2", Some(1))]
    );
    // Candidates that all fall on taken indexes move on even though the list has room.
    let w = allocate(
        store,
        &entry("acme", "j6", 1_000),
        &[1, 2, 5],
        &list("l3", 8),
    )
    .await;
    assert_eq!(slot(&w), ("l3".to_owned(), 1));
    let lists = store.status_lists("acme").await.expect("lists");
    let info = |id: &str, size| StatusListInfo {
        tenant: "acme".into(),
        id: id.into(),
        size,
        created_at: at(5),
    };
    assert_eq!(
        lists,
        [info("l3", 8), info("l2", 4), info("l1", 4)],
        "newest first"
    );
    // A list id the tenant has is a conflict, writing nothing.
    let all: Vec<u32> = (0..8).collect();
    for i in 0..7 {
        allocate(
            store,
            &entry("acme", &format!("f{i}"), 1_000),
            &all,
            &list("unused", 1),
        )
        .await;
    }
    let before_conflict = feed_end(store).await;
    let err = store
        .allocate_status_entry(&entry("acme", "again", 1_000), &[0], &list("l1", 4))
        .await
        .expect_err("l3 is full and l1 exists");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_no_change_since(store, before_conflict, "a conflicting list id").await;
    let ids: Vec<String> = store
        .status_lists("acme")
        .await
        .expect("lists")
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, ["l3", "l2", "l1"], "no list named unused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_reads_back_with_every_field_and_its_changes_reach_the_feed() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let store = store.as_ref();
    let before = feed_end(store).await;
    let full = allocate(store, &entry("acme", "j1", 1_000), &[7], &list("l1", 16)).await;
    let bare = NewStatusEntry {
        sub: None,
        sid: None,
        fam: None,
        kid: "k2",
        ..entry("acme", "j2", 2_000)
    };
    let bare = allocate(store, &bare, &[7, 23, 9], &list("l9", 16)).await;
    let expected = StatusEntry {
        tenant: "acme".into(),
        list: "l1".into(),
        idx: 7,
        facts: EntryFacts {
            jti: "j1".into(),
            sub: Some("alice".into()),
            sid: Some("ses-1".into()),
            kid: "k1".into(),
            fam: Some("fam-1".into()),
            iat: at(0).unix_timestamp(),
            exp: at(1_000).unix_timestamp(),
        },
    };
    assert_eq!(full.value, expected);
    let expected_bare = StatusEntry {
        idx: 9,
        facts: EntryFacts {
            jti: "j2".into(),
            sub: None,
            sid: None,
            kid: "k2".into(),
            fam: None,
            exp: at(2_000).unix_timestamp(),
            ..expected.facts.clone()
        },
        ..expected.clone()
    };
    assert_eq!(bare.value, expected_bare, "7 and 23 % 16 are taken");
    let read =
        |l: &'static str, i| async move { store.status_entry("acme", l, i).await.expect("read") };
    assert_eq!(read("l1", 7).await, Some(expected));
    assert_eq!(read("l1", 9).await, Some(expected_bare));
    assert_eq!(read("l1", 8).await, None);
    assert_eq!(read("l9", 7).await, None);
    assert_eq!(
        store.status_entry("globex", "l1", 7).await.expect("read"),
        None
    );

    let logged = changes_before_marker(store, before).await;
    let written: Vec<_> = full.changes.iter().chain(&bare.changes).cloned().collect();
    assert_eq!(
        logged, written,
        "the feed holds exactly what the writes returned"
    );
    assert_eq!(
        what(&logged),
        [
            said("acme", STATUS_LIST_CREATE, "l1", None),
            said("acme", STATUS_ENTRY_ALLOCATE, "l1", Some(7)),
            said("acme", STATUS_ENTRY_ALLOCATE, "l1", Some(9)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tenant_gets_no_entry_and_nothing_is_written() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme"]).await;
    let store = store.as_ref();
    let before = feed_end(store).await;
    let err = store
        .allocate_status_entry(&entry("nobody", "j1", 1_000), &[1], &list("l1", 8))
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
    let err = store
        .set_tenant_status_list("nobody", true, &audit("nobody", "tenant.update", "nobody"))
        .await
        .expect_err("unknown tenant");
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");
    assert_no_change_since(store, before, "writes for an unknown tenant").await;
    assert!(
        store
            .status_lists("nobody")
            .await
            .expect("lists")
            .is_empty()
    );
    assert_eq!(
        store.tenant_status_list("nobody").await.expect("read"),
        None
    );
    assert_eq!(count_audit(store, "nobody", "tenant.update").await, 0);
    // The store still writes.
    let w = allocate(store, &entry("acme", "j1", 1_000), &[1], &list("l1", 8)).await;
    assert_eq!(slot(&w), ("l1".to_owned(), 1));
}

// ---- purge ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_frees_expired_entries_only() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let store = store.as_ref();
    let new = list("l1", 8);
    allocate(store, &entry("acme", "old1", 10), &[1], &new).await;
    allocate(store, &entry("globex", "old2", 20), &[2], &new).await;
    allocate(store, &entry("acme", "old3", 30), &[3], &new).await;
    allocate(store, &entry("acme", "edge", 100), &[4], &new).await; // strictly-before only
    allocate(store, &entry("acme", "live", 1_000), &[5], &new).await;
    let before = feed_end(store).await;

    let (counts, _) = store.purge_batch(at(100), 2).await.expect("purge").value;
    assert_eq!(counts.status_entries, 2, "bounded by the batch");
    let (counts, _) = store.purge_batch(at(100), 2).await.expect("purge").value;
    assert_eq!(counts.status_entries, 1);
    let (counts, _) = store.purge_batch(at(100), 2).await.expect("purge").value;
    assert_eq!(counts.status_entries, 0);

    let mut purged: Vec<_> = changes_before_marker(store, before)
        .await
        .iter()
        .map(|c| {
            let (kind, key, value) = c.kind.to_row();
            assert_eq!(kind, STATUS_ENTRY_PURGE);
            (c.tenant.clone(), key.to_owned(), value)
        })
        .collect();
    purged.sort();
    let key = |t: &str, i| (t.to_owned(), "l1".to_owned(), Some(i));
    assert_eq!(purged, [key("acme", 1), key("acme", 3), key("globex", 2)]);
    for (tenant, idx, kept) in [
        ("acme", 1, false),
        ("globex", 2, false),
        ("acme", 3, false),
        ("acme", 4, true),
        ("acme", 5, true),
    ] {
        let e = store.status_entry(tenant, "l1", idx).await.expect("read");
        assert_eq!(e.is_some(), kept, "{tenant} {idx}");
    }
    // The freed index is given again; the live one is not.
    let w = allocate(
        store,
        &entry("acme", "next", 1_000),
        &[5, 1],
        &list("l2", 8),
    )
    .await;
    assert_eq!(slot(&w), ("l1".to_owned(), 1));
    assert_eq!(w.value.facts.jti, "next");
}

// ---- the tenant setting and the start-up snapshot ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_setting_is_audited_logged_and_read_back() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex"]).await;
    let store = store.as_ref();
    let setting = |t: &'static str| async move { store.tenant_status_list(t).await.expect("read") };
    // Sets acme's setting; checks its change and that it reads back, globex's untouched.
    let set = |on: bool| async move {
        let w = store
            .set_tenant_status_list("acme", on, &audit("acme", "tenant.status_list", "acme"))
            .await
            .expect("set");
        let value = Some(i64::from(on));
        assert_eq!(
            what(&w.changes),
            [said("acme", TENANT_STATUS_LIST, "", value)]
        );
        assert_eq!(setting("acme").await, Some(on));
        assert_eq!(setting("globex").await, Some(false));
        w
    };
    assert_eq!(setting("acme").await, Some(false), "off by default");
    let before = feed_end(store).await;
    let on = set(true).await;
    let state = store.load_state(at(0)).await.expect("load_state");
    assert_eq!(state.status_list_tenants, ["acme"]);
    let off = set(false).await;
    assert_eq!(count_audit(store, "acme", "tenant.status_list").await, 2);
    let logged = changes_before_marker(store, before).await;
    let written: Vec<_> = on.changes.iter().chain(&off.changes).cloned().collect();
    assert_eq!(logged, written);
    // The setting is not the tenant's suspension.
    let t = store.get_tenant("acme").await.expect("read").expect("acme");
    assert!(!t.suspended);
    assert!(
        store
            .load_state(at(0))
            .await
            .expect("load")
            .status_list_tenants
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_state_carries_lists_entries_and_the_setting() {
    let Some(db) = &fresh().await else {
        return;
    };
    let store = open_with_tenants(db, &["acme", "globex", "initech"]).await;
    let store = store.as_ref();
    for t in ["globex", "acme"] {
        store
            .set_tenant_status_list(t, true, &audit(t, "tenant.status_list", t))
            .await
            .expect("set");
    }
    let mut entries = Vec::new();
    for i in 0..3 {
        let id = format!("a{}", i / 2 + 1);
        let w = allocate(
            store,
            &entry("acme", &format!("a{i}"), 1_000),
            &[0, 1, 2],
            &list(&id, 2),
        )
        .await;
        entries.push(w.value);
    }
    let w = allocate(store, &entry("globex", "g0", 10), &[3], &list("g1", 4)).await;
    entries.push(w.value);

    let state = store.load_state(at(0)).await.expect("load_state");
    assert_eq!(state.status_list_tenants, ["acme", "globex"]);
    let lists: Vec<(String, String, u32)> = state
        .status_lists
        .iter()
        .map(|l| (l.tenant.clone(), l.id.clone(), l.size))
        .collect();
    let expected = [("acme", "a1", 2), ("acme", "a2", 2), ("globex", "g1", 4)]
        .map(|(t, l, n)| (t.to_owned(), l.to_owned(), n));
    assert_eq!(
        lists, expected,
        "each tenant's lists, its newest (current) last"
    );
    let mut got = state.status_entries.clone();
    got.sort_by(|a, b| (&a.tenant, &a.list, a.idx).cmp(&(&b.tenant, &b.list, b.idx)));
    entries.sort_by(|a, b| (&a.tenant, &a.list, a.idx).cmp(&(&b.tenant, &b.list, b.idx)));
    assert_eq!(got, entries);

    // After the purge the snapshot no longer has the expired entry.
    store.purge_batch(at(100), 100).await.expect("purge");
    let state = store.load_state(at(0)).await.expect("load_state");
    assert_eq!(state.status_entries.len(), 3);
    assert!(state.status_entries.iter().all(|e| e.tenant == "acme"));
    assert_eq!(state.status_lists.len(), 3, "lists stay");
}
