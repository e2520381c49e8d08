//! The verifier and its layer against a stand-in for veto: a local axum server that serves the
//! RFC 8414 metadata, a JWKS and a revocation stream written by hand after docs/stream.md, each
//! connection of which the test drives event by event.
//!
//! No test asserts how fast anything happens: a test waits (with a generous deadline) for the
//! verifier to reach a state, then asserts what it answers there.
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;
use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
use veto_core::token::{Audience, IssueInput, issue};
use veto_verify::{Alg, Config, Reason, VerifiedToken, Verifier, VerifyError, VerifyLayer};

const TENANT: &str = "acme";
const API_KEY: &str = "vk_test";

/// One stream connection as the fake veto saw it.
struct Conn {
    last_event_id: Option<String>,
    events: mpsc::UnboundedSender<String>,
}

#[derive(Clone)]
struct FakeState {
    issuer: String,
    jwks: Arc<Mutex<Vec<Value>>>,
    jwks_fetches: Arc<AtomicUsize>,
    /// Resume positions answered `400`, as veto answers a position it cannot read.
    refused_positions: Arc<Mutex<HashSet<String>>>,
    conns: mpsc::UnboundedSender<Conn>,
}

struct FakeVeto {
    url: String,
    state: FakeState,
    conns: mpsc::UnboundedReceiver<Conn>,
}

async fn metadata(State(s): State<FakeState>) -> axum::Json<Value> {
    axum::Json(json!({ "issuer": s.issuer }))
}

async fn jwks(State(s): State<FakeState>) -> axum::Json<Value> {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = s.jwks.lock().unwrap().clone();
    axum::Json(json!({ "keys": keys }))
}

async fn stream(State(s): State<FakeState>, headers: HeaderMap) -> axum::response::Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {API_KEY}")) {
        return (StatusCode::UNAUTHORIZED, "").into_response_();
    }
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(p) = &last_event_id
        && s.refused_positions.lock().unwrap().contains(p)
    {
        return (StatusCode::BAD_REQUEST, "").into_response_();
    }
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let _ = s.conns.send(Conn {
        last_event_id,
        events: tx,
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(body))
        .unwrap()
}

trait IntoResponse_ {
    fn into_response_(self) -> axum::response::Response;
}
impl IntoResponse_ for (StatusCode, &'static str) {
    fn into_response_(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

impl FakeVeto {
    async fn start() -> FakeVeto {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::unbounded_channel();
        let state = FakeState {
            issuer: format!("{url}/t/{TENANT}"),
            jwks: Arc::default(),
            jwks_fetches: Arc::default(),
            refused_positions: Arc::default(),
            conns: tx,
        };
        let app = Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server/t/{TENANT}"),
                get(metadata),
            )
            .route(&format!("/t/{TENANT}/.well-known/jwks.json"), get(jwks))
            .route(
                &format!("/v1/tenants/{TENANT}/revocations/stream"),
                get(stream),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeVeto { url, state, conns }
    }

    fn config(&self) -> Config {
        Config::new(&self.url, TENANT, API_KEY)
            .backoff(Duration::from_millis(10), Duration::from_millis(100))
    }

    async fn next_conn(&mut self) -> Conn {
        tokio::time::timeout(Duration::from_secs(20), self.conns.recv())
            .await
            .expect("the verifier connects to the stream")
            .unwrap()
    }

    fn publish(&self, key: &Key) {
        self.state.jwks.lock().unwrap().push(key.jwk.clone());
    }
}

fn send(conn: &Conn, event: &str, id: &str, data: Value) {
    let _ = conn
        .events
        .send(format!("event: {event}\nid: {id}\ndata: {data}\n\n"));
}

fn snapshot(conn: &Conn, id: &str, revocations: Value) {
    send(
        conn,
        "snapshot",
        id,
        json!({"kind": "snapshot", "position": id, "part": 0, "last": true,
            "tenant_suspended": false, "tenant_cutoff": null, "subject_cutoffs": [],
            "revocations": revocations, "revoked_keys": [], "sessions": [],
            "revoked_sessions": [], "revoked_families": []}),
    );
}

fn change(conn: &Conn, id: &str, mut data: Value) {
    data["position"] = json!(id);
    data["at"] = json!(1);
    send(conn, "change", id, data);
}

fn heartbeat(conn: &Conn, id: &str, age_ms: u64) {
    send(
        conn,
        "heartbeat",
        id,
        json!({"kind": "heartbeat", "position": id, "age_ms": age_ms}),
    );
}

struct Key {
    loaded: LoadedKey,
    jwk: Value,
}

fn key(alg: Alg) -> Key {
    let master = MasterKey::generate();
    let now = time::OffsetDateTime::now_utc();
    let rec = generate_signing_key(TENANT, alg, None, &master, now).unwrap();
    Key {
        loaded: LoadedKey::load(&rec, &master).unwrap(),
        jwk: rec.public_jwk.clone().unwrap_or(Value::Null),
    }
}

struct Token {
    token: String,
    jti: String,
}

fn token(fake: &FakeVeto, key: &Key, sub: &str, sid: Option<&str>) -> Token {
    let aud = Audience::One("orders".into());
    let issued = issue(
        &key.loaded,
        &IssueInput {
            issuer: &fake.state.issuer,
            tenant: TENANT,
            sub,
            aud: Some(&aud),
            iat: time::OffsetDateTime::now_utc().unix_timestamp(),
            ttl_seconds: 900,
            nbf: None,
            sid,
            client_id: "client",
            claims: &Map::new(),
            typ: "at+jwt",
        },
    )
    .unwrap();
    Token {
        token: issued.token,
        jti: issued.jti,
    }
}

/// Waits (up to a generous deadline) until the verifier answers `want` for `token`.
async fn until_answer(v: &Verifier, token: &str, want: Result<(), VerifyError>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = v.check(token, None).map(|_| ());
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {got:?}, waiting for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rejected(r: Reason) -> Result<(), VerifyError> {
    Err(VerifyError::Rejected(r))
}

/// A verifier with one ES256 key published, its stream connected and given an empty snapshot.
async fn started(fake: &mut FakeVeto, config: Config) -> (Verifier, Key, Conn) {
    let k = key(Alg::ES256);
    fake.publish(&k);
    let v = Verifier::start(config).unwrap();
    let conn = fake.next_conn().await;
    assert_eq!(conn.last_event_id, None);
    snapshot(&conn, "0-10", json!([]));
    heartbeat(&conn, "0-10", 0);
    assert!(v.ready(Duration::from_secs(20)).await);
    (v, k, conn)
}

#[tokio::test]
async fn every_kind_of_revocation_from_the_stream_is_refused_locally() {
    let mut fake = FakeVeto::start().await;
    let (v, k, conn) = {
        let c = fake.config();
        started(&mut fake, c)
    }
    .await;
    assert_eq!(v.issuer(), Some(fake.state.issuer.as_str()));
    let fetches = fake.state.jwks_fetches.load(Ordering::SeqCst);

    let a = token(&fake, &k, "alice", None);
    let claims = v.check(&a.token, Some("orders")).unwrap();
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert_eq!(
        v.check(&a.token, Some("billing")).map(|_| ()),
        rejected(Reason::WrongAudience)
    );
    // As the ledger writes them: a row per revocation, a lift deletes a suspension's row.
    let x = token(&fake, &k, "xavier", None);
    change(
        &conn,
        "0-11",
        json!({"kind": "revocation", "jti": x.jti, "until": null}),
    );
    until_answer(&v, &x.token, rejected(Reason::Revoked)).await;
    change(
        &conn,
        "0-12",
        json!({"kind": "revocation", "jti": a.jti, "until": 4_000_000_000i64}),
    );
    until_answer(&v, &a.token, rejected(Reason::Suspended)).await;
    change(
        &conn,
        "0-13",
        json!({"kind": "revocation.lift", "jti": a.jti}),
    );
    until_answer(&v, &a.token, Ok(())).await;

    let b = token(&fake, &k, "bob", None);
    let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
    change(
        &conn,
        "0-14",
        json!({"kind": "subject.cutoff", "sub": "bob", "not_before_iat": cutoff}),
    );
    until_answer(&v, &b.token, rejected(Reason::SubjectRevoked)).await;
    assert!(
        v.check(&a.token, None).is_ok(),
        "another subject is untouched"
    );

    let s = token(&fake, &k, "carol", Some("ses-1"));
    assert!(v.check(&s.token, None).is_ok());
    change(
        &conn,
        "0-15",
        json!({"kind": "session.revoke", "session": "ses-1"}),
    );
    until_answer(&v, &s.token, rejected(Reason::SessionRevoked)).await;

    change(&conn, "0-16", json!({"kind": "tenant.suspend"}));
    until_answer(&v, &a.token, rejected(Reason::TenantSuspended)).await;
    change(&conn, "0-17", json!({"kind": "tenant.resume"}));
    until_answer(&v, &a.token, Ok(())).await;

    // A revoked key: its tokens are key_revoked, though the JWKS still lists it.
    change(
        &conn,
        "0-18",
        json!({"kind": "key.revoke", "kid": k.jwk["kid"]}),
    );
    until_answer(&v, &a.token, rejected(Reason::KeyRevoked)).await;

    // None of this asked veto anything: no JWKS fetch since the start, one stream.
    assert_eq!(fake.state.jwks_fetches.load(Ordering::SeqCst), fetches);
    assert!(fake.conns.try_recv().is_err());
    let f = v.freshness();
    assert_eq!(f.position.as_deref(), Some("0-18"));
    assert!(f.connected && f.current);
}

#[tokio::test]
async fn it_resumes_after_the_last_position_applied_never_a_partial_snapshot() {
    let mut fake = FakeVeto::start().await;
    let (v, k, conn) = {
        let c = fake.config();
        started(&mut fake, c)
    }
    .await;
    let a = token(&fake, &k, "alice", None);
    change(
        &conn,
        "0-11",
        json!({"kind": "revocation", "jti": a.jti, "until": null}),
    );
    until_answer(&v, &a.token, rejected(Reason::Revoked)).await;
    // A new snapshot starts (it would forget the revocation) and is cut before its last part.
    send(
        &conn,
        "snapshot",
        "0-20",
        json!({"kind": "snapshot", "position": "0-20", "part": 0, "last": false,
            "tenant_suspended": false, "tenant_cutoff": null, "revocations": []}),
    );
    drop(conn);
    let conn = fake.next_conn().await;
    assert_eq!(conn.last_event_id.as_deref(), Some("0-11"));
    // The old state stood meanwhile.
    assert_eq!(
        v.check(&a.token, None).map(|_| ()),
        rejected(Reason::Revoked)
    );
    heartbeat(&conn, "0-21", 0);
    change(
        &conn,
        "0-22",
        json!({"kind": "revocation.purge", "jti": a.jti}),
    );
    until_answer(&v, &a.token, Ok(())).await;
    assert_eq!(v.freshness().position.as_deref(), Some("0-22"));

    // veto cannot read the position any more: the verifier starts over with a snapshot.
    fake.state
        .refused_positions
        .lock()
        .unwrap()
        .insert("0-22".into());
    drop(conn);
    let conn = fake.next_conn().await;
    assert_eq!(conn.last_event_id, None);
    snapshot(&conn, "0-30", json!([{"jti": a.jti, "until": null}]));
    until_answer(&v, &a.token, rejected(Reason::Revoked)).await;
    assert_eq!(v.freshness().position.as_deref(), Some("0-30"));
}

#[tokio::test]
async fn it_fails_closed_past_the_bound_and_recovers() {
    let mut fake = FakeVeto::start().await;
    let k = key(Alg::EdDSA);
    fake.publish(&k);
    let bound = Duration::from_millis(300);
    let v = Verifier::start(fake.config().max_staleness(bound)).unwrap();
    let t = token(&fake, &k, "alice", None);
    // Before the first snapshot: no state, nothing is accepted.
    let conn = fake.next_conn().await;
    assert_eq!(
        v.check(&t.token, None).map(|_| ()),
        rejected(Reason::IndexStale)
    );
    assert_eq!(v.freshness().age, None);
    snapshot(&conn, "0-1", json!([]));
    until_answer(&v, &t.token, Ok(())).await;
    // No heartbeat: the state ages past the bound, and tokens are refused...
    until_answer(&v, &t.token, rejected(Reason::IndexStale)).await;
    assert!(!v.freshness().current);
    assert!(v.freshness().age.unwrap() > bound);
    // ...but a bad token keeps its own reason.
    let forged = format!("{}x", &t.token[..t.token.len() - 2]);
    assert!(matches!(
        v.check(&forged, None),
        Err(VerifyError::Rejected(
            Reason::BadSignature | Reason::Malformed
        ))
    ));
    // A heartbeat from a node that is itself older than the bound does not help, nor does a
    // change after it (as old as that node said it was).
    heartbeat(&conn, "0-1", 1_000);
    change(&conn, "0-2", json!({"kind": "some.future.kind"}));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while v.freshness().position.as_deref() != Some("0-2") {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        v.check(&t.token, None).map(|_| ()),
        rejected(Reason::IndexStale)
    );
    // A fresh one does.
    heartbeat(&conn, "0-1", 0);
    until_answer(&v, &t.token, Ok(())).await;
}

#[tokio::test]
async fn unknown_kids_fetch_the_jwks_at_most_once_per_interval() {
    let mut fake = FakeVeto::start().await;
    let config = fake.config().jwks_min_interval(Duration::from_secs(3600));
    let (v, _k, _conn) = started(&mut fake, config).await;
    let before = fake.state.jwks_fetches.load(Ordering::SeqCst);
    let newer = key(Alg::PS256);
    fake.publish(&newer);
    let t = token(&fake, &newer, "alice", None);
    // Fetched less than an interval ago: no fetch, however many tokens ask.
    for _ in 0..20 {
        assert_eq!(
            v.verify(&t.token, None).await.map(|_| ()),
            rejected(Reason::UnknownKey)
        );
    }
    assert_eq!(fake.state.jwks_fetches.load(Ordering::SeqCst), before);

    // With a short interval, an unknown kid brings the new key in.
    let mut fake = FakeVeto::start().await;
    let config = fake.config().jwks_min_interval(Duration::from_millis(1));
    let (v, _k, _conn) = started(&mut fake, config).await;
    let newer = key(Alg::RS256);
    fake.publish(&newer);
    let t = token(&fake, &newer, "alice", None);
    let claims = v.verify(&t.token, None).await.unwrap();
    assert_eq!(claims.alg, Alg::RS256);
}

#[tokio::test]
async fn a_key_created_at_veto_is_fetched_when_the_stream_says_so() {
    let mut fake = FakeVeto::start().await;
    let (v, _k, conn) = {
        let c = fake.config();
        started(&mut fake, c)
    }
    .await;
    let newer = key(Alg::ES384);
    fake.publish(&newer);
    let t = token(&fake, &newer, "alice", None);
    change(
        &conn,
        "0-11",
        json!({"kind": "key.insert", "kid": newer.jwk["kid"]}),
    );
    // `check` never fetches; the background task does, told by the stream.
    until_answer(&v, &t.token, Ok(())).await;
}

#[tokio::test]
async fn hmac_tokens_are_refused_with_their_own_reason() {
    let mut fake = FakeVeto::start().await;
    let (v, _k, _conn) = {
        let c = fake.config();
        started(&mut fake, c)
    }
    .await;
    let hs = key(Alg::HS256);
    let t = token(&fake, &hs, "alice", None);
    let before = fake.state.jwks_fetches.load(Ordering::SeqCst);
    let e = v.verify(&t.token, None).await.unwrap_err();
    assert_eq!(e, VerifyError::Symmetric(Alg::HS256));
    assert_eq!(e.code(), "hmac_unsupported");
    // Not a kid worth fetching the JWKS for.
    assert_eq!(fake.state.jwks_fetches.load(Ordering::SeqCst), before);
}

async fn me(axum::Extension(t): axum::Extension<VerifiedToken>) -> String {
    t.sub.unwrap_or_default().into()
}

async fn call(app: &Router, auth: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut req = axum::http::Request::get("/me");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_layer_answers_401_with_the_rfc_6750_challenge_or_passes_the_claims() {
    let mut fake = FakeVeto::start().await;
    let (v, k, conn) = {
        let c = fake.config();
        started(&mut fake, c)
    }
    .await;
    let app = Router::new()
        .route("/me", get(me))
        .layer(VerifyLayer::new(v.clone()).audience("orders"));

    let t = token(&fake, &k, "alice", None);
    let (status, challenge, body) = call(&app, Some(&format!("Bearer {}", t.token))).await;
    assert_eq!(
        (status, challenge, body.as_str()),
        (StatusCode::OK, None, "alice")
    );
    // The scheme is case-insensitive.
    let (status, _, _) = call(&app, Some(&format!("bearer {}", t.token))).await;
    assert_eq!(status, StatusCode::OK);

    // No token (or another scheme): a bare challenge, no error code.
    for auth in [None, Some("Basic YTpi"), Some("Bearer")] {
        let (status, challenge, _) = call(&app, auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{auth:?}");
    }
    let invalid = |reason: &str| {
        Some(format!(
            "Bearer error=\"invalid_token\", error_description=\"{reason}\""
        ))
    };
    let (status, challenge, _) = call(&app, Some("Bearer not.a.token")).await;
    assert_eq!(
        (status, challenge),
        (StatusCode::UNAUTHORIZED, invalid("malformed"))
    );

    let other = FakeVeto::start().await;
    let elsewhere = token(&other, &k, "alice", None);
    let (_, challenge, _) = call(&app, Some(&format!("Bearer {}", elsewhere.token))).await;
    assert_eq!(challenge, invalid("wrong_issuer"));

    let hs = token(&fake, &key(Alg::HS512), "alice", None);
    let (status, challenge, _) = call(&app, Some(&format!("Bearer {}", hs.token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge,
        invalid("HS512 tokens can only be checked by veto itself (token introspection)")
    );

    change(
        &conn,
        "0-11",
        json!({"kind": "revocation", "jti": t.jti, "until": null}),
    );
    until_answer(&v, &t.token, rejected(Reason::Revoked)).await;
    let (status, challenge, _) = call(&app, Some(&format!("Bearer {}", t.token))).await;
    assert_eq!(
        (status, challenge),
        (StatusCode::UNAUTHORIZED, invalid("revoked"))
    );

    // The audience is the layer's.
    let other_aud = Router::new()
        .route("/me", get(me))
        .layer(VerifyLayer::new(v.clone()).audience("billing"));
    let fresh = token(&fake, &k, "bob", None);
    let (_, challenge, _) = call(&other_aud, Some(&format!("Bearer {}", fresh.token))).await;
    assert_eq!(challenge, invalid("wrong_audience"));
}

#[tokio::test]
async fn checks_are_counted_by_outcome_in_the_services_recorder() {
    let mut fake = FakeVeto::start().await;
    let (v, k, _conn) = {
        let c = fake.config();
        started(&mut fake, c).await
    };
    let t = token(&fake, &k, "alice", None);
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        assert!(v.check(&t.token, None).is_ok());
        assert!(v.check(&t.token, None).is_ok());
        assert!(v.check("x.y.z", None).is_err());
        // The verifier hands its counts over once a second from a background task (which a
        // local recorder does not reach), and when it goes away: here.
        drop(v);
    });
    let text = handle.render();
    for line in [
        r#"veto_verify_checks_total{tenant="acme",outcome="active"} 2"#,
        r#"veto_verify_checks_total{tenant="acme",outcome="malformed"} 1"#,
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
}
