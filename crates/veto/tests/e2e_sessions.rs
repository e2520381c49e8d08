//! Server-side sessions, pre-login state, session keys and refresh-token rotation, against the
//! real binary: the contract's "Sessions" section point by point.
//!
//! Expiry without sleeping: the domain refuses idle timeouts under a minute (a shorter one would
//! be meaningless next to the one-minute touch coalescing), so waiting for a real expiry would
//! take minutes. Instead, the server is restarted (`kill -9`) on the same data with its clock
//! moved forward by libfaketime (`LD_PRELOAD`, the Debian package `libfaketime`, which
//! `scripts/test.sh` installs): the binary under test is unchanged and has no test-only knob; it
//! simply wakes up later. Offsets leave tens of seconds of slack for the real time the test takes.
mod common;
use common::*;
use serde_json::{Value, json};

const T: &str = "/v1/tenants/default";

/// The contract's session object.
const SESSION_FIELDS: [&str; 12] = [
    "id",
    "tenant",
    "actor_id",
    "actor_type",
    "created_at",
    "last_seen_at",
    "idle_expires_at",
    "absolute_expires_at",
    "ip_address",
    "user_agent",
    "revoked_at",
    "revoke_reason",
];

/// Restarts `srv` (`kill -9`) with its wall clock `secs` ahead of the real one. Monotonic time
/// stays real, so the runtime's timers behave.
fn restart_later(srv: &mut Server, secs: i64) {
    let lib = faketime_lib();
    let offset = format!("+{secs}");
    srv.restart_with(&[
        ("LD_PRELOAD", lib),
        ("FAKETIME", &offset),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
}

fn secs(v: &Value) -> i64 {
    rfc3339(v).unix_timestamp()
}

/// Opens a session of `actor` in `tenant` as admin; the 201 body.
async fn open(srv: &Server, tenant: &str, body: Value) -> Value {
    srv.post(&format!("/v1/tenants/{tenant}/sessions"), body)
        .await
        .expect(StatusCode::CREATED)
}

/// Opens a session of user `actor` with the given idle and absolute timeouts.
async fn open_timed(srv: &Server, actor: &str, idle: i64, absolute: i64) -> Value {
    let body = json!({"actor_id": actor, "actor_type": "user", "idle_timeout_seconds": idle, "absolute_timeout_seconds": absolute});
    open(srv, "default", body).await
}

async fn open_for(srv: &Server, actor: &str) -> Value {
    open(
        srv,
        "default",
        json!({"actor_id": actor, "actor_type": "user"}),
    )
    .await
}

async fn validate(srv: &Server, tenant: &str, body: Value) -> Resp {
    srv.post(&format!("/v1/tenants/{tenant}/sessions/validate"), body)
        .await
}

/// Validates `cookie` without touching; the session on success.
async fn check(srv: &Server, cookie: &str) -> Result<Value, String> {
    let r = validate(srv, "default", json!({"cookie": cookie, "touch": false})).await;
    match r.status {
        StatusCode::OK => Ok(r.json["session"].clone()),
        _ => Err(rejection(&r)),
    }
}

/// The `reason` of a 401 problem (asserting its shape).
#[track_caller]
fn rejection(r: &Resp) -> String {
    assert_problem(r, 401);
    assert!(
        r.header("www-authenticate").is_none(),
        "a rejected cookie or refresh token is not an API key problem: {:?}",
        r.headers
    );
    str_of(&r.json["reason"])
}

async fn issue_with_sid(srv: &Server, sid: &str) -> String {
    let body = json!({"sub": "u", "sid": sid, "ttl_seconds": 86_400});
    str_of(&srv.issue("default", body).await["token"])
}

async fn audit(srv: &Server, action: &str) -> Vec<Value> {
    srv.get(&format!("{T}/audit?action={action}")).await.items()
}

// ---- create, validate, touch ------------------------------------------------------------------

#[tokio::test]
async fn create_and_validate_with_computed_expiries() {
    let srv = Server::start().await;
    let out = open(
        &srv,
        "default",
        json!({"actor_id": "alice", "actor_type": "user", "ip_address": "2001:DB8::1", "user_agent": "Mozilla/5.0\nInjected"}),
    )
    .await;
    let s = &out["session"];
    for f in SESSION_FIELDS {
        assert!(s.get(f).is_some(), "session lacks {f}: {s}");
    }
    let id = str_of(&s["id"]);
    assert!(id.starts_with("ses-"), "{id}");
    assert_eq!(s["tenant"], "default");
    assert_eq!(s["ip_address"], "2001:db8::1", "canonical form");
    assert_eq!(
        s["user_agent"], "Mozilla/5.0 Injected",
        "control characters replaced"
    );
    assert_eq!(
        (&s["revoked_at"], &s["revoke_reason"]),
        (&json!(null), &json!(null))
    );
    // Defaults: 1 h idle (sliding), 8 h absolute.
    let created = secs(&s["created_at"]);
    assert_eq!(secs(&s["last_seen_at"]), created);
    assert_eq!(secs(&s["idle_expires_at"]), created + 3_600);
    assert_eq!(secs(&s["absolute_expires_at"]), created + 8 * 3_600);
    assert!(s.get("csrf_hash").is_none() && !out.to_string().contains("csrf_hash"));
    // The cookie: the id signed under the tenant's session key, the signature last.
    let cookie = str_of(&out["cookie"]);
    let parts: Vec<&str> = cookie.split('.').collect();
    assert_eq!(parts.len(), 4, "{cookie}");
    assert_eq!((parts[0], parts[2]), ("v1", id.as_str()));
    let keys = srv.get(&format!("{T}/session-keys")).await.items();
    assert_eq!(keys.len(), 1, "the first session made the tenant's key");
    assert_eq!(
        (&keys[0]["kid"], &keys[0]["status"]),
        (&json!(parts[1]), &json!("active"))
    );
    let csrf = str_of(&out["csrf_token"]);
    assert!(csrf.len() >= 43, "{csrf}");

    let ok = validate(
        &srv,
        "default",
        json!({"cookie": cookie, "csrf_token": csrf, "touch": true}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(ok["session"]["id"], id.as_str());
    assert!(secs(&ok["session"]["idle_expires_at"]) >= created + 3_600);
    // Without csrf_token, only the cookie is checked.
    assert_eq!(check(&srv, &cookie).await.unwrap()["id"], id.as_str());
    assert_eq!(
        srv.get(&format!("{T}/sessions/{id}"))
            .await
            .expect(StatusCode::OK)["id"],
        id.as_str()
    );

    // Custom timeouts, exactly as asked.
    let s = open(
        &srv,
        "default",
        json!({"actor_id": "bob", "actor_type": "service", "idle_timeout_seconds": 60, "absolute_timeout_seconds": 90}),
    )
    .await["session"]
        .clone();
    let created = secs(&s["created_at"]);
    assert_eq!(secs(&s["idle_expires_at"]), created + 60);
    assert_eq!(secs(&s["absolute_expires_at"]), created + 90);
    assert_eq!(
        (&s["ip_address"], &s["user_agent"]),
        (&json!(null), &json!(null))
    );
}

#[tokio::test]
async fn bad_session_requests_are_4xx_naming_the_problem() {
    let srv = Server::start().await;
    let path = format!("{T}/sessions");
    for (body, field) in [
        (
            json!({"actor_id": "a", "actor_type": "user", "idle_timeout_seconds": 59}),
            "idle_timeout_seconds",
        ),
        (
            json!({"actor_id": "a", "actor_type": "user", "idle_timeout_seconds": 7200, "absolute_timeout_seconds": 3600}),
            "absolute_timeout_seconds",
        ),
        // An idle timeout above the default absolute one (8 h) needs an absolute one too.
        (
            json!({"actor_id": "a", "actor_type": "user", "idle_timeout_seconds": 30_000}),
            "absolute_timeout_seconds",
        ),
        (
            json!({"actor_id": "a", "actor_type": "user", "absolute_timeout_seconds": 2_592_001}),
            "absolute_timeout_seconds",
        ),
        (
            json!({"actor_id": "a", "actor_type": "user", "ip_address": "localhost"}),
            "ip_address",
        ),
        (json!({"actor_id": "", "actor_type": "user"}), "actor_id"),
        (
            json!({"actor_id": "a\u{7}", "actor_type": "user"}),
            "actor_id",
        ),
        (
            json!({"actor_id": "a", "actor_type": "x".repeat(300)}),
            "actor_type",
        ),
        (json!({"actor_type": "user"}), "actor_id"),
        (
            json!({"actor_id": "a", "actor_type": "user", "touch": true}),
            "touch",
        ),
        (
            json!({"actor_id": "a", "actor_type": "user", "idle_timeout_seconds": "1h"}),
            "idle_timeout_seconds",
        ),
    ] {
        let r = srv.post(&path, body.clone()).await;
        assert_problem_names(&r, 400, field);
    }
    for body in [
        json!({}),
        json!({"cookie": 7}),
        json!({"cookie": "x", "extra": 1}),
    ] {
        let r = validate(&srv, "default", body).await;
        assert_problem(&r, 400);
    }
    let r = srv
        .post(
            "/v1/tenants/nope/sessions",
            json!({"actor_id": "a", "actor_type": "user"}),
        )
        .await;
    assert_problem(&r, 404);
    // Scopes: sessions:write to open and validate, sessions:read to read, keys:manage for keys.
    let (_, reader) = srv.create_api_key("default", &["sessions:read"]).await;
    let (_, writer) = srv.create_api_key("default", &["sessions:write"]).await;
    let body = json!({"actor_id": "a", "actor_type": "user"});
    let r = srv
        .call("POST", &path, Some(&reader), Some(body.clone()))
        .await;
    assert_problem(&r, 403);
    let out = srv
        .call("POST", &path, Some(&writer), Some(body))
        .await
        .expect(StatusCode::CREATED);
    let id = str_of(&out["session"]["id"]);
    let get = format!("{path}/{id}");
    assert_problem(&srv.call("GET", &get, Some(&writer), None).await, 403);
    srv.call("GET", &get, Some(&reader), None)
        .await
        .expect(StatusCode::OK);
    let list = format!("{path}?actor_id=a&actor_type=user");
    srv.call("GET", &list, Some(&reader), None)
        .await
        .expect(StatusCode::OK);
    let rotate = format!("{T}/session-keys/rotate");
    assert_problem(&srv.call("POST", &rotate, Some(&writer), None).await, 403);
    // A key of another tenant gets nothing here.
    srv.create_tenant("acme").await;
    let (_, other) = srv
        .create_api_key("acme", &["sessions:write", "sessions:read"])
        .await;
    assert_problem(&srv.call("GET", &get, Some(&other), None).await, 403);
    // Missing list parameters are a 400 that names them.
    let r = srv.get(&path).await;
    assert_problem_names(&r, 400, "actor_id");
}

/// Sliding idle expiry, the one-minute write-back and both expiries, on a clock moved forward.
#[tokio::test]
async fn touch_slides_the_idle_expiry_and_is_written_back_once_a_minute() {
    let mut srv = Server::start().await;
    let out = open_timed(&srv, "alice", 120, 300).await;
    let id = str_of(&out["session"]["id"]);
    let cookie = str_of(&out["cookie"]);
    let created = secs(&out["session"]["created_at"]);
    let get = format!("{T}/sessions/{id}");

    // 10 s later: a touch slides the idle expiry at once on this node…
    restart_later(&mut srv, 10);
    let touched = validate(&srv, "default", json!({"cookie": cookie, "touch": true}))
        .await
        .expect(StatusCode::OK)["session"]
        .clone();
    let seen = secs(&touched["last_seen_at"]);
    assert!(seen >= created + 10, "{touched}");
    assert_eq!(secs(&touched["idle_expires_at"]), seen + 120);
    assert_eq!(
        srv.get(&get).await.expect(StatusCode::OK)["idle_expires_at"],
        touched["idle_expires_at"]
    );
    // …but is not written back before a minute has passed since the stored activity: a crash
    // loses it (at most the coalescing window, never more).
    restart_later(&mut srv, 10);
    let stored = srv.get(&get).await.expect(StatusCode::OK);
    assert_eq!(secs(&stored["idle_expires_at"]), created + 120);
    assert_eq!(secs(&stored["last_seen_at"]), created);
    // `touch: false` never slides.
    let still = check(&srv, &cookie).await.unwrap();
    assert_eq!(secs(&still["idle_expires_at"]), created + 120);

    // 70 s after creation: a minute has passed, so this touch is written back…
    restart_later(&mut srv, 70);
    let touched = validate(&srv, "default", json!({"cookie": cookie}))
        .await
        .expect(StatusCode::OK)["session"]
        .clone();
    let slid = secs(&touched["idle_expires_at"]);
    assert!(slid >= created + 190, "{touched}");
    restart_later(&mut srv, 70);
    assert_eq!(
        secs(&srv.get(&get).await.expect(StatusCode::OK)["idle_expires_at"]),
        slid
    );
    // …and keeps the session alive past its original idle expiry (created + 120).
    restart_later(&mut srv, 150);
    assert_eq!(check(&srv, &cookie).await.unwrap()["id"], id.as_str());
    let touched = validate(&srv, "default", json!({"cookie": cookie}))
        .await
        .expect(StatusCode::OK)["session"]
        .clone();
    assert!(
        secs(&touched["idle_expires_at"]) >= created + 270,
        "{touched}"
    );
    // The idle expiry never passes the absolute one (created + 300).
    restart_later(&mut srv, 250);
    let late = validate(&srv, "default", json!({"cookie": cookie}))
        .await
        .expect(StatusCode::OK)["session"]
        .clone();
    assert_eq!(secs(&late["idle_expires_at"]), created + 300);
}

#[tokio::test]
async fn idle_and_absolute_expiry_end_sessions_and_their_tokens() {
    let mut srv = Server::start().await;
    // `short` idles out at +60 and ends at +120; `long` lives an hour either way.
    let short = open_timed(&srv, "a", 60, 120).await;
    let long = open_timed(&srv, "b", 3600, 3600).await;
    let (short_cookie, long_cookie) = (str_of(&short["cookie"]), str_of(&long["cookie"]));
    let short_token = issue_with_sid(&srv, &str_of(&short["session"]["id"])).await;
    let long_token = issue_with_sid(&srv, &str_of(&long["session"]["id"])).await;
    assert_eq!(srv.reason("default", &short_token).await, None);

    restart_later(&mut srv, 90);
    assert_eq!(
        check(&srv, &short_cookie).await.unwrap_err(),
        "idle_expired"
    );
    // The token outlives nothing: its session expired, so it is rejected, from memory.
    assert_eq!(
        srv.reason("default", &short_token).await.as_deref(),
        Some("session_revoked")
    );
    assert_eq!(
        srv.introspect("default", &short_token).await,
        json!({"active": false})
    );
    // Touching cannot bring an idle-expired session back.
    let r = validate(
        &srv,
        "default",
        json!({"cookie": short_cookie, "touch": true}),
    )
    .await;
    assert_eq!(rejection(&r), "idle_expired");
    // Not listed among the actor's active sessions.
    assert!(
        srv.get(&format!("{T}/sessions?actor_id=a&actor_type=user"))
            .await
            .items()
            .is_empty()
    );
    assert!(check(&srv, &long_cookie).await.is_ok());
    assert_eq!(srv.reason("default", &long_token).await, None);
    // No token is issued for an expired session.
    let r = srv
        .post(
            &format!("{T}/tokens"),
            json!({"sub": "u", "sid": short["session"]["id"]}),
        )
        .await;
    assert_problem_names(&r, 400, "sid");

    // Both expiries passed: absolute wins.
    restart_later(&mut srv, 200);
    assert_eq!(
        check(&srv, &short_cookie).await.unwrap_err(),
        "absolute_expired"
    );
    assert_eq!(
        srv.reason("default", &short_token).await.as_deref(),
        Some("session_revoked")
    );
    assert!(check(&srv, &long_cookie).await.is_ok());
    // The CSRF check comes after the expiry: an expired session says so whatever the token.
    let r = validate(
        &srv,
        "default",
        json!({"cookie": short_cookie, "csrf_token": "wrong"}),
    )
    .await;
    assert_eq!(rejection(&r), "absolute_expired");
}

// ---- cookies and keys -------------------------------------------------------------------------

#[tokio::test]
async fn key_rotation_keeps_old_cookies_valid_through_the_retention_window() {
    let mut srv = Server::start().await;
    const MONTH: i64 = 2_592_000;
    let old = open_timed(&srv, "a", MONTH, MONTH).await;
    let old_cookie = str_of(&old["cookie"]);
    let old_kid = old_cookie.split('.').nth(1).unwrap().to_owned();
    let rotated = srv
        .post(&format!("{T}/session-keys/rotate"), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(rotated["status"], "active");
    assert_ne!(rotated["kid"], old_kid.as_str());
    let keys = srv.get(&format!("{T}/session-keys")).await.items();
    let old_key = keys.iter().find(|k| k["kid"] == old_kid.as_str()).unwrap();
    assert_eq!(old_key["status"], "retired");
    let retained = secs(&old_key["retain_until"]) - secs(&rotated["created_at"]);
    assert!(
        (86_398..=86_402).contains(&retained),
        "24 h retention, got {retained} s"
    );
    let audit_trail = audit(&srv, "session_key.rotate").await;
    assert_eq!(audit_trail.len(), 1);
    assert_eq!(audit_trail[0]["target"], rotated["kid"]);
    // New cookies are signed under the new key; the old cookie still validates.
    let new = open_timed(&srv, "a", MONTH, MONTH).await;
    let new_cookie = str_of(&new["cookie"]);
    assert_eq!(new_cookie.split('.').nth(1), rotated["kid"].as_str());
    assert!(check(&srv, &old_cookie).await.is_ok());
    assert!(check(&srv, &new_cookie).await.is_ok());
    // Also after a restart (keys are loaded from the store, decrypted under the master key).
    srv.crash_and_restart();
    assert!(check(&srv, &old_cookie).await.is_ok());
    // Past the retention window the old key verifies nothing; the session itself lives on.
    restart_later(&mut srv, 25 * 3_600);
    assert_eq!(check(&srv, &old_cookie).await.unwrap_err(), "unknown_key");
    assert!(check(&srv, &new_cookie).await.is_ok());
}

#[tokio::test]
async fn tampered_truncated_and_foreign_cookies_are_401_never_5xx() {
    let srv = Server::start().await;
    srv.create_tenant("acme").await;
    let out = open_for(&srv, "alice").await;
    let cookie = str_of(&out["cookie"]);
    let acme =
        str_of(&open(&srv, "acme", json!({"actor_id": "a", "actor_type": "user"})).await["cookie"]);
    let prelogin = str_of(
        &srv.post(&format!("{T}/prelogin"), prelogin_body("s1"))
            .await
            .expect(StatusCode::CREATED)["cookie"],
    );
    let (head, sig) = cookie.rsplit_once('.').unwrap();
    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let parts: Vec<&str> = cookie.split('.').collect();
    let other_id = format!("ses-{}", "A".repeat(22));
    let cases: Vec<(String, &str)> = vec![
        (format!("{head}.{}", flip(sig, 5)), "bad_signature"),
        (format!("{head}.{}", &sig[..sig.len() - 4]), "bad_signature"),
        (format!("{head}.{}", &sig[..1]), "bad_signature"),
        (
            format!("{}.{}.{other_id}.{sig}", parts[0], parts[1]),
            "bad_signature",
        ),
        (format!("{head}."), "malformed"),
        (head.to_owned(), "malformed"),
        (format!("{cookie}.x"), "malformed"),
        (format!("v2.{}", &cookie[3..]), "malformed"),
        (format!("{head}.{sig}="), "malformed"),
        (cookie.replace("ses-", "sez-"), "malformed"),
        (String::new(), "malformed"),
        ("garbage".into(), "malformed"),
        ("v1.k.ses-x.sig".into(), "malformed"),
        (format!("{cookie}{}", "A".repeat(600)), "malformed"),
        ("\u{0}\u{1f}..é.".into(), "malformed"),
        (format!("v1.k_nosuchkey.{}.{sig}", parts[2]), "unknown_key"),
        // Another tenant's cookie: its key is not this tenant's.
        (acme.clone(), "unknown_key"),
        // A pre-login cookie is never a session cookie.
        (prelogin.clone(), "malformed"),
    ];
    for (bad, want) in &cases {
        let r = validate(&srv, "default", json!({"cookie": bad})).await;
        assert_eq!(rejection(&r), *want, "cookie {bad:?}: {}", r.text);
    }
    // The genuine cookie still works, and acme's works at acme.
    assert!(check(&srv, &cookie).await.is_ok());
    validate(&srv, "acme", json!({"cookie": acme}))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_csrf_token_is_csrf_mismatch() {
    let srv = Server::start().await;
    let a = open_for(&srv, "alice").await;
    let b = open_for(&srv, "bob").await;
    for wrong in [
        str_of(&b["csrf_token"]),
        String::new(),
        "x".repeat(10_000),
        str_of(&a["csrf_token"]).to_uppercase(),
    ] {
        let r = validate(
            &srv,
            "default",
            json!({"cookie": a["cookie"], "csrf_token": wrong}),
        )
        .await;
        assert_eq!(rejection(&r), "csrf_mismatch");
    }
    validate(
        &srv,
        "default",
        json!({"cookie": a["cookie"], "csrf_token": a["csrf_token"]}),
    )
    .await
    .expect(StatusCode::OK);
}

// ---- listing and revocation -------------------------------------------------------------------

#[tokio::test]
async fn list_get_revoke_and_revoke_all() {
    let srv = Server::start().await;
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(open_for(&srv, "alice").await);
    }
    let bob = open_for(&srv, "bob").await;
    let ids: Vec<String> = alice.iter().map(|s| str_of(&s["session"]["id"])).collect();
    let list = format!("{T}/sessions?actor_id=alice&actor_type=user");
    let listed: Vec<String> = srv
        .get(&list)
        .await
        .items()
        .iter()
        .map(|s| str_of(&s["id"]))
        .collect();
    let mut expected = ids.clone();
    expected.sort_by(|a, b| {
        let at = |id: &String| {
            alice
                .iter()
                .find(|s| s["session"]["id"] == id.as_str())
                .map(|s| secs(&s["session"]["created_at"]))
        };
        (at(b), b).cmp(&(at(a), a))
    });
    assert_eq!(listed, expected, "newest first");
    // Keyset pages.
    let first = srv
        .get(&format!("{list}&limit=2"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = str_of(&first["next_cursor"]);
    let rest = srv
        .get(&format!("{list}&limit=2&cursor={cursor}"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], json!(null));
    assert_problem(&srv.get(&format!("{list}&cursor=nonsense")).await, 400);
    assert!(
        srv.get(&format!("{T}/sessions?actor_id=alice&actor_type=admin"))
            .await
            .items()
            .is_empty()
    );

    // Revoke one.
    let path = format!("{T}/sessions/{}/revoke", ids[0]);
    let revoked = srv
        .post(&path, json!({"reason": "lost phone"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(revoked["revoke_reason"], "lost phone");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        check(&srv, &str_of(&alice[0]["cookie"])).await.unwrap_err(),
        "revoked"
    );
    // The first revocation stands.
    let again = srv
        .post(&path, json!({"reason": "other"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again, revoked);
    assert_eq!(
        srv.get(&format!("{T}/sessions/{}", ids[0]))
            .await
            .expect(StatusCode::OK),
        revoked
    );
    assert_eq!(srv.get(&list).await.items().len(), 2);
    assert_problem(
        &srv.post(&format!("{T}/sessions/ses-nope/revoke"), json!({}))
            .await,
        404,
    );
    assert_problem(&srv.get(&format!("{T}/sessions/ses-nope")).await, 404);

    // Revoke all of alice's: the two left; bob's stays.
    let all = srv
        .post(
            &format!("{T}/actors/user/alice/sessions/revoke-all"),
            json!({"reason": "password changed"}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(all["revoked"], 2);
    let mut got: Vec<String> = all["session_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(str_of)
        .collect();
    got.sort();
    let mut want = ids[1..].to_vec();
    want.sort();
    assert_eq!(got, want);
    assert!(srv.get(&list).await.items().is_empty());
    for s in &alice[1..] {
        assert_eq!(
            check(&srv, &str_of(&s["cookie"])).await.unwrap_err(),
            "revoked"
        );
    }
    assert!(check(&srv, &str_of(&bob["cookie"])).await.is_ok());
    let again = srv
        .post(
            &format!("{T}/actors/user/alice/sessions/revoke-all"),
            json!({}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(again["revoked"], 0);

    // One audit event per session revoked, with its reason.
    let events = audit(&srv, "session.revoke").await;
    let mut targets: Vec<String> = events.iter().map(|e| str_of(&e["target"])).collect();
    targets.sort();
    let mut all_ids = ids.clone();
    all_ids.sort();
    assert_eq!(targets, all_ids);
    let by_target = |id: &str| events.iter().find(|e| e["target"] == id).unwrap().clone();
    assert_eq!(by_target(&ids[0])["reason"], "lost phone");
    assert_eq!(by_target(&ids[1])["reason"], "password changed");
}

#[tokio::test]
async fn sid_tokens_are_rejected_once_their_session_is_revoked() {
    let srv = Server::start().await;
    let s = open_for(&srv, "alice").await;
    let id = str_of(&s["session"]["id"]);
    let token = issue_with_sid(&srv, &id).await;
    let (_, claims) = decode(&token);
    assert_eq!(claims["sid"], id.as_str());
    assert_eq!(srv.reason("default", &token).await, None);
    assert_eq!(srv.introspect("default", &token).await["active"], true);
    srv.post(&format!("{T}/sessions/{id}/revoke"), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("session_revoked")
    );
    assert_eq!(
        srv.introspect("default", &token).await,
        json!({"active": false})
    );
    // No new token for a revoked session, nor for a session that does not exist.
    let r = srv
        .post(&format!("{T}/tokens"), json!({"sub": "u", "sid": id}))
        .await;
    assert_problem_names(&r, 400, "sid");
    let unknown = format!("ses-{}", "Q".repeat(22));
    let r = srv
        .post(&format!("{T}/tokens"), json!({"sub": "u", "sid": unknown}))
        .await;
    assert_problem_names(&r, 400, "sid");
    // In a batch, the item fails alone.
    let b = srv
        .post(
            &format!("{T}/tokens/batch"),
            json!({"requests": [{"sub": "u", "sid": id}, {"sub": "u"}]}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(b["results"][0]["error"]["status"], 400);
    assert!(b["results"][1]["token"].is_string());
    // A sid that is not a veto session id is the caller's own business.
    srv.issue("default", json!({"sub": "u", "sid": "ses-abc"}))
        .await;
    srv.issue("default", json!({"sub": "u", "sid": "my-app-session-7"}))
        .await;
}

// ---- pre-login --------------------------------------------------------------------------------

fn prelogin_body(state: &str) -> Value {
    json!({
        "state": state,
        "nonce": "n-0S6_WzA2Mj",
        "pkce_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "redirect_uri": "https://app.example/callback?x=1",
    })
}

async fn start_login(srv: &Server, state: &str) -> String {
    let out = srv
        .post(&format!("{T}/prelogin"), prelogin_body(state))
        .await
        .expect(StatusCode::CREATED);
    let expires = secs(&out["expires_at"]) - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (590..=601).contains(&expires),
        "10-minute lifetime, got {expires} s"
    );
    str_of(&out["cookie"])
}

async fn consume(srv: &Server, cookie: &str, state: &str) -> Resp {
    srv.post(
        &format!("{T}/prelogin/consume"),
        json!({"cookie": cookie, "state": state}),
    )
    .await
}

#[tokio::test]
async fn prelogin_state_is_handed_back_exactly_once() {
    let srv = Server::start().await;
    let cookie = start_login(&srv, "st-1").await;
    let got = consume(&srv, &cookie, "st-1").await.expect(StatusCode::OK);
    let mut want = prelogin_body("st-1");
    want["redirect_uri"] = json!("https://app.example/callback?x=1");
    assert_eq!(got, want);
    assert_problem(&consume(&srv, &cookie, "st-1").await, 410);

    // A wrong state is a 400 and spends the record: it cannot be retried.
    let cookie = start_login(&srv, "st-2").await;
    assert_problem_names(&consume(&srv, &cookie, "st-2x").await, 400, "state");
    assert_problem(&consume(&srv, &cookie, "st-2").await, 410);

    // Without redirect_uri it comes back null.
    let mut body = prelogin_body("st-3");
    body.as_object_mut().unwrap().remove("redirect_uri");
    let c = str_of(
        &srv.post(&format!("{T}/prelogin"), body)
            .await
            .expect(StatusCode::CREATED)["cookie"],
    );
    assert_eq!(
        consume(&srv, &c, "st-3").await.expect(StatusCode::OK)["redirect_uri"],
        json!(null)
    );

    // Not a pre-login cookie of this tenant: 400 naming the cookie.
    let session_cookie = str_of(&open_for(&srv, "a").await["cookie"]);
    let (head, sig) = cookie.rsplit_once('.').unwrap();
    for bad in [
        session_cookie,
        "junk".into(),
        format!("{head}.{}", &sig[2..]),
    ] {
        assert_problem_names(&consume(&srv, &bad, "st-1").await, 400, "cookie");
    }
    // Bad input is refused before anything is stored.
    for (field, value) in [
        ("pkce_verifier", json!("too-short")),
        ("pkce_verifier", json!("a".repeat(43) + "!")),
        ("redirect_uri", json!("https://app.example/cb#frag")),
        ("redirect_uri", json!("javascript:alert(1)")),
        ("state", json!("")),
        ("nonce", json!("x".repeat(513))),
    ] {
        let mut body = prelogin_body("s");
        body[field] = value;
        assert_problem_names(&srv.post(&format!("{T}/prelogin"), body).await, 400, field);
    }
}

#[tokio::test]
async fn concurrent_consumes_over_http_have_exactly_one_winner() {
    let srv = Server::start().await;
    for round in 0..3 {
        let state = format!("race-{round}");
        let cookie = start_login(&srv, &state).await;
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let req = srv
                .http
                .post(srv.url(&format!("{T}/prelogin/consume")))
                .bearer_auth(ADMIN)
                .json(&json!({"cookie": cookie, "state": state}));
            tasks.push(tokio::spawn(async move {
                Resp::read(req.send().await.unwrap()).await
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap().status.as_u16());
        }
        statuses.sort_unstable();
        let mut want = vec![410; 9];
        want.insert(0, 200);
        assert_eq!(statuses, want, "round {round}");
    }
}

// ---- refresh tokens ---------------------------------------------------------------------------

async fn refresh(srv: &Server, token: &str) -> Resp {
    srv.post(
        &format!("{T}/tokens/refresh"),
        json!({"refresh_token": token}),
    )
    .await
}

async fn first_refresh_token(srv: &Server) -> String {
    let out = srv
        .issue(
            "default",
            json!({"sub": "alice", "aud": "api", "token_use": "refresh", "claims": {"plan": "pro"}}),
        )
        .await;
    str_of(&out["token"])
}

#[tokio::test]
async fn refresh_rotation_and_reuse_revoke_the_whole_family() {
    let srv = Server::start_with(&[("VETO_MAX_TOKEN_TTL_SECONDS", "7200")]).await;
    let out = srv
        .issue("default", json!({"sub": "alice", "aud": "api", "token_use": "refresh", "claims": {"plan": "pro"}}))
        .await;
    let rt0 = str_of(&out["token"]);
    let (h, c) = decode(&rt0);
    assert_eq!(h["typ"], "rt+jwt");
    assert_eq!((&c["token_use"], &c["gen"]), (&json!("refresh"), &json!(0)));
    let fam = str_of(&c["fam"]);
    assert!(fam.starts_with("rf-"));
    assert_eq!(
        secs(&out["expires_at"]) - secs(&out["issued_at"]),
        7200,
        "default: the longest lifetime"
    );
    // A refresh token is not an access token, and the reverse.
    assert_eq!(
        srv.reason("default", &rt0).await.as_deref(),
        Some("malformed")
    );
    let access = srv.token("default", "alice").await;
    assert_eq!(rejection(&refresh(&srv, &access).await), "malformed");

    let r1 = refresh(&srv, &rt0).await.expect(StatusCode::OK);
    let (at1, rt1) = (str_of(&r1["access_token"]), str_of(&r1["refresh_token"]));
    let (h, c) = decode(&at1);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(
        (&c["sub"], &c["aud"], &c["plan"], &c["fam"]),
        (&json!("alice"), &json!("api"), &json!("pro"), &json!(fam))
    );
    assert!(c.get("token_use").is_none() && c.get("gen").is_none());
    assert_eq!(srv.reason("default", &at1).await, None);
    let (_, c) = decode(&rt1);
    assert_eq!((&c["gen"], &c["fam"]), (&json!(1), &json!(fam)));
    let r2 = refresh(&srv, &rt1).await.expect(StatusCode::OK);
    let (at2, rt2) = (str_of(&r2["access_token"]), str_of(&r2["refresh_token"]));
    assert_eq!(decode(&rt2).1["gen"], 2);

    // rt0 is back: theft. 401 refresh_token_reuse, and the family is revoked.
    assert_eq!(rejection(&refresh(&srv, &rt0).await), "refresh_token_reuse");
    assert_eq!(rejection(&refresh(&srv, &rt2).await), "revoked");
    for t in [&at1, &at2] {
        assert_eq!(srv.reason("default", t).await.as_deref(), Some("revoked"));
        assert_eq!(srv.introspect("default", t).await, json!({"active": false}));
    }
    let events = audit(&srv, "refresh.reuse").await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (&events[0]["target"], &events[0]["reason"]),
        (&json!(fam), &json!("refresh_token_reuse"))
    );
    // Another family of the same subject is untouched.
    let other = first_refresh_token(&srv).await;
    refresh(&srv, &other).await.expect(StatusCode::OK);
    // Refresh needs tokens:issue; refresh tokens are not issued in batches.
    let (_, verifier) = srv.create_api_key("default", &["tokens:verify"]).await;
    let r = srv
        .call(
            "POST",
            &format!("{T}/tokens/refresh"),
            Some(&verifier),
            Some(json!({"refresh_token": other})),
        )
        .await;
    assert_problem(&r, 403);
    let b = srv
        .post(
            &format!("{T}/tokens/batch"),
            json!({"requests": [{"sub": "u", "token_use": "refresh"}]}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(b["results"][0]["error"]["status"], 400);
    assert_problem(&refresh(&srv, "not-a-token").await, 401);
    assert_problem_names(
        &srv.post(&format!("{T}/tokens/refresh"), json!({})).await,
        400,
        "refresh_token",
    );
}

#[tokio::test]
async fn two_concurrent_refreshes_of_one_token_are_one_rotation_and_one_reuse() {
    let srv = Server::start().await;
    for _ in 0..3 {
        let rt = first_refresh_token(&srv).await;
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let req = srv
                .http
                .post(srv.url(&format!("{T}/tokens/refresh")))
                .bearer_auth(ADMIN)
                .json(&json!({"refresh_token": rt}));
            tasks.push(tokio::spawn(async move {
                Resp::read(req.send().await.unwrap()).await
            }));
        }
        let mut ok = Vec::new();
        let mut reasons = Vec::new();
        for t in tasks {
            let r = t.await.unwrap();
            if r.status == StatusCode::OK {
                ok.push(r.json);
            } else {
                reasons.push(rejection(&r));
            }
        }
        assert_eq!(
            (ok.len(), reasons),
            (1, vec!["refresh_token_reuse".to_owned()])
        );
        // Indistinguishable from theft, so the winner's tokens die with the family.
        let winner = &ok[0];
        assert_eq!(
            rejection(&refresh(&srv, &str_of(&winner["refresh_token"])).await),
            "revoked"
        );
        assert_eq!(
            srv.reason("default", &str_of(&winner["access_token"]))
                .await
                .as_deref(),
            Some("revoked")
        );
    }
}

#[tokio::test]
async fn rfc7009_revocation_of_a_refresh_token_revokes_its_family() {
    let srv = Server::start().await;
    // With credentials.
    let rt0 = first_refresh_token(&srv).await;
    let r1 = refresh(&srv, &rt0).await.expect(StatusCode::OK);
    let resp = srv
        .oauth_revoke("default", &str_of(&r1["refresh_token"]), Some(ADMIN))
        .await;
    assert_eq!((resp.status, resp.text.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        rejection(&refresh(&srv, &str_of(&r1["refresh_token"])).await),
        "revoked"
    );
    assert_eq!(
        srv.reason("default", &str_of(&r1["access_token"]))
            .await
            .as_deref(),
        Some("revoked")
    );
    // Self-logout without credentials: the very token presented.
    let rt = first_refresh_token(&srv).await;
    srv.oauth_revoke("default", &rt, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(rejection(&refresh(&srv, &rt).await), "revoked");
    let events = audit(&srv, "refresh.revoke").await;
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons.contains(&"oauth2_revoke") && reasons.contains(&"logout"),
        "{reasons:?}"
    );
    // Access tokens keep their RFC 7009 behaviour.
    let at = srv.token("default", "bob").await;
    srv.oauth_revoke("default", &at, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(srv.reason("default", &at).await.as_deref(), Some("revoked"));
}

// ---- durability and purge ---------------------------------------------------------------------

#[tokio::test]
async fn a_revoked_session_stays_revoked_after_kill_9() {
    let mut srv = Server::start().await;
    let gone = open_for(&srv, "alice").await;
    let kept = open_for(&srv, "alice").await;
    let gone_id = str_of(&gone["session"]["id"]);
    let token = issue_with_sid(&srv, &gone_id).await;
    let kept_token = issue_with_sid(&srv, &str_of(&kept["session"]["id"])).await;
    srv.post(
        &format!("{T}/sessions/{gone_id}/revoke"),
        json!({"reason": "stolen"}),
    )
    .await
    .expect(StatusCode::OK);
    let rt = first_refresh_token(&srv).await;
    let rotated = refresh(&srv, &rt).await.expect(StatusCode::OK);
    assert_eq!(rejection(&refresh(&srv, &rt).await), "refresh_token_reuse");

    srv.crash_and_restart();
    assert_eq!(
        check(&srv, &str_of(&gone["cookie"])).await.unwrap_err(),
        "revoked"
    );
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("session_revoked")
    );
    assert!(check(&srv, &str_of(&kept["cookie"])).await.is_ok());
    assert_eq!(srv.reason("default", &kept_token).await, None);
    assert_eq!(
        srv.get(&format!("{T}/sessions/{gone_id}"))
            .await
            .expect(StatusCode::OK)["revoke_reason"],
        "stolen"
    );
    // The revoked family too, from memory rebuilt at start-up.
    assert_eq!(
        srv.reason("default", &str_of(&rotated["access_token"]))
            .await
            .as_deref(),
        Some("revoked")
    );
    assert_eq!(
        rejection(&refresh(&srv, &str_of(&rotated["refresh_token"])).await),
        "revoked"
    );
}

/// Runs the admin purge with the smallest margin (the clock-skew leeway, 30 s); what it deleted
/// of sessions, pre-login records, refresh families and session keys.
async fn purge_now(srv: &Server) -> [i64; 4] {
    let body = json!({"safety_margin_seconds": 30});
    let d = &srv
        .post("/v1/admin/purge", body)
        .await
        .expect(StatusCode::OK)["deleted"];
    ["sessions", "prelogin", "refresh_families", "session_keys"].map(|k| {
        d[k].as_i64()
            .unwrap_or_else(|| panic!("no count of {k}: {d}"))
    })
}

#[tokio::test]
async fn purge_removes_expired_sessions_prelogin_state_and_families() {
    let mut srv = Server::start_with(&[("VETO_MAX_TOKEN_TTL_SECONDS", "600")]).await;
    let short = open_timed(&srv, "a", 60, 60).await;
    let long = open_timed(&srv, "a", 86_400, 86_400).await;
    let cookie = start_login(&srv, "st").await;
    srv.issue(
        "default",
        json!({"sub": "u", "token_use": "refresh", "ttl_seconds": 60}),
    )
    .await;
    srv.post(&format!("{T}/session-keys/rotate"), json!({}))
        .await
        .expect(StatusCode::OK);
    // Nothing is old enough yet.
    assert_eq!(purge_now(&srv).await, [0, 0, 0, 0]);

    // Two hours on: the short session and the family ended more than the longest token
    // lifetime (600 s) ago and the pre-login record expired (10 min); the retired key is
    // still within its 24 h retention.
    restart_later(&mut srv, 7_200);
    assert_eq!(purge_now(&srv).await, [1, 1, 1, 0]);
    assert_problem(
        &srv.get(&format!("{T}/sessions/{}", str_of(&short["session"]["id"])))
            .await,
        404,
    );
    // A cookie whose session row is gone was long expired.
    assert_eq!(
        check(&srv, &str_of(&short["cookie"])).await.unwrap_err(),
        "absolute_expired"
    );
    assert!(check(&srv, &str_of(&long["cookie"])).await.is_ok());
    assert_problem(&consume(&srv, &cookie, "st").await, 410);
    // A day and more on: the retired session key goes too (the long session's cookie was signed
    // under it, and its retention is over, so it is refused as unknown_key).
    restart_later(&mut srv, 26 * 3_600);
    assert_eq!(purge_now(&srv).await[3], 1);
    assert_eq!(
        check(&srv, &str_of(&long["cookie"])).await.unwrap_err(),
        "unknown_key"
    );
    assert_eq!(srv.get(&format!("{T}/session-keys")).await.items().len(), 1);
}

#[tokio::test]
async fn openapi_documents_every_session_route() {
    let srv = Server::start().await;
    let doc = srv.get_public("/openapi.json").await.expect(StatusCode::OK);
    for path in [
        "/v1/tenants/{tenant}/sessions",
        "/v1/tenants/{tenant}/sessions/validate",
        "/v1/tenants/{tenant}/sessions/{id}",
        "/v1/tenants/{tenant}/sessions/{id}/revoke",
        "/v1/tenants/{tenant}/actors/{actor_type}/{actor_id}/sessions/revoke-all",
        "/v1/tenants/{tenant}/prelogin",
        "/v1/tenants/{tenant}/prelogin/consume",
        "/v1/tenants/{tenant}/session-keys/rotate",
        "/v1/tenants/{tenant}/tokens/refresh",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
    }
}

#[tokio::test]
async fn a_suspended_tenants_sessions_are_refused_until_it_resumes() {
    let srv = Server::start().await;
    let s = open_for(&srv, "ivy").await;
    let cookie = str_of(&s["cookie"]);
    assert!(check(&srv, &cookie).await.is_ok());
    srv.post("/v1/tenants/default/suspend", json!({"reason": "unpaid"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(check(&srv, &cookie).await, Err("revoked".to_owned()));
    srv.post("/v1/tenants/default/resume", json!({}))
        .await
        .expect(StatusCode::OK);
    assert!(check(&srv, &cookie).await.is_ok());
}
