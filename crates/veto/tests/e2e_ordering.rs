//! Memory never moves backwards: a node's own writes and its change feed race (the feed may
//! read a change, then this node commits and applies a newer one of the same entity, then the
//! feed applies the older one). The sequences that exposed it, hundreds of times each, with a
//! feed that polls continuously, and a verify after every step: on SQLite and, with
//! `VETO_E2E_BACKEND=postgres`, on PostgreSQL (LISTEN/NOTIFY wake-ups on top of the polling).
mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// A feed that reads all the time, so that reads overlap the writes below.
const BUSY_FEED: &[(&str, &str)] = &[("VETO_FEED_POLL_INTERVAL", "1ms")];

const ROUNDS: usize = 200;

#[tokio::test]
async fn a_lifted_suspension_stays_lifted() {
    let srv = Server::start_with(BUSY_FEED).await;
    let tok = srv.issue("default", json!({"sub": "u"})).await;
    let (token, jti) = (str_of(&tok["token"]), str_of(&tok["jti"]));
    for round in 0..ROUNDS {
        srv.revoke(
            "default",
            json!({"jti": jti, "until": "2099-01-01T00:00:00Z"}),
        )
        .await
        .expect(StatusCode::CREATED);
        assert_eq!(
            srv.reason("default", &token).await.as_deref(),
            Some("suspended"),
            "round {round}"
        );
        let r = srv
            .delete(&format!("/v1/tenants/default/revocations/{jti}"))
            .await;
        assert_eq!(
            r.status,
            StatusCode::NO_CONTENT,
            "round {round}: {}",
            r.text
        );
        assert_eq!(
            srv.reason("default", &token).await,
            None,
            "round {round}: lifted, yet verify still refuses"
        );
    }
}

#[tokio::test]
async fn a_suspended_tenant_stays_suspended() {
    let srv = Server::start_with(BUSY_FEED).await;
    srv.create_tenant("acme").await;
    let token = srv.token("acme", "u").await;
    for round in 0..ROUNDS {
        for on in [true, false, true] {
            set_suspended(&srv, on).await;
        }
        assert_eq!(
            srv.reason("acme", &token).await.as_deref(),
            Some("tenant_suspended"),
            "round {round}: suspend, resume, suspend, and the token is accepted"
        );
        set_suspended(&srv, false).await;
        assert_eq!(srv.reason("acme", &token).await, None, "round {round}");
    }
}

async fn set_suspended(srv: &Server, on: bool) {
    let path = if on { "suspend" } else { "resume" };
    srv.post(&format!("/v1/tenants/acme/{path}"), json!({}))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_retired_key_stays_revoked() {
    let srv = Server::start_with(BUSY_FEED).await;
    srv.create_tenant("acme").await;
    // Fewer rounds: each one generates a key and every node reloads the tenant's keys.
    for round in 0..ROUNDS / 2 {
        let token = srv.token("acme", "u").await;
        let kid = str_of(&decode(&token).0["kid"]);
        // The usual move after a leak: rotate (the leaked key retires), then revoke it.
        srv.post("/v1/tenants/acme/keys/rotate", json!({"alg": "ES256"}))
            .await
            .expect(StatusCode::CREATED);
        srv.post(
            &format!("/v1/tenants/acme/keys/{kid}/revoke"),
            json!({"reason": "leaked"}),
        )
        .await
        .expect(StatusCode::OK);
        assert_eq!(
            srv.reason("acme", &token).await.as_deref(),
            Some("key_revoked"),
            "round {round}: a replayed retire brought the revoked key back"
        );
    }
}
