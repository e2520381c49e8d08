//! PyJWT, a library we did not write, verifies veto's tokens through the published JWKS for
//! every asymmetric algorithm.
mod common;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

#[tokio::test]
async fn pyjwt_verifies_tokens_through_the_jwks() {
    let python = std::env::var("VETO_INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_pyjwt = Command::new(&python)
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pyjwt {
        assert!(
            std::env::var("VETO_REQUIRE_INTEROP").is_err(),
            "PyJWT is required (VETO_REQUIRE_INTEROP is set) but {python} cannot import it"
        );
        eprintln!("SKIPPED: PyJWT not installed; ./scripts/test.sh installs it");
        return;
    }
    let srv = Server::start().await;
    srv.create_tenant("interop").await;
    let mut tokens = Vec::new();
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
    ] {
        if alg != "ES256" {
            srv.create_key("interop", alg).await;
        }
        let t = srv
            .issue(
                "interop",
                json!({"sub": format!("user-{alg}"), "aud": "api", "alg": alg}),
            )
            .await;
        tokens.push(json!({"alg": alg, "token": t["token"]}));
    }
    let input = json!({
        "jwks_url": srv.url("/t/interop/.well-known/jwks.json"),
        "issuer": srv.url("/t/interop"),
        "audience": "api",
        "tokens": tokens,
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/verify_with_pyjwt.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "PyJWT rejected veto's tokens:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        7,
        "{stdout}"
    );
}
