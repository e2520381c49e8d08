//! The embeddable verifier (`veto-verify`) against the real binary: it accepts veto's tokens,
//! refuses them once veto revokes them (by jti, subject cutoff, key, session) without asking veto
//! anything per check, resumes after veto restarts, fails closed while veto is out of reach and
//! recovers by itself, and follows a node of a PostgreSQL cluster that another node writes to.
//!
//! Checks go through `Verifier::check`, which is synchronous and performs no I/O at all: every
//! answer comes from the state the verifier received on its stream. A test waits for that state
//! with a generous deadline (polling), never measures how long it took.
mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use veto_verify::{Config, Reason, Verifier, VerifyError};

/// Far above the expected delay (a heartbeat, a reconnect), so a slow machine does not fail.
const LIMIT: Duration = Duration::from_secs(30);

/// A verifier of `tenant` on veto at `base`, with an API key of scope `tokens:verify` that
/// `admin` (any node) creates; ready (first snapshot applied) before it is returned.
async fn verifier(admin: &Server, base: &str, tenant: &str, bound: Duration) -> Verifier {
    let (_, key) = admin.create_api_key(tenant, &["tokens:verify"]).await;
    let config = Config::new(base, tenant, key)
        .max_staleness(bound)
        .backoff(Duration::from_millis(50), Duration::from_millis(500));
    let v = Verifier::start(config).unwrap();
    assert!(
        v.ready(LIMIT).await,
        "the verifier got no current state: {:?}\nveto log:\n{}",
        v.freshness(),
        admin.stderr()
    );
    v
}

/// Waits until the verifier answers `want` (`None`: accepted) for `token`.
async fn answer_becomes(v: &Verifier, token: &str, want: Option<Reason>) {
    eventually_within(&format!("the verifier answers {want:?}"), LIMIT, || async {
        let got = v.check(token, None).err();
        got == want.map(VerifyError::Rejected)
    })
    .await;
}

async fn open_session(srv: &Server, tenant: &str, actor: &str) -> String {
    let b = srv
        .post(
            &format!("/v1/tenants/{tenant}/sessions"),
            json!({"actor_id": actor, "actor_type": "user"}),
        )
        .await
        .expect(StatusCode::CREATED);
    str_of(&b["session"]["id"])
}

#[tokio::test]
async fn what_veto_revokes_the_verifier_refuses_without_asking_veto() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let v = verifier(&srv, &srv.base, "acme", Duration::from_secs(5)).await;
    assert_eq!(v.issuer(), Some(srv.issuer("acme").as_str()));

    // By jti.
    let alice = srv.token("acme", "alice").await;
    answer_becomes(&v, &alice, None).await;
    let claims = v.check(&alice, Some("api")).unwrap();
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    let r = srv
        .revoke("acme", json!({"token": alice, "reason": "logout"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.header("veto-position").is_some());
    answer_becomes(&v, &alice, Some(Reason::Revoked)).await;

    // By subject cutoff (logout everywhere).
    let bob = srv.token("acme", "bob").await;
    answer_becomes(&v, &bob, None).await;
    srv.post(
        "/v1/tenants/acme/subjects/bob/revoke-all",
        json!({"reason": "password changed"}),
    )
    .await
    .expect(StatusCode::OK);
    answer_becomes(&v, &bob, Some(Reason::SubjectRevoked)).await;
    // A token issued afterwards is good.
    let bob_again = srv.token("acme", "bob").await;
    answer_becomes(&v, &bob_again, None).await;

    // By session.
    let sid = open_session(&srv, "acme", "carol").await;
    let carol = str_of(
        &srv.issue("acme", json!({"sub": "carol", "aud": "api", "sid": sid}))
            .await["token"],
    );
    answer_becomes(&v, &carol, None).await;
    srv.post(
        &format!("/v1/tenants/acme/sessions/{sid}/revoke"),
        json!({"reason": "logout"}),
    )
    .await
    .expect(StatusCode::OK);
    answer_becomes(&v, &carol, Some(Reason::SessionRevoked)).await;

    // By key: a key created after the verifier started is fetched for its first token (the
    // one network call a check may cause, `verify`), then revoked.
    let kid = srv.create_key("acme", "EdDSA").await;
    let dave = str_of(
        &srv.issue("acme", json!({"sub": "dave", "aud": "api", "alg": "EdDSA"}))
            .await["token"],
    );
    eventually_within("the new key is fetched", LIMIT, || async {
        v.verify(&dave, None).await.is_ok()
    })
    .await;
    srv.post(
        &format!("/v1/tenants/acme/keys/{kid}/revoke"),
        json!({"reason": "leaked"}),
    )
    .await
    .expect(StatusCode::OK);
    answer_becomes(&v, &dave, Some(Reason::KeyRevoked)).await;

    // The tokens of the other key, not revoked, are still good.
    answer_becomes(&v, &bob_again, None).await;
    // None of these answers asked veto: it ran no check meanwhile.
    let veto_checks = || async {
        let samples = prometheus_samples(&srv.metrics().await);
        sum_samples(&samples, |name, _| name == "veto_checks_total")
    };
    let before = veto_checks().await;
    for token in [&alice, &bob, &carol, &dave, &bob_again] {
        for _ in 0..50 {
            let _ = v.check(token, None);
        }
    }
    assert_eq!(veto_checks().await, before);
    // veto agrees on every one of them.
    for (token, want) in [
        (&alice, Some("revoked")),
        (&bob, Some("subject_revoked")),
        (&carol, Some("session_revoked")),
        (&dave, Some("key_revoked")),
        (&bob_again, None),
    ] {
        assert_eq!(srv.reason("acme", token).await.as_deref(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_resumes_after_veto_restarts() {
    let mut srv = Server::start().await;
    // Through a proxy: the restarted veto listens on a new port, the verifier keeps its address.
    let proxy = Proxy::start(srv.base.trim_start_matches("http://").to_owned()).await;
    let v = verifier(&srv, &proxy.base(), "default", Duration::from_secs(5)).await;
    let before = srv.token("default", "erin").await;
    let after = srv.token("default", "frank").await;
    srv.revoke("default", json!({"token": before}))
        .await
        .expect(StatusCode::CREATED);
    answer_becomes(&v, &before, Some(Reason::Revoked)).await;
    let position = v.freshness().position;
    assert!(position.is_some());

    for crash in [true, false] {
        srv.stop(crash);
        srv.start_again();
        proxy.retarget(srv.base.trim_start_matches("http://").to_owned());
        // What it learnt before the restart stays; what happens after it arrives.
        answer_becomes(&v, &after, None).await;
        assert_eq!(
            v.check(&before, None).err(),
            Some(VerifyError::Rejected(Reason::Revoked))
        );
    }
    srv.revoke("default", json!({"token": after}))
        .await
        .expect(StatusCode::CREATED);
    answer_becomes(&v, &after, Some(Reason::Revoked)).await;
    let f = v.freshness();
    assert!(f.connected && f.current, "{f:?}");
    assert_ne!(f.position, position);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_veto_gone_the_verifier_fails_closed_and_recovers_by_itself() {
    let mut srv = Server::start().await;
    let proxy = Proxy::start(srv.base.trim_start_matches("http://").to_owned()).await;
    let v = verifier(&srv, &proxy.base(), "default", Duration::from_secs(2)).await;
    let tok = srv.token("default", "gina").await;
    answer_becomes(&v, &tok, None).await;

    srv.stop(true);
    // Once the bound has passed, every token whose signature and claims hold is refused...
    answer_becomes(&v, &tok, Some(Reason::IndexStale)).await;
    let f = v.freshness();
    assert!(!f.current && !f.connected, "{f:?}");
    // ...and a forged one keeps its own reason.
    let forged = format!("{}AAAA", &tok[..tok.len() - 4]);
    assert!(matches!(
        v.check(&forged, None),
        Err(VerifyError::Rejected(
            Reason::BadSignature | Reason::Malformed
        ))
    ));

    srv.start_again();
    proxy.retarget(srv.base.trim_start_matches("http://").to_owned());
    answer_becomes(&v, &tok, None).await;
    assert!(v.freshness().connected);
}

/// The verifier follows node B; every write goes to node A. Always on PostgreSQL, whatever
/// `VETO_E2E_BACKEND` says, as the cluster's outage tests are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_to_one_node_it_sees_what_another_node_writes() {
    let db = fresh_database().await;
    let a = Server::start_with(&[("VETO_DATABASE_URL", &db)]).await;
    let b = a.start_node(&[]).await;
    a.create_tenant("acme").await;
    eventually_within("B knows tenant acme", LIMIT, || async {
        b.get("/v1/tenants/acme").await.status == StatusCode::OK
    })
    .await;
    let v = verifier(&a, &b.base, "acme", Duration::from_secs(5)).await;
    let tok = a.token("acme", "hank").await;
    answer_becomes(&v, &tok, None).await;
    a.revoke("acme", json!({"token": tok}))
        .await
        .expect(StatusCode::CREATED);
    answer_becomes(&v, &tok, Some(Reason::Revoked)).await;
    let other = a.token("acme", "ivy").await;
    a.post(
        "/v1/tenants/acme/subjects/ivy/revoke-all",
        json!({"reason": "offboarded"}),
    )
    .await
    .expect(StatusCode::OK);
    answer_becomes(&v, &other, Some(Reason::SubjectRevoked)).await;
}
