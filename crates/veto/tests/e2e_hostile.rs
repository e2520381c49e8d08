//! Findings of a security review (issue 11), each against the real binary: what a hostile caller
//! or a fault did to the node before, and what it must do now. docs/security.md lists them.
mod common;
use common::*;
use serde_json::json;

const R: &str = "/v1/tenants/default/revocations";

/// Reasons are tenant free text: as metric labels they minted series without bound and showed
/// one tenant's words to anyone reading `/metrics`.
#[tokio::test]
async fn revocation_reasons_never_become_metric_labels() {
    let srv = Server::start().await;
    for i in 0..40 {
        let reason = format!("acme-incident-{i}");
        srv.post(R, json!({"jti": format!("j{i}"), "reason": reason}))
            .await
            .expect(StatusCode::CREATED);
    }
    let until = in_seconds(600);
    srv.post(
        R,
        json!({"jti": "s1", "reason": "Compromised: acme-incident-x", "until": until}),
    )
    .await
    .expect(StatusCode::CREATED);
    let text = srv.metrics().await;
    assert!(
        !text.contains("acme-incident"),
        "a reason leaked into /metrics:\n{text}"
    );
    let samples = prometheus_samples(&text);
    let series: Vec<_> = samples
        .iter()
        .filter(|(n, _, _)| n == "veto_revocations_total")
        .collect();
    // 40 distinct reasons, 2 series: reason class and kind come from closed sets.
    assert_eq!(series.len(), 2, "{series:?}");
    let count = |class: &str, kind: &str| {
        sum_samples(&samples, |n, l| {
            let has = |k: &str, v: &str| l.iter().any(|(a, b)| a == k && b == v);
            n == "veto_revocations_total" && has("reason", class) && has("kind", kind)
        })
    };
    assert_eq!(count("other", "permanent"), 40.0);
    assert_eq!(count("compromised", "suspension"), 1.0);
}

// ---- connections: timeouts, caps, credentials before bodies (finding 1) --------------------

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr_of(srv: &Server) -> SocketAddr {
    srv.url("")
        .trim_start_matches("http://")
        .parse()
        .expect("listen address")
}

/// A connection from `source` (any address of 127.0.0.0/8 reaches loopback on Linux, which lets
/// one test play several clients).
async fn connect_from(srv: &Server, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{source}:0").parse().expect("source"))
        .expect("bind");
    socket.connect(addr_of(srv)).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset); what it said before, if
/// anything. Fails if it is still open after `limit`: the server must close it on its own.
async fn closed_by_server(conn: &mut TcpStream, limit: Duration, what: &str) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what}: the server kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

/// Whether the server closed this connection at once (it was refused by a cap).
async fn refused_at_once(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    // A refused connection is closed right after accept; an admitted one waits for a request.
    matches!(
        tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed() {
    let srv = Server::start_with(&[("VETO_HEADER_TIMEOUT", "1s")]).await;
    // Headers that never finish.
    let mut slow = connect_from(&srv, "127.0.0.1").await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    closed_by_server(&mut slow, Duration::from_secs(15), "half-sent headers").await;
    // A connection that never sends anything.
    let mut silent = connect_from(&srv, "127.0.0.1").await;
    closed_by_server(&mut silent, Duration::from_secs(15), "silent connection").await;
    // A kept-alive connection that goes idle after a complete request.
    let mut idle = connect_from(&srv, "127.0.0.1").await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let said = closed_by_server(&mut idle, Duration::from_secs(15), "idle keep-alive").await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408() {
    let srv = Server::start_with(&[("VETO_BODY_TIMEOUT", "1s")]).await;
    let mut conn = connect_from(&srv, "127.0.0.1").await;
    let head = format!(
        "POST {R} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"jti\":"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let said = closed_by_server(&mut conn, Duration::from_secs(15), "stalled body").await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("VETO_BODY_TIMEOUT"), "{said}");
    // Nothing was written.
    srv.get(&format!("{R}?limit=10"))
        .await
        .expect(StatusCode::OK);
    assert!(srv.get(&format!("{R}?limit=10")).await.items().is_empty());
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    // Held connections must outlive the checks below (idle ones are closed after this).
    let srv = Server::start_with(&[
        ("VETO_MAX_CONNECTIONS_PER_IP", "20"),
        ("VETO_HEADER_TIMEOUT", "60s"),
    ])
    .await;
    let mut hostile = Vec::new();
    for _ in 0..60 {
        hostile.push(connect_from(&srv, "127.0.0.2").await);
    }
    let mut refused = 0;
    for c in &mut hostile {
        if refused_at_once(c).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 40, "20 held, the rest closed at once");
    // Everyone else is served meanwhile: health, and a real issuance.
    srv.get_public("/healthz").await.expect(StatusCode::OK);
    srv.token("default", "u").await;
    let text = srv.metrics().await;
    let samples = prometheus_samples(&text);
    let refusals = sum_samples(&samples, |n, l| {
        n == "veto_connections_refused_total"
            && l.iter()
                .any(|(k, v)| k == "limit" && v == "max_connections_per_ip")
    });
    assert_eq!(refusals, 40.0, "{text}");
    // Closed connections give their slots back.
    drop(hostile);
    eventually_within("slots freed", Duration::from_secs(10), || async {
        let mut c = connect_from(&srv, "127.0.0.2").await;
        !refused_at_once(&mut c).await
    })
    .await;
}

#[tokio::test]
async fn the_node_cap_closes_connections_beyond_it() {
    let srv = Server::start_with(&[
        ("VETO_MAX_CONNECTIONS", "10"),
        ("VETO_MAX_CONNECTIONS_PER_IP", "0"),
        ("VETO_HEADER_TIMEOUT", "60s"),
    ])
    .await;
    let mut conns = Vec::new();
    for i in 0..15 {
        conns.push(connect_from(&srv, &format!("127.0.0.{}", 10 + i)).await);
    }
    let mut refused = 0;
    for c in &mut conns {
        if refused_at_once(c).await {
            refused += 1;
        }
    }
    // Ten slots (one may be held by the test client's kept-alive connection).
    assert!((5..=6).contains(&refused), "{refused} of 15 refused");
    drop(conns);
    eventually_within("a slot again", Duration::from_secs(10), || async {
        srv.http
            .get(srv.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

#[tokio::test]
async fn oauth_endpoints_refuse_bad_credentials_before_reading_a_body() {
    let srv = Server::start().await;
    for (path, auth) in [
        ("/t/default/oauth2/introspect", ""),
        (
            "/t/default/oauth2/introspect",
            "Authorization: Bearer vk_wrong\r\n",
        ),
        (
            "/t/default/oauth2/revoke",
            "Authorization: Bearer vk_wrong\r\n",
        ),
        ("/t/default/oauth2/token", ""),
        (
            "/t/default/oauth2/token",
            "Authorization: Bearer vk_wrong\r\n",
        ),
    ] {
        let mut conn = connect_from(&srv, "127.0.0.1").await;
        // A large body is announced and never sent: the answer must not wait for it.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{path} {auth:?}: no answer before the body"))
            .unwrap();
        let said = String::from_utf8_lossy(&buf[..n]);
        assert!(said.starts_with("HTTP/1.1 401"), "{path} {auth:?}: {said}");
    }
    // An anonymous self-logout is read, but only up to a small form limit.
    let big = format!("token={}", "a".repeat(64 * 1024));
    let r = srv
        .send(
            "anonymous large revoke",
            srv.http
                .post(srv.url("/t/default/oauth2/revoke"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(big),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
}

// ---- what veto issues and stores is what the request says (findings 7, 12) ----------------

#[tokio::test]
async fn a_token_over_the_size_veto_accepts_is_never_issued() {
    let srv = Server::start().await;
    let big = "x".repeat(20 * 1024);
    let r = srv
        .post(
            "/v1/tenants/default/tokens",
            json!({"sub": "u", "claims": {"blob": big}}),
        )
        .await;
    assert_problem_names(&r, 400, "16384 bytes");
    // Just under the limit is fine, and such a token can be revoked by presenting it.
    let fits = "x".repeat(10 * 1024);
    let t = srv
        .issue("default", json!({"sub": "u", "claims": {"blob": fits}}))
        .await;
    let token = str_of(&t["token"]);
    srv.oauth_revoke("default", &token, None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("revoked")
    );
}

#[tokio::test]
async fn duplicate_members_in_claims_and_metadata_are_refused() {
    let srv = Server::start().await;
    let send = |path: &'static str, body: &'static str| {
        srv.send(
            "raw JSON",
            srv.http
                .post(srv.url(path))
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let r = send(
        "/v1/tenants/default/tokens",
        r#"{"sub": "u", "claims": {"role": "user", "role": "admin"}}"#,
    )
    .await;
    assert_problem_names(&r, 400, "\"role\" appears more than once");
    let r = send(
        "/v1/tenants/default/tokens/batch",
        r#"{"requests": [{"sub": "u", "claims": {"n": {"a": 1, "a": 2}}}]}"#,
    )
    .await;
    assert_problem_names(&r, 400, "\"a\" appears more than once");
    let r = send(
        R,
        r#"{"jti": "j1", "metadata": {"ticket": "1", "ticket": "2"}}"#,
    )
    .await;
    assert_problem_names(&r, 400, "\"ticket\" appears more than once");
    let r = send(
        "/v1/tenants/default/revocations/batch",
        r#"{"revocations": [{"jti": "j2", "metadata": {"a": 1, "a": 1}}]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Nothing was written.
    assert!(srv.get(&format!("{R}?limit=10")).await.items().is_empty());
}

// ---- settings are validated at start-up (finding 14) --------------------------------------

#[test]
fn settings_that_cannot_work_are_refused_at_start_by_name() {
    for (var, value, flag) in [
        ("VETO_BODY_LIMIT", "0", "--body-limit"),
        ("VETO_MAX_STALENESS", "0s", "--max-staleness"),
        ("VETO_FEED_POLL_INTERVAL", "0ms", "--feed-poll-interval"),
        ("VETO_PURGE_INTERVAL", "0", "--purge-interval"),
        ("VETO_MAX_CONNECTIONS", "0", "--max-connections"),
        ("VETO_HEADER_TIMEOUT", "0s", "--header-timeout"),
        ("VETO_BODY_TIMEOUT", "0s", "--body-timeout"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_veto"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("VETO_DATABASE_URL")
            .env(var, value)
            .output()
            .expect("run veto");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(flag), "{var}={value}: {stderr}");
        // Refused before anything was created.
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{var}={value} wrote to the data dir"
        );
    }
}

// ---- files and process arguments (findings 9, 10) ----------------------------------------

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(p: &std::path::Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[cfg(unix)]
#[test]
fn the_data_dir_and_its_secrets_are_private_to_the_owner() {
    use std::io::BufRead;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let veto = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_veto"));
        c.env_remove("VETO_DATABASE_URL")
            .env_remove("VETO_BOOTSTRAP_ADMIN_KEY")
            .env_remove("VETO_MASTER_KEY")
            .env("VETO_LOG", "warn");
        c
    };
    // Created private.
    let out = veto()
        .args(["migrate", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("veto.db")), 0o600);
    // Existing files with wide modes are narrowed, with a warning: the directory, the database,
    // a master key, and an admin key file that a new secret is written into.
    set_mode(&data, 0o755);
    set_mode(&data.join("veto.db"), 0o644);
    let key = veto().arg("gen-master-key").output().unwrap().stdout;
    std::fs::write(data.join("master.key"), &key).unwrap();
    set_mode(&data.join("master.key"), 0o644);
    std::fs::write(data.join("bootstrap-admin.key"), "old").unwrap();
    set_mode(&data.join("bootstrap-admin.key"), 0o644);
    let mut child = veto()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("listening on"), "{first}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("narrowed permissions"), "{stderr}");
    for (path, want) in [
        (data.clone(), 0o700),
        (data.join("veto.db"), 0o600),
        (data.join("veto.db-wal"), 0o600),
        (data.join("master.key"), 0o600),
        (data.join("bootstrap-admin.key"), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{}", path.display());
    }
    let admin = std::fs::read_to_string(data.join("bootstrap-admin.key")).unwrap();
    assert!(admin.starts_with("vk_"), "a new admin key was written");
}

#[test]
fn secrets_given_as_flags_are_refused() {
    for args in [
        vec!["serve", "--master-key", "AAAA"],
        vec![
            "serve",
            "--bootstrap-admin-key",
            "secret-on-the-command-line",
        ],
        vec!["master-key", "rotate", "--master-key-previous", "AAAA"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_veto"))
            .args(&args)
            .env("VETO_DATA_DIR", "/nonexistent/never-created")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains("readable by every local user"), "{stderr}");
        assert!(
            stderr.contains("VETO_"),
            "names the variable to use: {stderr}"
        );
    }
}

// ---- purge never revives a token within the clock-skew leeway (finding 6) -----------------

#[tokio::test]
async fn a_purge_margin_below_the_leeway_is_refused() {
    let srv = Server::start_with(&[("VETO_CLOCK_SKEW_SECONDS", "60")]).await;
    // A revoked token that expired 10 s ago is still accepted by its signature and claims for
    // 50 s more (leeway): its row must stay.
    let t = srv
        .issue("default", json!({"sub": "u", "ttl_seconds": 1}))
        .await;
    let token = str_of(&t["token"]);
    srv.revoke("default", json!({"token": token}))
        .await
        .expect(StatusCode::CREATED);
    for margin in [0, 30, 59] {
        let r = srv
            .post("/v1/admin/purge", json!({"safety_margin_seconds": margin}))
            .await;
        assert_problem_names(&r, 400, "VETO_CLOCK_SKEW_SECONDS");
    }
    srv.post("/v1/admin/purge", json!({"safety_margin_seconds": 60}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        srv.reason("default", &token).await.as_deref(),
        Some("revoked")
    );
    // The command line refuses it too.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_veto"));
    cmd.args(["purge", "--safety-margin-seconds", "10", "--data-dir"])
        .arg(srv.data_dir())
        .env("VETO_CLOCK_SKEW_SECONDS", "60")
        .env_remove("VETO_DATABASE_URL");
    if let Some(url) = srv.database_url() {
        cmd.env("VETO_DATABASE_URL", url);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VETO_CLOCK_SKEW_SECONDS"));
}

// ---- iat is never in the future, even right after a cutoff (finding 11) -------------------

#[tokio::test]
async fn tokens_issued_right_after_a_revoke_all_carry_no_future_iat() {
    let srv = Server::start().await;
    for round in 0..3 {
        let before = srv.token("default", "zoe").await;
        srv.post(
            "/v1/tenants/default/subjects/zoe/revoke-all",
            json!({"reason": "logout everywhere"}),
        )
        .await
        .expect(StatusCode::OK);
        // In the same second as the cutoff (as good as always, this soon after it).
        let t = srv.issue("default", json!({"sub": "zoe"})).await;
        let token = str_of(&t["token"]);
        let answered = time::OffsetDateTime::now_utc().unix_timestamp();
        let (_, claims) = decode(&token);
        let iat = claims["iat"].as_i64().unwrap();
        assert!(
            iat <= answered,
            "round {round}: iat {iat} is after the answer ({answered})"
        );
        assert_eq!(srv.reason("default", &token).await, None, "round {round}");
        assert_eq!(
            srv.reason("default", &before).await.as_deref(),
            Some("subject_revoked"),
            "round {round}"
        );
        // And the same for a tenant-wide cutoff, in a batch.
        srv.post("/v1/tenants/default/revoke-all", json!({"reason": "r"}))
            .await
            .expect(StatusCode::OK);
        let b = srv
            .post(
                "/v1/tenants/default/tokens/batch",
                json!({"requests": [{"sub": "a"}, {"sub": "b"}]}),
            )
            .await
            .expect(StatusCode::OK);
        let answered = time::OffsetDateTime::now_utc().unix_timestamp();
        for item in b["results"].as_array().unwrap() {
            let (_, claims) = decode(&str_of(&item["token"]));
            assert!(claims["iat"].as_i64().unwrap() <= answered, "{item}");
            assert_eq!(srv.reason("default", &str_of(&item["token"])).await, None);
        }
    }
}

// ---- lists page and tenants have caps (finding 13) ----------------------------------------

#[tokio::test]
async fn signing_keys_page_like_every_list_and_a_tenant_holds_at_most_1000() {
    let srv = Server::start().await;
    srv.create_tenant("capped").await;
    let initial = srv.get("/v1/tenants/capped/keys").await.items().len();
    for _ in 0..5 {
        srv.create_key("capped", "ES256").await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/tenants/capped/keys?limit=2".to_owned(),
            Some(c) => format!("/v1/tenants/capped/keys?limit=2&cursor={c}"),
        };
        let page = srv.get(&path).await.expect(StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        seen.extend(items.iter().map(|k| str_of(&k["kid"])));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(
        (seen.len(), unique.len()),
        (initial + 5, initial + 5),
        "{seen:?}"
    );
    assert_problem(&srv.get("/v1/tenants/capped/keys?limit=1001").await, 400);
    assert_problem(&srv.get("/v1/tenants/capped/keys?cursor=nope").await, 400);
    // The cap: 1,000 stored keys.
    for _ in initial + 5..1000 {
        srv.post("/v1/tenants/capped/keys", json!({"alg": "HS256"}))
            .await
            .expect(StatusCode::CREATED);
    }
    let r = srv
        .post("/v1/tenants/capped/keys", json!({"alg": "HS256"}))
        .await;
    assert_problem_names(&r, 409, "1000 signing keys");
    let r = srv
        .post("/v1/tenants/capped/keys/rotate", json!({"alg": "HS256"}))
        .await;
    assert_problem(&r, 409);
    // Other tenants are not affected.
    srv.create_key("default", "HS256").await;
}

#[tokio::test]
async fn api_keys_and_session_keys_have_per_tenant_caps() {
    let srv = Server::start().await;
    for i in 0..1000 {
        srv.post(
            "/v1/tenants/default/api-keys",
            json!({"name": format!("k{i}"), "scopes": ["tokens:verify"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    }
    let r = srv
        .post(
            "/v1/tenants/default/api-keys",
            json!({"name": "one more", "scopes": ["tokens:verify"]}),
        )
        .await;
    assert_problem_names(&r, 409, "1000 API keys");
    // Deleting one makes room.
    let first = srv
        .get("/v1/tenants/default/api-keys?limit=1")
        .await
        .items();
    srv.delete(&format!(
        "/v1/tenants/default/api-keys/{}",
        str_of(&first[0]["id"])
    ))
    .await;
    srv.post(
        "/v1/tenants/default/api-keys",
        json!({"name": "room again", "scopes": ["tokens:verify"]}),
    )
    .await
    .expect(StatusCode::CREATED);
    // Session keys: 100.
    let mut last = StatusCode::OK;
    for _ in 0..101 {
        let r = srv
            .post("/v1/tenants/default/session-keys/rotate", json!({}))
            .await;
        last = r.status;
        if r.status != StatusCode::OK {
            assert_problem_names(&r, 409, "100 session keys");
            break;
        }
    }
    assert_eq!(last, StatusCode::CONFLICT);
}

// ---- a permanent revocation supersedes a suspension (finding 4) --------------------------

#[tokio::test]
async fn a_permanent_revocation_makes_a_suspension_permanent() {
    let srv = Server::start().await;
    let until = in_seconds(600);
    // Single: suspended, then revoked for good.
    let t1 = str_of(&srv.issue("default", json!({"sub": "u"})).await["token"]);
    srv.revoke("default", json!({"token": t1, "until": until}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        srv.reason("default", &t1).await.as_deref(),
        Some("suspended")
    );
    let rec = srv
        .revoke("default", json!({"token": t1, "reason": "compromised"}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (rec["status"].clone(), rec["until"].clone()),
        (json!("revoked"), json!(null)),
        "{rec}"
    );
    assert_eq!(rec["reason"], json!("compromised"));
    assert_eq!(srv.reason("default", &t1).await.as_deref(), Some("revoked"));
    // It cannot be lifted any more.
    let jti = str_of(&rec["jti"]);
    assert_problem(&srv.delete(&format!("{R}/{jti}")).await, 409);
    // Batch.
    srv.post(R, json!({"jti": "b1", "until": until}))
        .await
        .expect(StatusCode::CREATED);
    let out = srv
        .post(
            &format!("{R}/batch"),
            json!({"revocations": [{"jti": "b1"}, {"jti": "b2"}]}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        out,
        json!({"created": 1, "existing": 1, "made_permanent": 1})
    );
    let b1 = srv.get(&format!("{R}/b1")).await.expect(StatusCode::OK);
    assert_eq!(b1["status"], json!("revoked"), "{b1}");
    // RFC 7009: revoking a suspended token makes it permanent.
    let t2 = str_of(&srv.issue("default", json!({"sub": "v"})).await["token"]);
    srv.revoke("default", json!({"token": t2, "until": until}))
        .await
        .expect(StatusCode::CREATED);
    srv.oauth_revoke("default", &t2, Some(ADMIN))
        .await
        .expect(StatusCode::OK);
    assert_eq!(srv.reason("default", &t2).await.as_deref(), Some("revoked"));
    // Audited, once per jti made permanent.
    let audit = srv
        .get("/v1/tenants/default/audit?action=revocation.make_permanent")
        .await
        .items();
    assert_eq!(audit.len(), 3, "{audit:?}");
    // Survives a restart (it is the store's state, not only memory's).
    let mut srv = srv;
    srv.crash_and_restart();
    assert_eq!(srv.reason("default", &t1).await.as_deref(), Some("revoked"));
    assert_eq!(srv.reason("default", &t2).await.as_deref(), Some("revoked"));
}
