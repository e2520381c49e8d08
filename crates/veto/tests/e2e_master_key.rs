//! Master key rotation (`veto master-key rotate`, docs/deployment.md): a server on the old key;
//! restarted with the new key and the old as VETO_MASTER_KEY_PREVIOUS; the CLI re-seals every
//! stored secret while it serves; restarted with the new key alone, everything still works, and
//! the old (or any wrong) key refuses to start.
mod common;
use base64::Engine;
use common::*;
use serde_json::{Value, json};

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

const ALGS: [&str; 4] = ["ES256", "RS256", "HS256", "EdDSA"];
const PKCE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Runs `veto` with `args` on the server's store, with `env`; (success, stdout, stderr).
fn veto(srv: &Server, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_veto"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VETO_DATA_DIR", srv.data_dir())
        .env("VETO_LISTEN", "127.0.0.1:0")
        .env("VETO_LOG", "warn");
    if let Some(url) = srv.database_url() {
        cmd.env("VETO_DATABASE_URL", url);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run veto");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rotate(srv: &Server, new: &str, previous: &str) -> Value {
    let (ok, stdout, stderr) = veto(
        srv,
        &["master-key", "rotate", "--batch", "2"],
        &[
            ("VETO_MASTER_KEY", new),
            ("VETO_MASTER_KEY_PREVIOUS", previous),
        ],
    );
    assert!(ok, "rotate failed:\n{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).expect("a JSON summary on stdout");
    summary["master_key_rotation"].clone()
}

async fn issue_each(srv: &Server) -> Vec<String> {
    let mut tokens = Vec::new();
    for alg in ALGS {
        let b = srv
            .issue("default", json!({"sub": "u", "aud": "api", "alg": alg}))
            .await;
        assert_eq!(b["alg"], json!(alg), "{b}");
        tokens.push(str_of(&b["token"]));
    }
    tokens
}

async fn assert_all_active(srv: &Server, tokens: &[String]) {
    for t in tokens {
        assert_eq!(srv.verify("default", t).await["active"], json!(true), "{t}");
    }
}

async fn session_valid(srv: &Server, cookie: &str) -> bool {
    srv.post(
        "/v1/tenants/default/sessions/validate",
        json!({"cookie": cookie, "touch": false}),
    )
    .await
    .status
        == StatusCode::OK
}

#[tokio::test]
async fn rotation_while_serving_then_the_new_key_alone_opens_everything() {
    let (old, new) = (key(1), key(2));
    let mut srv = Server::start_with(&[("VETO_MASTER_KEY", &old)]).await;
    for alg in ALGS {
        srv.create_key("default", alg).await;
    }
    let mut tokens = issue_each(&srv).await;
    let cookie = str_of(
        &srv.post(
            "/v1/tenants/default/sessions",
            json!({"actor_id": "alice", "actor_type": "user"}),
        )
        .await
        .expect(StatusCode::CREATED)["cookie"],
    );
    let prelogin = |state: &str| {
        json!({"state": state, "nonce": "n-0S6_WzA2Mj", "pkce_verifier": PKCE,
               "redirect_uri": "https://app.example/cb"})
    };
    let pending = str_of(
        &srv.post("/v1/tenants/default/prelogin", prelogin("s1"))
            .await
            .expect(StatusCode::CREATED)["cookie"],
    );

    // Every node on the new key, the old one as previous: what the old key sealed still opens.
    srv.restart_with(&[
        ("VETO_MASTER_KEY", &new),
        ("VETO_MASTER_KEY_PREVIOUS", &old),
    ]);
    assert_all_active(&srv, &tokens).await;
    assert!(session_valid(&srv, &cookie).await);
    // New secrets are sealed under the new key.
    srv.create_key("default", "ES256").await;
    tokens.extend(issue_each(&srv).await);

    // Re-seal while the server serves, in batches of two.
    let summary = rotate(&srv, &new, &old);
    assert!(
        summary["signing_keys"]["resealed"].as_u64() >= Some(4),
        "{summary}"
    );
    assert!(
        summary["signing_keys"]["already_new"].as_u64() >= Some(1),
        "{summary}"
    );
    assert_eq!(summary["session_keys"]["resealed"], json!(1), "{summary}");
    assert_eq!(
        summary["pre_login_verifiers"]["resealed"],
        json!(1),
        "{summary}"
    );
    assert_all_active(&srv, &tokens).await;
    // Idempotent: a second run finds everything under the new key.
    let again = rotate(&srv, &new, &old);
    for kind in ["signing_keys", "session_keys", "pre_login_verifiers"] {
        assert_eq!(again[kind]["resealed"], json!(0), "{again}");
    }

    // The new key alone: every token, the session cookie and the pending login still work,
    // and every key still signs.
    srv.restart_with(&[("VETO_MASTER_KEY_PREVIOUS", "")]);
    assert_all_active(&srv, &tokens).await;
    assert!(session_valid(&srv, &cookie).await);
    let consumed = srv
        .post(
            "/v1/tenants/default/prelogin/consume",
            json!({"cookie": pending, "state": "s1"}),
        )
        .await
        .expect(StatusCode::OK);
    assert!(consumed.to_string().contains(PKCE), "{consumed}");
    assert_all_active(&srv, &issue_each(&srv).await).await;

    // The old key, or any other, refuses to start and says why.
    for wrong in [old.clone(), key(3)] {
        let (ok, _, stderr) = veto(&srv, &["serve"], &[("VETO_MASTER_KEY", &wrong)]);
        assert!(!ok, "serve started with a wrong master key");
        assert!(
            stderr.contains("cannot be decrypted") && stderr.contains("VETO_MASTER_KEY"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn rotate_refuses_missing_or_identical_keys() {
    let srv = Server::start().await;
    let (ok, _, stderr) = veto(
        &srv,
        &["master-key", "rotate"],
        &[("VETO_MASTER_KEY", &key(2))],
    );
    assert!(
        !ok && stderr.contains("VETO_MASTER_KEY_PREVIOUS"),
        "{stderr}"
    );
    let (ok, _, stderr) = veto(
        &srv,
        &["master-key", "rotate"],
        &[
            ("VETO_MASTER_KEY", &key(2)),
            ("VETO_MASTER_KEY_PREVIOUS", &key(2)),
        ],
    );
    assert!(!ok && stderr.contains("the same key"), "{stderr}");
}
