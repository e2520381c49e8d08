//! No secret in the logs. A server logging at `debug` (as text, and as JSON) is driven through
//! everything that moves a secret: bootstrap, API keys, signing keys of every algorithm, tokens
//! single and batch, verification, introspection (Bearer and Basic), revocation, RFC 7009
//! revocation, sessions with CSRF, pre-login state with a PKCE verifier, refresh rotation and
//! reuse, key rotation and revocation, and requests with bad credentials. Every secret that
//! crossed the wire is collected, together with the master key and the private key material the
//! store holds (decrypted here with the master key), and none of it, nor any 16-character piece
//! of it, may appear in what the server wrote on stderr, in the audit trail or the metrics, or
//! (on the embedded store) in any file of the data directory but the master key's own. Responses
//! that describe keys (JWKS, key listings) must carry no private JWK member.
mod common;
use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use serde_json::{Value, json};
use veto_core::keys::MasterKey;

/// The length of the pieces looked for: long enough never to match by chance in a log.
const WINDOW: usize = 16;

/// JWK members that carry private material (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const T: &str = "/v1/tenants/acme";

/// Everything that must stay out of the logs, each as the strings to look for.
#[derive(Default)]
struct Secrets(Vec<(String, Vec<String>)>);

/// Every `WINDOW`-long piece of `s`, or `s` itself when shorter.
fn windows(s: &str) -> Vec<String> {
    if s.len() <= WINDOW {
        return vec![s.to_owned()];
    }
    (0..=s.len() - WINDOW)
        .filter_map(|i| s.get(i..i + WINDOW))
        .map(str::to_owned)
        .collect()
}

impl Secrets {
    /// A secret shown as text (an API key, a CSRF token, a PKCE verifier).
    fn text(&mut self, what: impl Into<String>, s: &str) {
        assert!(!s.is_empty(), "an empty secret");
        self.0.push((what.into(), windows(s)));
    }

    /// A compact JWS or a signed cookie: the whole value, and any piece of its signature (the
    /// last `.`-separated segment). The other segments are public claims and headers.
    fn signed(&mut self, what: impl Into<String>, s: &str) {
        let what = what.into();
        let sig = s.rsplit('.').next().unwrap_or(s);
        let mut needles = windows(sig);
        needles.push(s.to_owned());
        self.0.push((what, needles));
    }

    /// Raw key material: any 8 bytes of it in hex, and any 12 bytes in base64 or base64url,
    /// starting at every offset, so that every way of printing it is caught whatever its
    /// alignment inside a larger encoding. Pieces that are also pieces of `public` (a private
    /// key's encoding carries its public key) are left out: those may be shown.
    fn bytes(&mut self, what: impl Into<String>, b: &[u8], public: &[Vec<u8>]) {
        let shown: HashSet<&[u8]> = public
            .iter()
            .flat_map(|p| p.windows(WINDOW / 2).chain(p.windows(WINDOW * 3 / 4)))
            .collect();
        let mut needles = Vec::new();
        for i in 0..b.len() {
            if let Some(w) = b.get(i..i + WINDOW / 2).filter(|w| !shown.contains(w)) {
                needles.push(w.iter().map(|x| format!("{x:02x}")).collect());
            }
            if let Some(w) = b.get(i..i + WINDOW * 3 / 4).filter(|w| !shown.contains(w)) {
                needles.push(STANDARD.encode(w));
                needles.push(URL_SAFE_NO_PAD.encode(w));
            }
        }
        self.0.push((what.into(), needles));
    }

    fn count(&self) -> usize {
        self.0.len()
    }

    /// Asserts that no secret, nor any piece of one, appears in `text` (a log, an answer, or
    /// the bytes of a file).
    #[track_caller]
    fn assert_absent(&self, where_: &str, text: impl AsRef<[u8]>) {
        let text = text.as_ref();
        let pieces: HashSet<&[u8]> = text.windows(WINDOW).collect();
        for (what, needles) in &self.0 {
            for n in needles.iter().map(String::as_bytes) {
                // Pieces through the set; whole values of another length by a scan.
                if n.len() == WINDOW && !pieces.contains(n) {
                    continue;
                }
                if let Some(at) = text.windows(n.len()).position(|w| w == n) {
                    let start = text[..at]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |i| i + 1);
                    let end = text[at..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(text.len(), |i| at + i);
                    panic!(
                        "{where_} shows {what} ({:?}) in:\n{}",
                        String::from_utf8_lossy(n),
                        String::from_utf8_lossy(&text[start..end.min(start + 2000)])
                    );
                }
            }
        }
    }

    /// Asserts the same of every file under `dir` but those that hold a secret by design.
    #[track_caller]
    fn assert_absent_from_files(&self, dir: &std::path::Path, by_design: &[&str]) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if p.is_dir() {
                    stack.push(p);
                } else if !by_design.contains(&name.as_str()) {
                    self.assert_absent(&p.display().to_string(), std::fs::read(&p).unwrap());
                }
            }
        }
    }
}

/// No object anywhere in `v` has a private JWK member.
#[track_caller]
fn assert_no_private_jwk_member(where_: &str, v: &Value) {
    match v {
        Value::Object(m) => {
            for name in PRIVATE_JWK_MEMBERS {
                assert!(!m.contains_key(name), "{where_} has {name:?}: {m:?}");
            }
            m.values()
                .for_each(|x| assert_no_private_jwk_member(where_, x));
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| assert_no_private_jwk_member(where_, x)),
        _ => {}
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn form(srv: &Server, endpoint: &str, auth: Option<&str>, token: &str) -> Resp {
    let mut req = srv
        .http
        .post(srv.url(&format!("/t/acme/oauth2/{endpoint}")))
        .form(&[("token", token)]);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    srv.send(endpoint, req).await
}

/// Asks about `token` three ways: verify, and introspect with Bearer and with HTTP Basic. They
/// must agree; the answer is whether it is active.
async fn is_active(srv: &Server, id: &str, secret: &str, token: &str) -> bool {
    let verified = post_as(srv, secret, "/tokens/verify", json!({"token": token}), 200).await;
    let bearer = form(srv, "introspect", Some(&format!("Bearer {secret}")), token).await;
    let basic = form(srv, "introspect", Some(&basic(id, secret)), token).await;
    assert_eq!(bearer.json, basic.json);
    assert_eq!(bearer.json["active"], verified["active"], "{}", bearer.text);
    if bearer.json["active"] == false {
        assert_eq!(bearer.json, json!({"active": false}));
    }
    bearer.json["active"] == true
}

/// `POST /v1/tenants/acme<path>` with a key; asserts the status, returns the body.
async fn post_as(srv: &Server, key: &str, path: &str, body: Value, status: u16) -> Value {
    let path = format!("{T}{path}");
    let r = srv.call("POST", &path, Some(key), Some(body)).await;
    assert_eq!(r.status.as_u16(), status, "POST {path}: {}", r.text);
    r.json
}

/// Drives every secret-bearing flow through `srv` as `admin`; returns what crossed the wire.
async fn drive(srv: &Server, admin: &str) -> Secrets {
    let mut s = Secrets::default();
    s.text("the admin key", admin);
    let call = |method: &'static str, path: String, key: Option<String>, body: Option<Value>| async move {
        srv.call(method, &path, key.as_deref(), body).await
    };
    let tenant = json!({"id": "acme", "display_name": "Acme"});
    let r = srv
        .call("POST", "/v1/tenants", Some(admin), Some(tenant))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // API keys, one per job.
    let mut keys = std::collections::BTreeMap::new();
    for scopes in [
        vec!["keys:manage"],
        vec!["tokens:issue"],
        vec!["tokens:verify"],
        vec!["tokens:revoke"],
        vec!["sessions:write", "sessions:read"],
        vec!["audit:read"],
    ] {
        let b = post_as(
            srv,
            admin,
            "/api-keys",
            json!({"name": scopes.join(" "), "scopes": scopes}),
            201,
        )
        .await;
        s.text(format!("the API key {}", scopes[0]), &str_of(&b["key"]));
        keys.insert(scopes[0], (str_of(&b["id"]), str_of(&b["key"])));
    }
    let key = |scope: &str| keys[scope].1.clone();

    // Signing keys of every algorithm, and a token signed by each.
    let algs = [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
    ];
    let mut tokens = Vec::new();
    for alg in algs {
        post_as(srv, &key("keys:manage"), "/keys", json!({"alg": alg}), 201).await;
        let b = post_as(
            srv,
            &key("tokens:issue"),
            "/tokens",
            json!({"sub": "alice", "aud": "api", "alg": alg, "claims": {"role": "reader"}}),
            201,
        )
        .await;
        s.signed(format!("the {alg} token"), &str_of(&b["token"]));
        tokens.push(str_of(&b["token"]));
    }
    let batch = post_as(
        srv,
        &key("tokens:issue"),
        "/tokens/batch",
        json!({"requests": [
            {"sub": "bob", "alg": "HS256"}, {"sub": "bob", "alg": "RS256"},
            {"sub": "bob", "alg": "EdDSA"}, {"sub": "bob", "alg": "nope"}
        ]}),
        200,
    )
    .await;
    for (i, r) in batch["results"].as_array().unwrap().iter().enumerate() {
        if let Some(t) = r["token"].as_str() {
            s.signed(format!("batch token {i}"), t);
            tokens.push(t.to_owned());
        }
    }

    // Verify and introspect, Bearer and Basic; a bad key and a bad secret on the way.
    let (verifier_id, verifier) = keys["tokens:verify"].clone();
    for t in &tokens {
        assert!(is_active(srv, &verifier_id, &verifier, t).await, "{t}");
    }
    s.text("a Basic credential", &basic(&verifier_id, &verifier));
    let near_miss = format!("{verifier}x");
    s.text("a near miss of an API key", &near_miss);
    let bad_basic = basic(&verifier_id, "wrong-secret-0123456789abcdef");
    s.text("a Basic credential with a wrong secret", &bad_basic);
    let r = form(srv, "introspect", Some(&bad_basic), &tokens[0]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = form(
        srv,
        "introspect",
        Some(&format!("Bearer {near_miss}")),
        &tokens[0],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call("GET", T.into(), Some(near_miss.clone()), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A forged token (signature changed) and garbage: inactive, and not logged either.
    let forged = {
        let (head, sig) = tokens[0].rsplit_once('.').unwrap();
        format!("{head}.{}", sig.chars().rev().collect::<String>())
    };
    s.signed("a forged token", &forged);
    let garbage = "not-a-token-but-maybe-a-password-1234567890";
    s.text("a garbage token", garbage);
    for t in [forged.as_str(), garbage] {
        assert!(!is_active(srv, &verifier_id, &verifier, t).await, "{t}");
    }

    // Revocation by token, RFC 7009 with a key and as self-logout.
    let revoker = key("tokens:revoke");
    post_as(
        srv,
        &revoker,
        "/revocations",
        json!({"token": tokens[0]}),
        201,
    )
    .await;
    let bearer = format!("Bearer {revoker}");
    assert_eq!(
        form(srv, "revoke", Some(&bearer), &tokens[1]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        form(srv, "revoke", None, &tokens[2]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        form(srv, "revoke", None, garbage).await.status,
        StatusCode::OK
    );

    // Sessions with CSRF, and a token bound to the session.
    let sessions = key("sessions:write");
    let opened = post_as(
        srv,
        &sessions,
        "/sessions",
        json!({"actor_id": "alice", "actor_type": "user", "ip_address": "203.0.113.7",
               "user_agent": "hygiene/1.0"}),
        201,
    )
    .await;
    let cookie = str_of(&opened["cookie"]);
    let csrf = str_of(&opened["csrf_token"]);
    let sid = str_of(&opened["session"]["id"]);
    s.signed("a session cookie", &cookie);
    s.text("a CSRF token", &csrf);
    let validate = |body: Value, status: u16| {
        let sessions = sessions.clone();
        async move { post_as(srv, &sessions, "/sessions/validate", body, status).await }
    };
    validate(
        json!({"cookie": cookie, "csrf_token": csrf, "touch": true}),
        200,
    )
    .await;
    let wrong_csrf = "wrong-csrf-token-0123456789abcdefgh";
    s.text("a wrong CSRF token", wrong_csrf);
    validate(json!({"cookie": cookie, "csrf_token": wrong_csrf}), 401).await;
    // A character in the middle of the signature: all six of its bits count (the last one
    // carries padding bits too, and could be changed into one that decodes the same).
    let tampered = {
        let i = cookie.len() - 10;
        let c = if &cookie[i..=i] == "A" { "B" } else { "A" };
        format!("{}{c}{}", &cookie[..i], &cookie[i + 1..])
    };
    s.signed("a tampered cookie", &tampered);
    validate(json!({"cookie": tampered}), 401).await;
    let b = post_as(
        srv,
        &key("tokens:issue"),
        "/tokens",
        json!({"sub": "alice", "sid": sid}),
        201,
    )
    .await;
    s.signed("a token bound to a session", &str_of(&b["token"]));

    // Pre-login state with a PKCE verifier: consumed once, then gone.
    let verifier_pkce = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    s.text("a PKCE verifier", verifier_pkce);
    let pre = post_as(
        srv,
        &sessions,
        "/prelogin",
        json!({"state": "st-hygiene", "nonce": "nonce-hygiene", "pkce_verifier": verifier_pkce,
               "redirect_uri": "https://app.example/cb"}),
        201,
    )
    .await;
    let pre_cookie = str_of(&pre["cookie"]);
    s.signed("a pre-login cookie", &pre_cookie);
    let consume = json!({"cookie": pre_cookie, "state": "st-hygiene"});
    let back = post_as(srv, &sessions, "/prelogin/consume", consume.clone(), 200).await;
    assert_eq!(back["pkce_verifier"], verifier_pkce);
    post_as(srv, &sessions, "/prelogin/consume", consume, 410).await;

    // Refresh rotation, then reuse of a rotated token (theft: the family is revoked).
    let issuer = key("tokens:issue");
    let first = post_as(
        srv,
        &issuer,
        "/tokens",
        json!({"sub": "alice", "token_use": "refresh"}),
        201,
    )
    .await;
    let mut refresh = str_of(&first["token"]);
    let original = refresh.clone();
    s.signed("the first refresh token", &refresh);
    let rotate = async |token: &str, status: u16| {
        let body = json!({"refresh_token": token});
        post_as(srv, &issuer, "/tokens/refresh", body, status).await
    };
    for i in 0..2 {
        let b = rotate(&refresh, 200).await;
        let access = str_of(&b["access_token"]);
        s.signed(format!("access token of rotation {i}"), &access);
        refresh = str_of(&b["refresh_token"]);
        s.signed(format!("refresh token of rotation {i}"), &refresh);
    }
    let reuse = rotate(&original, 401).await;
    assert_eq!(reuse["reason"], "refresh_token_reuse", "{reuse}");

    // Key rotation and revocation, signing and session keys; the old cookie still validates.
    let keyman = key("keys:manage");
    for alg in ["ES256", "HS256", "RS256"] {
        let k = post_as(srv, &keyman, "/keys/rotate", json!({"alg": alg}), 201).await;
        let b = post_as(
            srv,
            &issuer,
            "/tokens",
            json!({"sub": "carol", "alg": alg}),
            201,
        )
        .await;
        assert_eq!(b["kid"], k["kid"]);
        s.signed(
            format!("a token of the rotated {alg} key"),
            &str_of(&b["token"]),
        );
    }
    let kid = str_of(&post_as(srv, &keyman, "/keys", json!({"alg": "HS512"}), 201).await["kid"]);
    post_as(
        srv,
        &keyman,
        &format!("/keys/{kid}/revoke"),
        json!({"reason": "x"}),
        200,
    )
    .await;
    post_as(srv, &keyman, "/session-keys/rotate", json!({}), 200).await;
    validate(json!({"cookie": cookie, "csrf_token": csrf}), 200).await;

    // What describes keys carries no private member.
    let jwks = srv
        .get_public("/t/acme/.well-known/jwks.json")
        .await
        .expect(StatusCode::OK);
    assert!(
        jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{jwks}"
    );
    for (what, path) in [
        ("the JWKS", "/t/acme/.well-known/jwks.json".to_owned()),
        ("the key listing", format!("{T}/keys")),
        ("the session key listing", format!("{T}/session-keys")),
        ("the API key listing", format!("{T}/api-keys")),
    ] {
        let r = call("GET", path, Some(keyman.clone()), None).await;
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text);
        assert_no_private_jwk_member(what, &r.json);
    }
    s
}

/// The master key and every private key the store holds, decrypted with it.
async fn stored_key_material(srv: &Server, master_b64: &str, s: &mut Secrets) {
    use sqlx::Connection;
    let master = MasterKey::from_base64(master_b64).expect("master key");
    s.text("the master key", master_b64.trim());
    s.bytes(
        "the master key's bytes",
        &STANDARD.decode(master_b64.trim()).unwrap(),
        &[],
    );
    // `(tenant, kid, sealed material, public JWK, is a session key)`.
    type Sealed = (String, String, Vec<u8>, Option<String>, i32);
    const SEALED: &str = "SELECT tenant, kid, encrypted_private, public_jwk, 0 FROM signing_keys \
        UNION ALL SELECT tenant, kid, encrypted_secret, NULL, 1 FROM session_keys";
    let rows: Vec<Sealed> = match srv.database_url() {
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("PostgreSQL");
            sqlx::query_as(SEALED)
                .fetch_all(&mut c)
                .await
                .expect(SEALED)
        }
        None => {
            let db = srv.data_dir().join("veto.db");
            let url = format!("sqlite://{}?mode=ro", db.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("SQLite");
            sqlx::query_as(SEALED)
                .fetch_all(&mut c)
                .await
                .expect(SEALED)
        }
    };
    let (mut signing_keys, mut session_keys) = (0, 0);
    for (tenant, kid, blob, public_jwk, is_session) in rows {
        // The public members of the key (EC x, y; OKP x; RSA n, e), in the clear by design.
        let public: Vec<Vec<u8>> = public_jwk
            .map(|j| serde_json::from_str::<Value>(&j).expect("public JWK"))
            .iter()
            .flat_map(|j| ["x", "y", "n", "e"].map(|m| j[m].as_str().map(b64_decode)))
            .flatten()
            .collect();
        let plain = if is_session == 1 {
            session_keys += 1;
            let ctx = format!("veto-session-key-v1\0{tenant}\0{kid}");
            master.open_with_context(&ctx, &blob)
        } else {
            signing_keys += 1;
            master.open(&tenant, &kid, &blob)
        }
        .unwrap_or_else(|e| panic!("cannot decrypt key {tenant}/{kid}: {e}"));
        let what = format!("private material of key {tenant}/{kid}");
        s.bytes(what, &plain, &public);
    }
    // Every algorithm, the rotations and the tenants' first keys; two session keys of acme.
    assert!(signing_keys >= 14, "only {signing_keys} signing keys");
    assert!(session_keys >= 2, "only {session_keys} session keys");
}

/// Asserts that the log is a debug log at all (so that its silence means something).
#[track_caller]
fn assert_debug_log(log: &str, marker: &str) {
    let n = log.matches(marker).count();
    assert!(n > 0, "no {marker} line in a debug log:\n{log}");
}

#[tokio::test]
async fn a_debug_text_log_shows_no_secret_before_or_after_a_restart() {
    let mut srv = Server::start_with(&[("VETO_LOG", "debug")]).await;
    let mut secrets = drive(&srv, ADMIN).await;
    let master = std::fs::read_to_string(srv.data_dir().join("master.key")).expect("master.key");
    stored_key_material(&srv, &master, &mut secrets).await;
    let before = srv.stderr();
    // A graceful restart logs the shutdown and a start that decrypts every key (which the new
    // process then signs with).
    srv.restart(false);
    let token = srv.token("acme", "dave").await;
    assert_eq!(srv.reason("acme", &token).await, None);
    let after = srv.stderr();
    for (what, log) in [("the log", &before), ("the log after a restart", &after)] {
        assert_debug_log(log, " DEBUG ");
        secrets.assert_absent(what, log);
    }
    // Nor the audit trail, nor the metrics.
    let audit = srv.get("/v1/tenants/acme/audit?limit=1000").await;
    assert!(audit.items().len() > 10, "{}", audit.text);
    secrets.assert_absent("the audit trail", &audit.text);
    secrets.assert_absent("the metrics", srv.metrics().await);
    // At rest: API keys and CSRF tokens are hashed, key material and PKCE verifiers sealed,
    // tokens and cookies not kept (only their ids). Only the master key's own file holds it.
    if srv.database_url().is_none() {
        secrets.assert_absent_from_files(srv.data_dir(), &["master.key"]);
    }
    eprintln!(
        "{} secrets; {} + {} bytes of log",
        secrets.count(),
        before.len(),
        after.len()
    );
}

#[tokio::test]
async fn a_debug_json_log_shows_no_secret_and_a_generated_admin_key_only_in_its_banner() {
    let master = STANDARD.encode(
        [
            uuid::Uuid::new_v4().into_bytes(),
            uuid::Uuid::new_v4().into_bytes(),
        ]
        .concat(),
    );
    let srv = Server::start_with(&[
        ("VETO_LOG", "debug"),
        ("VETO_LOG_FORMAT", "json"),
        ("VETO_MASTER_KEY", &master),
        ("VETO_BOOTSTRAP_ADMIN_KEY", ""),
    ])
    .await;
    let admin = std::fs::read_to_string(srv.data_dir().join("bootstrap-admin.key"))
        .expect("bootstrap-admin.key")
        .trim()
        .to_owned();
    let mut secrets = drive(&srv, &admin).await;
    stored_key_material(&srv, &master, &mut secrets).await;
    let log = srv.stderr();
    // The contract prints a generated admin key once on stderr, outside the log events: that
    // banner is the one place it may be, and it is there exactly once.
    assert_eq!(log.matches(admin.as_str()).count(), 1, "{log}");
    let banner = log
        .lines()
        .find(|l| l.contains(admin.as_str()))
        .unwrap()
        .to_owned();
    assert!(
        !banner.trim_start().starts_with('{'),
        "a log event shows the key: {banner}"
    );
    let events: String = log
        .lines()
        .filter(|l| !l.contains(admin.as_str()))
        .map(|l| format!("{l}\n"))
        .collect();
    for line in events.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert_debug_log(&events, "\"level\":\"DEBUG\"");
    secrets.assert_absent("the JSON log", &events);
}
