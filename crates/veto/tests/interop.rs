//! Interop: PyJWT, a JWT library we did not write, verifies veto's tokens for every asymmetric
//! algorithm using nothing but the tenant's published JWKS (`interop/verify_with_pyjwt.py`).
//!
//! Needs python3 with PyJWT[crypto] (`./scripts/test.sh` installs it into a virtualenv under
//! `target/` and sets `VETO_INTEROP_PYTHON`). With `VETO_REQUIRE_INTEROP=1` (set by the test
//! script and so by CI) a missing PyJWT fails the test; otherwise the test says loudly that it
//! skipped.
mod common;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

const ASYMMETRIC: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python to use: `VETO_INTEROP_PYTHON`, else the test script's virtualenv, else python3.
fn python() -> String {
    if let Ok(p) = std::env::var("VETO_INTEROP_PYTHON") {
        return p;
    }
    let venv = repo_root().join("target/interop-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

fn has_pyjwt(python: &str) -> Result<(), String> {
    match Command::new(python)
        .args(["-c", "import jwt, cryptography; print(jwt.__version__)"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Err(format!("cannot run {python}: {e}")),
    }
}

#[tokio::test]
async fn pyjwt_verifies_every_asymmetric_alg_through_the_jwks() {
    let python = python();
    if let Err(why) = has_pyjwt(&python) {
        let required = std::env::var("VETO_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "VETO_REQUIRE_INTEROP=1 but {python} has no PyJWT[crypto]: {why}\n\
             install it: python3 -m venv target/interop-venv && \
             target/interop-venv/bin/pip install -r interop/requirements.txt"
        );
        eprintln!(
            "\n************************************************************\n\
             * SKIPPED interop test: {python} has no PyJWT[crypto].\n\
             * ./scripts/test.sh installs it (or set VETO_INTEROP_PYTHON).\n\
             ************************************************************\n"
        );
        return;
    }

    let srv = Server::start().await;
    srv.create_tenant("interop").await;
    let mut tokens = Vec::new();
    for alg in ASYMMETRIC {
        // The tenant starts with an ES256 key; every other alg gets one.
        if alg != "ES256" {
            srv.create_key("interop", alg).await;
        }
        let t = srv
            .issue(
                "interop",
                json!({"sub": format!("user-{alg}"), "aud": "api", "alg": alg, "ttl_seconds": 600}),
            )
            .await;
        assert_eq!(t["alg"], alg);
        tokens.push(json!({"alg": alg, "token": t["token"]}));
    }
    let input = json!({
        "url": srv.public_url(),
        "tenant": "interop",
        "audience": "api",
        "tokens": tokens,
    });
    let script = repo_root().join("interop/verify_with_pyjwt.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {python} {}: {e}", script.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    // The script calls back into the server: wait off the async runtime.
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "PyJWT rejected veto's tokens:\n{stdout}\n{stderr}"
    );
    for alg in ASYMMETRIC {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("ok {alg} "))),
            "no ok line for {alg}:\n{stdout}"
        );
    }
}
