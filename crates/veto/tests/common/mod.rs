//! Test harness: runs the real `veto` binary on an ephemeral loopback port with its own data
//! directory, and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
pub use reqwest::StatusCode;
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-secret-0123456789abcdef";

pub struct Server {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

fn spawn(dir: &std::path::Path, env: &[(String, String)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_veto"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VETO_LISTEN", "127.0.0.1:0")
        .env("VETO_DATA_DIR", dir)
        .env("VETO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn veto");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(line) if line.starts_with("listening on ") => {
            let addr = line.trim().trim_start_matches("listening on ").to_owned();
            (child, format!("http://{addr}"))
        }
        other => {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("veto did not start ({other:?}); stderr:\n{err}");
        }
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// Starts with the bootstrap admin key `ADMIN` (unless `env` overrides it) and no clock skew.
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all: Vec<(String, String)> = vec![
            ("VETO_BOOTSTRAP_ADMIN_KEY".into(), ADMIN.into()),
            ("VETO_CLOCK_SKEW_SECONDS".into(), "0".into()),
        ];
        for (k, v) in env {
            all.retain(|(k2, _)| k2 != k);
            all.push(((*k).into(), (*v).into()));
        }
        all.retain(|(_, v)| !v.is_empty());
        let (child, base) = spawn(dir.path(), &all);
        Server {
            child,
            base,
            dir,
            env: all,
            http: reqwest::Client::new(),
        }
    }

    /// `kill -9`, then start again on the same data directory (and the same settings).
    pub fn crash_and_restart(&mut self) {
        // Tokens name the issuer, which defaults to the listen address; the new process gets
        // another ephemeral port, so keep the first issuer unless a test changes it.
        if !self.env.iter().any(|(k, _)| k == "VETO_PUBLIC_URL") {
            self.env.push(("VETO_PUBLIC_URL".into(), self.base.clone()));
        }
        self.child.kill().expect("kill");
        let _ = self.child.wait();
        let (child, base) = spawn(self.dir.path(), &self.env);
        self.child = child;
        self.base = base;
    }

    /// Restart with changed settings.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        for (k, v) in env {
            self.env.retain(|(k2, _)| k2 != k);
            self.env.push(((*k).into(), (*v).into()));
        }
        self.crash_and_restart();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(
            status.as_u16() < 500,
            "{method} {path} answered {status}: {text}"
        );
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", path, Some(ADMIN), Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send("GET", path, Some(ADMIN), None).await
    }

    pub async fn create_tenant(&self, id: &str) {
        let (s, b) = self
            .post("/v1/tenants", json!({"id": id, "display_name": id}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }

    pub async fn create_api_key(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let (s, b) = self
            .post(
                &format!("/v1/tenants/{tenant}/api-keys"),
                json!({"name": "test", "scopes": scopes}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        (
            b["id"].as_str().unwrap().to_owned(),
            b["key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn create_key(&self, tenant: &str, alg: &str) -> String {
        let (s, b) = self
            .post(&format!("/v1/tenants/{tenant}/keys"), json!({"alg": alg}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["kid"].as_str().unwrap().to_owned()
    }

    /// Issues a token; returns the whole response.
    pub async fn issue(&self, tenant: &str, body: Value) -> Value {
        let (s, b) = self
            .post(&format!("/v1/tenants/{tenant}/tokens"), body)
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    pub async fn token(&self, tenant: &str, sub: &str) -> String {
        self.issue(tenant, json!({"sub": sub, "aud": "api"})).await["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn verify(&self, tenant: &str, token: &str) -> Value {
        let (s, b) = self
            .post(
                &format!("/v1/tenants/{tenant}/tokens/verify"),
                json!({"token": token}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }

    /// `None` when active, else the reason.
    pub async fn reason(&self, tenant: &str, token: &str) -> Option<String> {
        let v = self.verify(tenant, token).await;
        if v["active"] == json!(true) {
            None
        } else {
            Some(v["reason"].as_str().expect("reason").to_owned())
        }
    }

    pub async fn introspect(&self, tenant: &str, token: &str) -> Value {
        let resp = self
            .http
            .post(self.url(&format!("/t/{tenant}/oauth2/introspect")))
            .bearer_auth(ADMIN)
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("json")
    }

    pub async fn oauth_revoke(&self, tenant: &str, token: &str, key: Option<&str>) -> StatusCode {
        let mut req = self
            .http
            .post(self.url(&format!("/t/{tenant}/oauth2/revoke")))
            .form(&[("token", token)]);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("revoke");
        let s = resp.status();
        assert!(s.as_u16() < 500, "{s}");
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits a compact JWS into (header, claims).
pub fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let seg = parts.next().expect("segment");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).expect("base64")).expect("json")
    };
    (next(), next())
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Asserts an RFC 9457 problem with `status`.
pub fn assert_problem(status: StatusCode, body: &Value, want: u16) {
    assert_eq!(status.as_u16(), want, "{body}");
    for f in ["type", "title", "status", "detail"] {
        assert!(body.get(f).is_some(), "problem without {f}: {body}");
    }
    assert_eq!(body["status"], json!(want));
}
