//! The mirror's ordering rule, deterministically: changes applied out of order (a feed read that
//! raced this node's own later write) never move memory back to an older state. Real SQLite
//! store, real writes; only the order in which their changes reach memory is chosen here.
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::reason::Reason;
use veto_core::revocation::{Revocation, RevocationStatus};
use veto_core::timeutil;
use veto_server::mirror::Origin;
use veto_store::{Change, Store};

mod common;
use common::{Node, node};
use veto_core::keys::MasterKey;
use veto_server::{AppState, Config};

fn suspension(jti: &str, until: OffsetDateTime) -> Revocation {
    let now = timeutil::now();
    Revocation {
        jti: jti.into(),
        tenant: "acme".into(),
        sub: None,
        expires_at: now + Duration::hours(1),
        revoked_at: now,
        reason: None,
        revoked_by: "test".into(),
        metadata: serde_json::json!({}),
        until: Some(until),
        status: RevocationStatus::of(Some(until)),
    }
}

fn audit(action: &str) -> AuditEvent {
    AuditEvent::new("acme", "test", action, "x")
}

/// A second node on the same store, following it through the feed.
async fn follower(n: &Node) -> AppState {
    AppState::load(
        Config::new("http://127.0.0.1:1"),
        n.store.clone(),
        MasterKey::generate(),
        veto_server::metrics::install(),
    )
    .await
    .expect("load")
}

fn jti_state(n: &Node, jti: &str) -> Option<Reason> {
    n.state
        .index
        .jti_state("acme", jti, timeutil::now().unix_timestamp())
}

#[tokio::test]
async fn a_lift_applied_first_is_not_undone_by_the_older_suspension_from_the_feed() {
    let n = node().await;
    let until = timeutil::now() + Duration::hours(1);
    let suspend = n
        .store
        .insert_revocation(&suspension("j1", until), &audit("revocation.suspend"))
        .await
        .expect("suspend")
        .changes;
    let lift = n
        .store
        .lift_suspension("acme", "j1", &audit("revocation.lift"))
        .await
        .expect("lift")
        .changes;
    assert_eq!((suspend.len(), lift.len()), (1, 1));
    assert!(
        suspend[0].cursor < lift[0].cursor,
        "each write knows its position"
    );

    // The node applies its own writes, the lift last; then a feed read that began before the
    // lift committed delivers the suspension.
    n.state
        .mirror
        .apply(&suspend, Origin::Local)
        .await
        .expect("apply");
    n.state
        .mirror
        .apply(&lift, Origin::Local)
        .await
        .expect("apply");
    assert_eq!(jti_state(&n, "j1"), None);
    n.state
        .mirror
        .apply(&suspend, Origin::Feed)
        .await
        .expect("apply");
    assert_eq!(jti_state(&n, "j1"), None, "the older suspension came back");

    // The lift itself, read from the feed later, changes nothing either.
    let both: Vec<Change> = suspend.iter().chain(&lift).cloned().collect();
    n.state
        .mirror
        .apply(&both, Origin::Feed)
        .await
        .expect("apply");
    assert_eq!(jti_state(&n, "j1"), None);
}

#[tokio::test]
async fn a_replayed_resume_does_not_bring_a_suspended_tenant_back() {
    let n = node().await;
    let mut changes = Vec::new();
    for (suspended, action) in [
        (true, "tenant.suspend"),
        (false, "tenant.resume"),
        (true, "tenant.suspend"),
    ] {
        let w = n
            .store
            .set_tenant_suspended("acme", suspended, &audit(action))
            .await
            .expect("write");
        changes.push(w.changes);
    }
    let [first, resume, second] = [&changes[0], &changes[1], &changes[2]];
    // Local writes applied in commit order, then the feed replays the middle one alone (a
    // read that saw the resume committed but not yet the second suspension).
    for c in [first, resume, second] {
        n.state.mirror.apply(c, Origin::Local).await.expect("apply");
    }
    assert!(n.state.index.tenant("acme").suspended);
    n.state
        .mirror
        .apply(resume, Origin::Feed)
        .await
        .expect("apply");
    assert!(
        n.state.index.tenant("acme").suspended,
        "a replayed resume re-admitted a suspended tenant's tokens"
    );
    assert_eq!(n.state.tenant("acme").map(|t| t.suspended), Some(true));

    // Two local writes whose applies overtake each other: the older one is skipped.
    let resume_again = n
        .store
        .set_tenant_suspended("acme", false, &audit("tenant.resume"))
        .await
        .expect("resume")
        .changes;
    let suspend_again = n
        .store
        .set_tenant_suspended("acme", true, &audit("tenant.suspend"))
        .await
        .expect("suspend")
        .changes;
    n.state
        .mirror
        .apply(&suspend_again, Origin::Local)
        .await
        .expect("apply");
    n.state
        .mirror
        .apply(&resume_again, Origin::Local)
        .await
        .expect("apply");
    assert!(n.state.index.tenant("acme").suspended);
}

#[tokio::test]
async fn once_the_feed_has_read_past_a_write_newer_changes_still_apply() {
    let n = node().await;
    let until = timeutil::now() + Duration::hours(1);
    let suspend = n
        .store
        .insert_revocation(&suspension("j2", until), &audit("revocation.suspend"))
        .await
        .expect("suspend")
        .changes;
    n.state
        .mirror
        .apply(&suspend, Origin::Local)
        .await
        .expect("apply");
    assert_eq!(jti_state(&n, "j2"), Some(Reason::Suspended));
    // The feed follower reads the log and forgets what it has read past.
    n.state.catch_up().await.expect("catch up");
    let lift = n
        .store
        .lift_suspension("acme", "j2", &audit("revocation.lift"))
        .await
        .expect("lift")
        .changes;
    n.state
        .mirror
        .apply(&lift, Origin::Feed)
        .await
        .expect("apply");
    assert_eq!(jti_state(&n, "j2"), None);
    // And a second catch-up (reading the lift) leaves it lifted.
    n.state.catch_up().await.expect("catch up");
    assert_eq!(jti_state(&n, "j2"), None);
}

/// A purge drops expired cutoffs from the store and, through the feed, from every node's memory
/// (issue 11, finding 6): the purging node and the others end up holding the same state.
#[tokio::test]
async fn purged_cutoffs_leave_the_memory_of_every_node() {
    let n = node().await;
    let other = follower(&n).await;
    let now = timeutil::now();
    for sub in [Some("alice"), None] {
        let c = veto_core::revocation::Cutoff {
            tenant: "acme".into(),
            sub: sub.map(str::to_owned),
            not_before_iat: now.unix_timestamp() + 1,
            expires_at: now + Duration::seconds(60),
        };
        let w = n
            .store
            .set_cutoff(&c, &audit("revoke_all"))
            .await
            .expect("cutoff");
        n.state
            .mirror
            .apply(&w.changes, Origin::Local)
            .await
            .expect("apply");
    }
    other.catch_up().await.expect("catch up");
    for node in [&n.state, &other] {
        assert!(node.index.min_iat("acme", "alice").is_some());
    }
    // Purged once every token they could reject has expired.
    let purged = n
        .store
        .purge_batch(now + Duration::hours(1), 100)
        .await
        .expect("purge");
    assert_eq!(purged.value.0.cutoffs, 2);
    n.state
        .mirror
        .apply(&purged.changes, Origin::Local)
        .await
        .expect("apply");
    other.catch_up().await.expect("catch up");
    for (name, node) in [("purging node", &n.state), ("other node", &other)] {
        assert_eq!(node.index.min_iat("acme", "alice"), None, "{name}");
        assert_eq!(node.index.tenant("acme").cutoff, None, "{name}");
    }
}

/// The revocation index counts the holders of a jti's fingerprint, one per ledger row, so a node
/// following the feed must count each row once however the changes of a jti are grouped into
/// reads: a lift and a new suspension read together replace the row, and the next lift, read
/// alone, leaves nothing behind. (Applying only the last change of the read would have counted
/// the new suspension as a second holder, and the jti would have stayed suspended after its lift.)
#[tokio::test]
async fn a_jti_lifted_and_suspended_again_in_one_read_is_still_one_row() {
    let n = node().await;
    let other = follower(&n).await;
    let until = timeutil::now() + Duration::hours(1);
    let later = until + Duration::hours(1);
    let other_state = |jti: &str| {
        other
            .index
            .jti_state("acme", jti, timeutil::now().unix_timestamp())
    };
    n.store
        .insert_revocation(&suspension("j3", until), &audit("revocation.suspend"))
        .await
        .expect("suspend");
    other.catch_up().await.expect("catch up");
    assert_eq!(other_state("j3"), Some(Reason::Suspended));
    // Lifted and suspended again between two reads of the other node.
    n.store
        .lift_suspension("acme", "j3", &audit("revocation.lift"))
        .await
        .expect("lift");
    n.store
        .insert_revocation(&suspension("j3", later), &audit("revocation.suspend"))
        .await
        .expect("suspend again");
    other.catch_up().await.expect("catch up");
    assert_eq!(other_state("j3"), Some(Reason::Suspended));
    assert_eq!(other.index.len(), 1);
    // Suspended and lifted between two reads: nothing to count.
    n.store
        .insert_revocation(&suspension("j4", until), &audit("revocation.suspend"))
        .await
        .expect("suspend");
    n.store
        .lift_suspension("acme", "j4", &audit("revocation.lift"))
        .await
        .expect("lift");
    // And the second suspension of j3 lifted, read alone.
    n.store
        .lift_suspension("acme", "j3", &audit("revocation.lift"))
        .await
        .expect("lift");
    other.catch_up().await.expect("catch up");
    assert_eq!(
        other_state("j3"),
        None,
        "lifted, with no holder left behind"
    );
    assert_eq!(other_state("j4"), None);
    assert_eq!(other.index.len(), 0);
}
