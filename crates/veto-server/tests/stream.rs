//! A revocation stream whose subscriber stops reading is dropped once it falls behind the
//! node's bounded buffers, instead of making the node hold ever more for it; a subscriber that
//! reads keeps every change. Real SQLite store and real writes; the feed is read by hand so that
//! the number of reads is known.
use std::time::Duration;

use futures_util::StreamExt;
use veto_core::audit::AuditEvent;
use veto_core::revocation::{Revocation, RevocationStatus};
use veto_core::timeutil;
use veto_server::AppState;
use veto_server::stream::Streams;
use veto_store::{SqliteStore, Store};

mod common;

fn revocation(jti: &str) -> Revocation {
    let now = timeutil::now();
    Revocation {
        jti: jti.into(),
        tenant: "acme".into(),
        sub: None,
        expires_at: now + time::Duration::hours(1),
        revoked_at: now,
        reason: None,
        revoked_by: "test".into(),
        metadata: serde_json::json!({}),
        until: None,
        status: RevocationStatus::Revoked,
    }
}

/// `reads` feed reads of one revocation each, written straight to the store (as another node
/// would) and read by the node's feed.
async fn revoke_in_reads(state: &AppState, store: &SqliteStore, prefix: &str, reads: usize) {
    for i in 0..reads {
        let r = revocation(&format!("{prefix}-{i}"));
        let audit = AuditEvent::new("acme", "test", "revocation.create", &r.jti);
        store.insert_revocation(&r, &audit).await.expect("revoke");
        state.catch_up().await.expect("feed read");
    }
}

/// A key of acme that may read its stream, as the node knows it once the feed brought it.
async fn stream_key(state: &AppState, store: &SqliteStore) -> [u8; 32] {
    let key = veto_core::apikey::ApiKeyRecord {
        id: "ak_stream".into(),
        tenant: Some("acme".into()),
        name: "stream".into(),
        scopes: vec![veto_core::apikey::Scope::TokensVerify],
        key_hash: [7; 32],
        created_at: timeutil::now(),
    };
    let audit = AuditEvent::new("acme", "test", "api_key.create", &key.id);
    store.insert_api_key(&key, &audit).await.expect("api key");
    state.catch_up().await.expect("feed read");
    key.key_hash
}

fn streams(state: &AppState) -> Streams {
    Streams {
        store: state.store.clone(),
        feed: state.feed.clone(),
        // Out of the way: this test counts changes, not heartbeats.
        heartbeat: Duration::from_secs(3_600),
        api_keys: state.api_keys.clone(),
    }
}

const READS: usize = 200;

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_and_one_that_reads_gets_everything() {
    let node = common::node().await;
    let (state, store) = (&node.state, &node.store);
    let streams = streams(state);
    let key = stream_key(state, store).await;
    let mut stalled = Box::pin(streams.open("acme".into(), key, None).await.expect("open"));
    let mut reading = Box::pin(streams.open("acme".into(), key, None).await.expect("open"));
    // Both get their snapshot; then one stops reading.
    assert!(stalled.next().await.is_some());
    assert!(reading.next().await.is_some());
    let reader = tokio::spawn(async move {
        let mut changes = 0;
        while changes < READS {
            let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(30), reading.next())
                .await
                .expect("the reading subscriber keeps getting events")
            else {
                panic!("the reading subscriber's stream ended");
            };
            changes += 1;
        }
        changes
    });
    revoke_in_reads(state, store, "j", READS).await;
    assert_eq!(reader.await.expect("reader"), READS);

    // The stalled one: what was queued for it, then the end, far short of every change.
    let mut got = 0;
    while let Some(e) = tokio::time::timeout(Duration::from_secs(30), stalled.next())
        .await
        .expect("the stalled stream ends rather than hangs")
    {
        assert!(e.is_ok());
        got += 1;
    }
    assert!(
        got < READS,
        "a subscriber that fell behind is dropped (it got {got} of {READS} changes)"
    );
}
