//! Test harness: runs the real `veto` binary on an ephemeral loopback port with its own data
//! directory, and talks to it over HTTP the way a client would.
//!
//! Every test starts its own server (`Server::start`), so tests are independent and run in
//! parallel; the child process is killed when the `Server` is dropped. Only what the HTTP
//! contract (`shared/spec/api.md`) and `veto serve --help` promise is relied on.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// Secret of the bootstrap admin key every test server starts with (`VETO_BOOTSTRAP_ADMIN_KEY`).
pub const ADMIN: &str = "test-admin-secret-0123456789abcdef";

/// Every scope a tenant's key may hold (the contract's table, without the admin-only
/// `tenants:manage`).
pub const TENANT_SCOPES: [&str; 7] = [
    "keys:manage",
    "tokens:issue",
    "tokens:verify",
    "tokens:revoke",
    "sessions:write",
    "sessions:read",
    "audit:read",
];

/// How long a server may take to print `listening on ADDR`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `Authorization` header of the admin key.
pub fn admin() -> (&'static str, String) {
    ("authorization", format!("Bearer {ADMIN}"))
}

/// A client with no connection reuse across tests (each test has its own server anyway).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client")
}

/// A running `veto serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` as printed by the server.
    pub base: String,
    dir: tempfile::TempDir,
    /// The environment the child was started with (restarts reuse it).
    env: Vec<(String, String)>,
    /// Everything the child wrote on stderr (logs), drained continuously so a chatty server
    /// never blocks on a full pipe; shown when a test fails.
    stderr: Arc<Mutex<String>>,
    pub http: reqwest::Client,
}

/// Starts `veto serve` on `dir` and waits for `listening on ADDR` on stdout.
fn spawn(dir: &Path, env: &[(String, String)]) -> (Child, String, Arc<Mutex<String>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veto"));
    cmd.arg("serve")
        // Nothing from the developer's shell (a stray VETO_* variable) leaks into the server.
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VETO_LISTEN", "127.0.0.1:0")
        .env("VETO_DATA_DIR", dir)
        .env(
            "VETO_LOG",
            std::env::var("VETO_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("VETO_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Ok(bt) = std::env::var("RUST_BACKTRACE") {
        cmd.env("RUST_BACKTRACE", bt);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn veto");

    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err_pipe = child.stderr.take().expect("stderr");
    let sink = Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = err_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });

    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        // Keep draining: the server must never see a closed stdout.
        for _ in lines {}
    });
    let line = rx.recv_timeout(START_TIMEOUT);
    match line {
        Ok(Some(Ok(line))) if line.starts_with("listening on ") => {
            let addr = line["listening on ".len()..].trim().to_owned();
            (child, format!("http://{addr}"), stderr)
        }
        other => {
            let _ = child.kill();
            let _ = child.wait();
            // Let the stderr thread catch the last words.
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "veto serve did not print `listening on ADDR` within {START_TIMEOUT:?} \
                 (first stdout line: {other:?}); stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
    }
}

impl Server {
    /// A fresh server: empty data directory, bootstrap admin key `ADMIN`.
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// A fresh server with extra `VETO_*` settings. An empty value removes a default
    /// (`("VETO_BOOTSTRAP_ADMIN_KEY", "")` starts without a bootstrap key).
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all: Vec<(String, String)> = vec![
            ("VETO_BOOTSTRAP_ADMIN_KEY".into(), ADMIN.into()),
            // Tests send many bad-credential requests from one address: a limit no test
            // reaches keeps the limiter in the path without limiting (e2e_rate_limit sets its own).
            ("VETO_RATE_LIMIT_PER_MINUTE".into(), "1000000".into()),
            ("VETO_RATE_LIMIT_BURST".into(), "1000000".into()),
        ];
        if let Some(url) = backend_database().await {
            all.push(("VETO_DATABASE_URL".into(), url));
        }
        merge(&mut all, env);
        let (child, base, stderr) = spawn(dir.path(), &all);
        Server {
            child,
            base,
            dir,
            env: all,
            stderr,
            http: client(),
        }
    }

    /// Another node on the same store (PostgreSQL: the same database; SQLite: the same file),
    /// with the same master key and public URL, so that tokens of one verify on the other.
    pub async fn start_node(&self, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all = self.env.clone();
        all.retain(|(k, _)| k != "VETO_PUBLIC_URL" && k != "VETO_DATA_DIR");
        all.push(("VETO_PUBLIC_URL".into(), self.public_url()));
        if !all.iter().any(|(k, _)| k == "VETO_DATABASE_URL") {
            // SQLite: the second node opens the first one's file.
            all.push((
                "VETO_DATA_DIR".into(),
                self.dir.path().display().to_string(),
            ));
        }
        if !all.iter().any(|(k, _)| k.starts_with("VETO_MASTER_KEY")) {
            all.push((
                "VETO_MASTER_KEY_FILE".into(),
                self.dir.path().join("master.key").display().to_string(),
            ));
        }
        merge(&mut all, env);
        let data = all
            .iter()
            .find(|(k, _)| k == "VETO_DATA_DIR")
            .map(|(_, v)| std::path::PathBuf::from(v))
            .unwrap_or_else(|| dir.path().to_owned());
        let (child, base, stderr) = spawn(&data, &all);
        Server {
            child,
            base,
            dir,
            env: all,
            stderr,
            http: client(),
        }
    }

    /// The `VETO_DATABASE_URL` this server runs on, when PostgreSQL.
    pub fn database_url(&self) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == "VETO_DATABASE_URL")
            .map(|(_, v)| v.clone())
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the server (`kill -9` when `crash`, else SIGTERM and wait) and starts it again on the
    /// same data directory with the same settings. The new process listens on a new ephemeral
    /// port; unless the test set `VETO_PUBLIC_URL`, the first address stays the public URL so
    /// that the issuer of earlier tokens is unchanged.
    pub fn restart(&mut self, crash: bool) {
        self.stop(crash);
        self.start_again();
    }

    /// Stops the server (`kill -9` when `crash`, else SIGTERM and wait) and leaves it stopped
    /// until [`start_again`](Self::start_again); the public URL stays the first address.
    pub fn stop(&mut self, crash: bool) {
        if !self.env.iter().any(|(k, _)| k == "VETO_PUBLIC_URL") {
            self.env.push(("VETO_PUBLIC_URL".into(), self.base.clone()));
        }
        if crash {
            self.child.kill().expect("kill -9");
        } else {
            // SIGTERM through the shell's builtin `kill` (no extra crate, no procps needed).
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -TERM {}", self.child.id())])
                .status();
            // Graceful shutdown is expected to be quick; fall back to SIGKILL.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while self.child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.wait();
    }

    /// Starts a stopped server again on the same data directory and settings, on a new
    /// ephemeral port (`base` changes).
    pub fn start_again(&mut self) {
        let (child, base, stderr) = spawn(self.dir.path(), &self.env);
        self.child = child;
        self.base = base;
        self.stderr = stderr;
    }

    /// `kill -9`, then start again on the same data directory.
    pub fn crash_and_restart(&mut self) {
        self.restart(true);
    }

    /// `kill -9`, then start again on the same data directory with changed settings.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        merge(&mut self.env, env);
        self.restart(true);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The public URL: `VETO_PUBLIC_URL` when set (restarts pin it), else the listen address.
    pub fn public_url(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "VETO_PUBLIC_URL")
            .map_or_else(|| self.base.clone(), |(_, v)| v.clone())
    }

    /// The issuer of `tenant`'s tokens: `<public url>/t/<tenant>`.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}", self.public_url())
    }

    /// Sends a request, with `key` as Bearer credentials and `body` as JSON. Any 5xx fails the
    /// test on the spot (the contract: bad input is never a 500), except `/readyz`'s 503.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(method, path, req).await
    }

    /// POST as admin, returning whatever comes back, 5xx included: for the tests that expect a
    /// 503 (a node cut off from its database), which `call` would treat as a failure.
    pub async fn post_expecting_outage(&self, path: &str, body: Value) -> Resp {
        let resp = self
            .http
            .post(self.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Resp::read(resp).await
    }

    /// Sends a prepared request (raw bodies, forms, odd headers) with the same 5xx check.
    pub async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Resp {
        self.finish(what, "", req).await
    }

    async fn finish(&self, method: &str, path: &str, req: reqwest::RequestBuilder) -> Resp {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nserver log:\n{}", self.stderr()));
        let resp = Resp::read(resp).await;
        assert!(
            !resp.status.is_server_error()
                || (path == "/readyz" && resp.status == StatusCode::SERVICE_UNAVAILABLE),
            "{method} {path} answered {}: {}\nserver log:\n{}",
            resp.status,
            resp.text,
            self.stderr()
        );
        resp
    }

    /// POST as admin.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(ADMIN), Some(body)).await
    }

    /// GET as admin.
    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, Some(ADMIN), None).await
    }

    /// DELETE as admin.
    pub async fn delete(&self, path: &str) -> Resp {
        self.call("DELETE", path, Some(ADMIN), None).await
    }

    /// GET without credentials (public endpoints).
    pub async fn get_public(&self, path: &str) -> Resp {
        self.call("GET", path, None, None).await
    }

    pub async fn create_tenant(&self, id: &str) -> Value {
        let r = self
            .post("/v1/tenants", json!({"id": id, "display_name": id}))
            .await;
        r.expect(StatusCode::CREATED)
    }

    /// Creates an API key of `tenant` with `scopes`; returns `(id, secret)`.
    pub async fn create_api_key(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let b = self
            .post(
                &format!("/v1/tenants/{tenant}/api-keys"),
                json!({"name": format!("test {}", scopes.join(" ")), "scopes": scopes}),
            )
            .await
            .expect(StatusCode::CREATED);
        (str_of(&b["id"]), str_of(&b["key"]))
    }

    /// Creates a signing key; returns its kid.
    pub async fn create_key(&self, tenant: &str, alg: &str) -> String {
        let b = self
            .post(&format!("/v1/tenants/{tenant}/keys"), json!({"alg": alg}))
            .await
            .expect(StatusCode::CREATED);
        str_of(&b["kid"])
    }

    /// Issues a token as admin; returns the whole 201 response.
    pub async fn issue(&self, tenant: &str, body: Value) -> Value {
        self.post(&format!("/v1/tenants/{tenant}/tokens"), body)
            .await
            .expect(StatusCode::CREATED)
    }

    /// A token for `sub` with audience `api`.
    pub async fn token(&self, tenant: &str, sub: &str) -> String {
        str_of(&self.issue(tenant, json!({"sub": sub, "aud": "api"})).await["token"])
    }

    /// `POST …/tokens/verify` as admin; the 200 body.
    pub async fn verify(&self, tenant: &str, token: &str) -> Value {
        self.post(
            &format!("/v1/tenants/{tenant}/tokens/verify"),
            json!({"token": token}),
        )
        .await
        .expect(StatusCode::OK)
    }

    /// `None` when the token is active, else its reason.
    pub async fn reason(&self, tenant: &str, token: &str) -> Option<String> {
        let v = self.verify(tenant, token).await;
        match v["active"].as_bool() {
            Some(true) => None,
            Some(false) => Some(
                v["reason"]
                    .as_str()
                    .unwrap_or_else(|| panic!("inactive without reason: {v}"))
                    .to_owned(),
            ),
            None => panic!("verify answer without boolean `active`: {v}"),
        }
    }

    /// RFC 7662 introspection as admin; the 200 body.
    pub async fn introspect(&self, tenant: &str, token: &str) -> Value {
        let req = self
            .http
            .post(self.url(&format!("/t/{tenant}/oauth2/introspect")))
            .bearer_auth(ADMIN)
            .form(&[("token", token)]);
        self.send("introspect", req).await.expect(StatusCode::OK)
    }

    /// RFC 7009 revocation, with Bearer `key` or without credentials.
    pub async fn oauth_revoke(&self, tenant: &str, token: &str, key: Option<&str>) -> Resp {
        let mut req = self
            .http
            .post(self.url(&format!("/t/{tenant}/oauth2/revoke")))
            .form(&[("token", token)]);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        self.send("oauth2/revoke", req).await
    }

    /// Revokes a jti as admin; returns the response (201 first time, 200 on repeats).
    pub async fn revoke(&self, tenant: &str, body: Value) -> Resp {
        self.post(&format!("/v1/tenants/{tenant}/revocations"), body)
            .await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        let r = self.get_public("/metrics").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.text
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.stderr();
            let tail: String = {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            };
            eprintln!("---- veto server log (last 60 lines) ----\n{tail}\n----");
        }
    }
}

/// Which backend the end-to-end tests run on: `VETO_E2E_BACKEND=postgres` runs every server on
/// a fresh PostgreSQL database of its own (created on the server at `VETO_TEST_DATABASE_URL`,
/// which `scripts/test.sh` starts); unset or `sqlite`, on the embedded store.
pub fn e2e_backend() -> String {
    std::env::var("VETO_E2E_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

/// A fresh database for one server when the backend is PostgreSQL.
async fn backend_database() -> Option<String> {
    match e2e_backend().as_str() {
        "sqlite" | "" => None,
        "postgres" => Some(fresh_database().await),
        other => panic!("VETO_E2E_BACKEND={other:?}: use sqlite or postgres"),
    }
}

/// Creates an empty database on the test PostgreSQL server and returns its URL.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let admin = std::env::var("VETO_TEST_DATABASE_URL").expect(
        "VETO_TEST_DATABASE_URL is not set: run ./scripts/test.sh, which starts PostgreSQL",
    );
    let name = format!("veto_e2e_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to VETO_TEST_DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    // Same server and credentials, another database: replace the path of the admin URL.
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    if query.is_empty() {
        format!("{root}/{name}")
    } else {
        format!("{root}/{name}?{query}")
    }
}

/// Polls `check` every 20 ms until it returns true; fails the test after `limit`, saying `what`.
/// For effects that arrive asynchronously (another node, Redis); the limit is a generous deadline
/// against hanging, never a measurement.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn merge(all: &mut Vec<(String, String)>, env: &[(&str, &str)]) {
    for (k, v) in env {
        all.retain(|(k2, _)| k2 != k);
        if !v.is_empty() {
            all.push(((*k).into(), (*v).into()));
        }
    }
}

/// A TCP proxy the test can cut (every connection dropped, new ones closed at once), restore,
/// and point at another address: an outage of whatever is behind it, for the clients going
/// through it alone, or a server that moved to a new port after a restart.
pub struct Proxy {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    target: Arc<Mutex<String>>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target` (`host:port`).
    pub async fn start(target: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let target = Arc::new(Mutex::new(target));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (o, t, c) = (open.clone(), target.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed
                }
                let target = t.lock().unwrap().clone();
                c.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                }));
            }
        });
        Proxy {
            port,
            open,
            target,
            conns,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`, for HTTP clients.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// New connections go to `target` (`host:port`); open ones stay where they are.
    pub fn retarget(&self, target: String) {
        *self.target.lock().unwrap() = target;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON; `Value::Null` when it is not JSON.
    pub json: Value,
}

impl Resp {
    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        self.json
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `items` of a list answer.
    #[track_caller]
    pub fn items(&self) -> Vec<Value> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        self.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items array: {}", self.text))
            .clone()
    }
}

/// Asserts an RFC 9457 problem: `status`, content type `application/problem+json`, and the
/// members `type`, `title`, `status` (equal to the HTTP status) and a non-empty `detail`.
#[track_caller]
pub fn assert_problem(resp: &Resp, status: u16) {
    assert_eq!(resp.status.as_u16(), status, "{}", resp.text);
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?} for {}",
        resp.text
    );
    let b = &resp.json;
    for f in ["type", "title"] {
        assert!(b[f].is_string(), "problem without string `{f}`: {b}");
    }
    assert_eq!(b["status"], json!(status), "problem status member: {b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "problem without detail: {b}"
    );
}

/// Like `assert_problem`, and the detail (or a field error) mentions `needle`, so that the
/// caller knows what to fix.
#[track_caller]
pub fn assert_problem_names(resp: &Resp, status: u16, needle: &str) {
    assert_problem(resp, status);
    let detail = resp.json["detail"].as_str().unwrap_or_default();
    let fields = resp.json["errors"].to_string();
    assert!(
        detail.contains(needle) || fields.contains(needle),
        "problem does not name {needle:?}: {}",
        resp.text
    );
}

/// Splits a compact JWS into (header, claims) without verifying anything.
pub fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let seg = parts.next().expect("segment");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).expect("base64url")).expect("json")
    };
    (next(), next())
}

/// base64url without padding, as JOSE uses it.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("base64url")
}

#[track_caller]
pub fn str_of(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// Parses an RFC 3339 timestamp (and checks it is UTC, `Z`).
#[track_caller]
pub fn rfc3339(v: &Value) -> time::OffsetDateTime {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not an RFC 3339 string: {v}"));
    assert!(s.ends_with('Z'), "not UTC: {s}");
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339: {s}: {e}"))
}

/// `now + secs` as an RFC 3339 UTC string.
pub fn in_seconds(secs: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(secs))
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// A Prometheus label: `(name, value)`.
pub type Label = (String, String);

/// One sample of a Prometheus text exposition: `(name, labels, value)`.
pub type Sample = (String, Vec<Label>, f64);

/// The sum of the samples whose name and labels satisfy `pred`.
pub fn sum_samples(samples: &[Sample], pred: impl Fn(&str, &[Label]) -> bool) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| pred(n, l))
        .map(|(_, _, v)| v)
        .sum()
}

/// The samples of a Prometheus text exposition.
pub fn prometheus_samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let mut labels = Vec::new();
                // Label values here never contain `",`; good enough for our own metrics.
                for pair in body.split("\",") {
                    if let Some((k, v)) = pair.split_once('=') {
                        labels.push((k.trim().to_owned(), v.trim_matches('"').to_owned()));
                    }
                }
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), Vec::new()),
        };
        out.push((name, labels, value));
    }
    out
}

/// Where Debian puts the thread-safe libfaketime (`LD_PRELOAD` it to move a server's wall
/// clock; `scripts/test.sh` installs the package).
pub fn faketime_lib() -> &'static str {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or_else(|| {
        panic!("libfaketime is missing: apt-get install libfaketime (scripts/test.sh does)")
    })
}

/// How a request to the OAuth endpoints authenticates its client.
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// HTTP Basic with client id and secret, each form-urlencoded first (RFC 6749 §2.3.1).
    Basic(&'a str, &'a str),
    /// A raw Authorization header value.
    Raw(&'a str),
}

/// One value form-urlencoded, as HTTP Basic credentials for OAuth are (RFC 6749 §2.3.1).
pub fn form_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

/// `POST /t/{tenant}/oauth2/{endpoint}` with `form`, authenticated as `auth`.
pub async fn oauth(
    srv: &Server,
    tenant: &str,
    endpoint: &str,
    auth: Auth<'_>,
    form: &[(&str, &str)],
) -> Resp {
    let mut req = srv
        .http
        .post(srv.url(&format!("/t/{tenant}/oauth2/{endpoint}")))
        .form(form);
    req = match auth {
        Auth::None => req,
        Auth::Bearer(k) => req.bearer_auth(k),
        Auth::Basic(id, secret) => {
            let pair = format!("{}:{}", form_encode(id), form_encode(secret));
            let cred = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pair);
            req.header("authorization", format!("Basic {cred}"))
        }
        Auth::Raw(v) => req.header("authorization", v),
    };
    srv.send(endpoint, req).await
}

/// A verify answer without its `position` (which every answer carries, as a string): the
/// verdict, for comparing whole answers.
#[track_caller]
pub fn verdict(mut v: Value) -> Value {
    let position = v.as_object_mut().and_then(|o| o.remove("position"));
    assert!(
        position.as_ref().is_some_and(Value::is_string),
        "a verify answer names the position it was judged on: {v}"
    );
    v
}

/// One Server-Sent Event as a revocation stream sends it (docs/stream.md).
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// A client of `GET …/revocations/stream`, reading events as they arrive.
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
}

impl EventStream {
    /// Opens the stream of `tenant` with `key`; `resume` is sent as `Last-Event-ID`. Panics
    /// unless the answer is a 200 event stream.
    pub async fn open(
        server: &Server,
        tenant: &str,
        key: &str,
        resume: Option<&str>,
    ) -> EventStream {
        let mut req = server
            .http
            .get(server.url(&format!("/v1/tenants/{tenant}/revocations/stream")))
            .bearer_auth(key);
        if let Some(p) = resume {
            req = req.header("Last-Event-ID", p);
        }
        let resp = req.send().await.expect("stream request");
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        EventStream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the stream ended. Fails the test after `limit` without
    /// one (a deadline against hanging, not a measurement).
    pub async fn next_within(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim_start().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                let data = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return Some(Sse { event, id, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("no stream event within {limit:?}"))
                .expect("stream read");
            match chunk {
                Some(bytes) => self
                    .buf
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => return None,
            }
        }
    }

    /// The next event that is not a heartbeat.
    pub async fn next_change(&mut self) -> Sse {
        loop {
            let e = self
                .next_within(Duration::from_secs(10))
                .await
                .expect("the stream ended");
            if e.event != "heartbeat" {
                return e;
            }
        }
    }

    /// Every snapshot part up to the last, merged: (position, merged data).
    pub async fn snapshot(&mut self) -> (String, Value) {
        let mut merged = serde_json::Map::new();
        loop {
            let e = self.next_change().await;
            assert_eq!(e.event, "snapshot", "{e:?}");
            assert_eq!(e.data["position"].as_str(), Some(e.id.as_str()));
            for (k, v) in e.data.as_object().expect("object") {
                match (merged.get_mut(k), v) {
                    (Some(Value::Array(have)), Value::Array(more)) => have.extend(more.clone()),
                    _ => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
            if e.data["last"] == json!(true) {
                return (e.id, Value::Object(merged));
            }
        }
    }
}
