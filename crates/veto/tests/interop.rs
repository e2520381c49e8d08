//! Interop: clients veto's authors did not write accept veto, used the way their documentation
//! shows.
//!
//! - PyJWT verifies veto's tokens for every asymmetric algorithm using nothing but the tenant's
//!   published JWKS (`interop/verify_with_pyjwt.py`);
//! - authlib validates the RFC 8414 metadata it finds from the issuer and introspects and
//!   revokes through it (`interop/authlib_client.py`);
//! - PyJWT checks a Status List Token's signature and header, and `token-status-list` (the
//!   draft's Python implementation) decodes its list (`interop/status_list_check.py`), both for
//!   a list built in-process and for the lists the running binary serves;
//! - PyJWT reads the Security Event Tokens veto builds for Shared Signals as a receiver would:
//!   signature, `typ`, SSF's claims and the one event of each (`interop/set_check.py`);
//! - jose verifies every asymmetric algorithm through `createRemoteJWKSet`, and oauth4webapi
//!   discovers the tenant, introspects, revokes, validates RFC 9068 access tokens and uses the
//!   token endpoint's refresh_token and client_credentials grants (`interop/node/clients.mjs`).
//!
//! They need python3 with `interop/requirements.txt` and node with `interop/node`'s locked
//! packages; `./scripts/test.sh` installs both (a virtualenv under `target/`, `npm ci` in
//! `interop/node`) and sets `VETO_INTEROP_PYTHON` and `VETO_INTEROP_NODE`. With
//! `VETO_REQUIRE_INTEROP=1` (set by the test script and so by CI) a missing client fails its
//! test; otherwise the test says loudly that it skipped.
mod common;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

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

/// The node to use: `VETO_INTEROP_NODE`, else node on the PATH.
fn node() -> String {
    std::env::var("VETO_INTEROP_NODE").unwrap_or_else(|_| "node".into())
}

/// Whether `program args…` (run in `dir`) succeeds: how a client's presence is probed.
fn runs(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Err(format!("cannot run {program}: {e}")),
    }
}

/// `Ok` to go on; `Err` when the client is missing and the test may be skipped. Fails the test
/// instead when `VETO_REQUIRE_INTEROP=1`.
#[track_caller]
fn present(client: &str, probe: Result<(), String>, install: &str) -> bool {
    let Err(why) = probe else {
        return true;
    };
    let required = std::env::var("VETO_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "VETO_REQUIRE_INTEROP=1 but {client} is missing: {why}\ninstall it: {install}"
    );
    eprintln!(
        "\n************************************************************\n\
         * SKIPPED interop test: {client} is missing.\n\
         * ./scripts/test.sh installs it ({install}).\n\
         ************************************************************\n"
    );
    false
}

/// Runs a client script with `input` as JSON on stdin; returns its stdout after checking that it
/// succeeded and printed `ok NAME` for every expected check.
async fn run_client(
    what: &str,
    program: &str,
    args: &[PathBuf],
    dir: &Path,
    input: &Value,
    expected: &[String],
) -> String {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program} {args:?}: {e}"));
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
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} rejected veto:\n{stdout}\n{stderr}"
    );
    for name in expected {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("ok {name}") || l.starts_with(&format!("ok {name} "))),
            "{what}: no `ok {name}` line:\n{stdout}\n{stderr}"
        );
    }
    eprintln!("{what}:\n{stdout}");
    stdout
}

/// A tenant with an active key of every asymmetric algorithm and an access token (audience
/// `api`) signed with each.
async fn tokens_of_every_alg(srv: &Server, tenant: &str) -> Vec<Value> {
    let mut tokens = Vec::new();
    for alg in ASYMMETRIC {
        // The tenant starts with an ES256 key; every other alg gets one.
        if alg != "ES256" {
            srv.create_key(tenant, alg).await;
        }
        let t = srv
            .issue(
                tenant,
                json!({"sub": format!("user-{alg}"), "aud": "api", "alg": alg, "ttl_seconds": 600}),
            )
            .await;
        assert_eq!(t["alg"], alg);
        tokens.push(json!({"alg": alg, "token": t["token"]}));
    }
    tokens
}

#[tokio::test]
async fn pyjwt_verifies_every_asymmetric_alg_through_the_jwks() {
    let python = python();
    let probe = runs(&python, &["-c", "import jwt, cryptography"], &repo_root());
    if !present("PyJWT", probe, "pip install -r interop/requirements.txt") {
        return;
    }
    let srv = Server::start().await;
    srv.create_tenant("interop").await;
    let tokens = tokens_of_every_alg(&srv, "interop").await;
    let input = json!({
        "url": srv.public_url(),
        "tenant": "interop",
        "audience": "api",
        "tokens": tokens,
    });
    let expected: Vec<String> = ASYMMETRIC.iter().map(|a| a.to_string()).collect();
    run_client(
        "PyJWT",
        &python,
        &[repo_root().join("interop/verify_with_pyjwt.py")],
        &repo_root(),
        &input,
        &expected,
    )
    .await;
}

#[tokio::test]
async fn authlib_validates_the_metadata_and_introspects_and_revokes_through_it() {
    let python = python();
    let probe = runs(&python, &["-c", "import authlib, requests"], &repo_root());
    if !present("authlib", probe, "pip install -r interop/requirements.txt") {
        return;
    }
    let srv = Server::start().await;
    srv.create_tenant("interop").await;
    let (id, secret) = srv
        .create_api_key("interop", &["tokens:verify", "tokens:revoke"])
        .await;
    let access = srv.token("interop", "alice").await;
    let refresh = srv
        .issue(
            "interop",
            json!({"sub": "alice", "aud": "api", "token_use": "refresh"}),
        )
        .await;
    let refresh = str_of(&refresh["token"]);
    let input = json!({
        "url": srv.public_url(),
        "tenant": "interop",
        "client": {"id": id, "secret": secret},
        "access_token": access,
        "refresh_token": refresh,
    });
    let expected: Vec<String> = [
        "authlib metadata",
        "authlib introspect_token",
        "authlib introspect_token refresh_token",
        "authlib revoke_token",
        "authlib revoke_token refresh_token",
    ]
    .map(String::from)
    .to_vec();
    run_client(
        "authlib",
        &python,
        &[repo_root().join("interop/authlib_client.py")],
        &repo_root(),
        &input,
        &expected,
    )
    .await;
    // What authlib did, seen from veto: the access token revoked, the refresh family too.
    assert_eq!(
        srv.reason("interop", &access).await.as_deref(),
        Some("revoked")
    );
    let r = srv
        .post(
            "/v1/tenants/interop/tokens/refresh",
            json!({"refresh_token": refresh}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn jose_and_oauth4webapi_accept_veto_unchanged() {
    let node = node();
    let dir = repo_root().join("interop/node");
    let probe = runs(
        &node,
        &["-e", "import('jose').then(() => import('oauth4webapi'))"],
        &dir,
    );
    if !present(
        "node with jose and oauth4webapi",
        probe,
        "cd interop/node && npm ci",
    ) {
        return;
    }
    let srv = Server::start().await;
    srv.create_tenant("interop").await;
    let tokens = tokens_of_every_alg(&srv, "interop").await;
    let (id, secret) = srv
        .create_api_key(
            "interop",
            &["tokens:verify", "tokens:revoke", "tokens:issue"],
        )
        .await;
    let refresh = srv
        .issue(
            "interop",
            json!({"sub": "alice", "aud": "api", "token_use": "refresh"}),
        )
        .await;
    let refresh = str_of(&refresh["token"]);
    let revoke = srv.token("interop", "bob").await;
    let input = json!({
        "url": srv.public_url(),
        "tenant": "interop",
        "audience": "api",
        "tokens": tokens,
        "client": {"id": id, "secret": secret},
        "refresh_token": refresh,
        "revoke": revoke,
    });
    let mut expected: Vec<String> = Vec::new();
    for alg in ASYMMETRIC {
        expected.push(format!("jose {alg}"));
        expected.push(format!("oauth4webapi validateJwtAccessToken {alg}"));
    }
    for name in [
        "oauth4webapi discovery",
        "oauth4webapi introspection",
        "oauth4webapi introspection of a refresh token",
        "oauth4webapi refresh_token grant",
        "oauth4webapi client_credentials grant",
        "oauth4webapi revocation",
    ] {
        expected.push(name.into());
    }
    run_client(
        "jose/oauth4webapi",
        &node,
        &[dir.join("clients.mjs")],
        &dir,
        &input,
        &expected,
    )
    .await;
    // What the clients did, seen from veto.
    assert_eq!(
        srv.reason("interop", &revoke).await.as_deref(),
        Some("revoked")
    );
}

/// The Python that has PyJWT and token-status-list, or `None` (said loudly, or a failure
/// where the tools are required: `present`).
fn status_list_readers() -> Option<String> {
    let python = python();
    let probe = runs(
        &python,
        &["-c", "import jwt, token_status_list"],
        &repo_root(),
    );
    present(
        "token-status-list",
        probe,
        "pip install -r interop/requirements.txt",
    )
    .then_some(python)
}

/// veto's Status List Tokens as the draft's own Python implementation and PyJWT read them: a
/// 2^20-entry list whose chunks were recompressed one at a time between encodes (the path a
/// node serves from), signed by each asymmetric algorithm family.
#[tokio::test]
async fn token_status_list_and_pyjwt_read_veto_status_lists() {
    use veto_core::Alg;
    use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
    use veto_core::status_list::{self, Status, StatusList, TokenInput};

    let Some(python) = status_list_readers() else {
        return;
    };
    let size = 1usize << 20;
    let mut list = StatusList::new(size).unwrap();
    let mut expect: std::collections::BTreeMap<usize, u8> = Default::default();
    let mut set = |list: &mut StatusList, idx: usize, s: Status| {
        list.set(idx, s).unwrap();
        match s {
            Status::Valid => expect.remove(&idx),
            _ => expect.insert(idx, s as u8),
        };
    };
    // First and last entries, both edges of chunk boundaries, and a spread in between.
    for (i, idx) in [0, 1, 65_535, 65_536, 131_071, 500_001, size - 1]
        .into_iter()
        .enumerate()
    {
        let s = if i % 2 == 0 {
            Status::Invalid
        } else {
            Status::Suspended
        };
        set(&mut list, idx, s);
    }
    list.encode_lst().unwrap();
    // Changes after a first encode: only their chunks are recompressed.
    set(&mut list, 65_536, Status::Valid);
    set(&mut list, 777_777, Status::Suspended);
    for idx in (900_000..900_400).step_by(3) {
        set(&mut list, idx, Status::Invalid);
    }
    let lst = list.encode_lst().unwrap().to_owned();
    let expect: Vec<Value> = expect.iter().map(|(i, s)| json!([i, s])).collect();

    let master = MasterKey::generate();
    let uri = "https://veto.example/t/interop/statuslists/1";
    for alg in [Alg::ES256, Alg::EdDSA, Alg::PS256] {
        let rec = generate_signing_key(
            "interop",
            alg,
            None,
            &master,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let key = LoadedKey::load(&rec, &master).unwrap();
        let claims = status_list::token_claims(&TokenInput {
            uri,
            lst: &lst,
            now: time::OffsetDateTime::now_utc().unix_timestamp(),
            validity_seconds: 3_600,
            ttl_seconds: 300,
        })
        .unwrap();
        let input = json!({
            "token": status_list::sign_token(&key, &claims).unwrap(),
            "jwk": key.public_jwk.clone().unwrap(),
            "uri": uri,
            "size": size,
            "expect": expect,
        });
        run_client(
            &format!("token-status-list and PyJWT ({})", alg.as_str()),
            &python,
            &[repo_root().join("interop/status_list_check.py")],
            &repo_root(),
            &input,
            &[
                "signature".into(),
                "claims".into(),
                format!("statuses {}", expect.len()),
            ],
        )
        .await;
    }
}

/// The lists the running server publishes, as the draft's Python implementation and PyJWT read
/// them: a few tokens issued with `status_list`, one revoked by jti and one suspended for an
/// hour, the list fetched from the token's `uri` without credentials and checked against the
/// key of the tenant's JWKS that its header names.
#[tokio::test]
async fn token_status_list_and_pyjwt_read_the_lists_veto_serves() {
    use std::io::Read;

    let Some(python) = status_list_readers() else {
        return;
    };
    let srv = Server::start().await;
    let tenant = "interop-sl";
    srv.create_tenant(tenant).await;
    let mut tokens = Vec::new();
    for sub in ["alice", "bob", "carol", "dave", "erin"] {
        let t = srv
            .issue(
                tenant,
                json!({"sub": sub, "aud": "api", "status_list": true}),
            )
            .await;
        tokens.push(str_of(&t["token"]));
    }
    let (_, revoked) = decode(&tokens[1]);
    srv.revoke(tenant, json!({"jti": revoked["jti"]}))
        .await
        .expect(StatusCode::CREATED);
    let until = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .replace_nanosecond(0)
        .expect("whole seconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    srv.revoke(tenant, json!({"token": tokens[3], "until": until}))
        .await
        .expect(StatusCode::CREATED);

    // (uri, idx, expected status) of each token; the non-zero ones are what each list holds.
    let mut lists: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (i, token) in tokens.iter().enumerate() {
        let (_, claims) = decode(token);
        let sl = &claims["status"]["status_list"];
        let uri = str_of(&sl["uri"]);
        let idx = sl["idx"]
            .as_u64()
            .unwrap_or_else(|| panic!("no status list idx: {claims}"));
        let status = match i {
            1 => 1,
            3 => 2,
            _ => 0,
        };
        let expect = lists.entry(uri).or_default();
        if status != 0 {
            expect.push(json!([idx, status]));
        }
    }
    let jwks = srv
        .get_public(&format!("/t/{tenant}/.well-known/jwks.json"))
        .await
        .expect(StatusCode::OK);
    for (uri, expect) in lists {
        let path = uri
            .strip_prefix(&srv.public_url())
            .unwrap_or_else(|| panic!("status list uri {uri} is not under the public URL"));
        let req = srv
            .http
            .get(srv.url(path))
            .header("accept", "application/statuslist+jwt");
        let resp = srv.send("GET status list", req).await;
        assert_eq!(resp.status, StatusCode::OK, "GET {uri}: {}", resp.text);
        let list_token = resp.text.trim().to_owned();
        let (header, claims) = decode(&list_token);
        let jwk = jwks["keys"]
            .as_array()
            .expect("JWKS keys")
            .iter()
            .find(|k| k["kid"] == header["kid"])
            .unwrap_or_else(|| panic!("the list's kid is not in the JWKS: {header} {jwks}"))
            .clone();
        // Entries in the list: 4 a byte once inflated.
        let mut bytes = Vec::new();
        flate2::read::ZlibDecoder::new(&b64_decode(&str_of(&claims["status_list"]["lst"]))[..])
            .read_to_end(&mut bytes)
            .expect("lst is a zlib stream");
        let input = json!({
            "token": list_token,
            "jwk": jwk,
            "uri": uri,
            "size": bytes.len() * 4,
            "expect": expect,
        });
        run_client(
            &format!("token-status-list and PyJWT ({uri})"),
            &python,
            &[repo_root().join("interop/status_list_check.py")],
            &repo_root(),
            &input,
            &[
                "signature".into(),
                "claims".into(),
                format!("statuses {}", expect.len()),
            ],
        )
        .await;
    }
}

/// The Python that has PyJWT, or `None` (said loudly, or a failure where the tools are required:
/// `present`).
fn pyjwt() -> Option<String> {
    let python = python();
    let probe = runs(&python, &["-c", "import jwt"], &repo_root());
    present("PyJWT", probe, "pip install -r interop/requirements.txt").then_some(python)
}

/// One Security Event Token of each kind veto emits for Shared Signals (CAEP session-revoked
/// and credential-change, veto's token-revoked and signing-key-revoked), signed with ES256 and
/// EdDSA keys, read by PyJWT against the public JWK as an SSF receiver reads them. The expected
/// subjects and event members are written out here, from SSF and CAEP, not taken from veto.
#[tokio::test]
async fn pyjwt_reads_every_kind_of_set_veto_signs() {
    use veto_core::Alg;
    use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
    use veto_core::ssf::{self, Cause, Event, FamilyRevocation, RequestedBy, SetInput};
    use veto_core::token::Audience;

    let Some(python) = pyjwt() else {
        return;
    };
    let iss = "https://veto.example/t/interop";
    let at = 1_760_000_000;
    let iat = at + 2;
    let user = json!({"format": "iss_sub", "iss": iss, "sub": "alice"});
    let cases = [
        (
            "session-revoked",
            Cause::Session {
                sub: "alice",
                session_id: "ses-QWxpY2UncyBzZXNzaW9uIQ",
            },
            Some("logout"),
            json!({
                "format": "complex",
                "user": user,
                "session": {"format": "opaque", "id": "ses-QWxpY2UncyBzZXNzaW9uIQ"},
            }),
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
            json!({
                "event_timestamp": at,
                "initiating_entity": "admin",
                "reason_admin": {"en": "logout"},
            }),
        ),
        (
            "session-revoked-tenant",
            Cause::TenantRevokeAll,
            Some("compromised: breach 42"),
            json!({"format": "complex", "tenant": {"format": "opaque", "id": "interop"}}),
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
            json!({
                "event_timestamp": at,
                "initiating_entity": "admin",
                "reason_admin": {"en": "compromised: breach 42"},
            }),
        ),
        (
            "credential-change",
            Cause::RefreshFamily {
                sub: "alice",
                how: FamilyRevocation::ReuseDetected,
            },
            Some("refresh_token_reuse"),
            user.clone(),
            "https://schemas.openid.net/secevent/caep/event-type/credential-change",
            json!({
                "credential_type": "refresh_token",
                "change_type": "revoke",
                "event_timestamp": at,
                "initiating_entity": "policy",
                "reason_admin": {"en": "refresh_token_reuse"},
            }),
        ),
        (
            "token-revoked",
            Cause::Token {
                jti: "2b5f3c1e-8d4a-4f7e-9c21-5a6b7c8d9e0f",
                sub: Some("alice"),
                until: None,
                by: RequestedBy::SelfLogout,
            },
            None,
            user.clone(),
            "https://veto.dev/secevent/token-revoked",
            json!({
                "jti": "2b5f3c1e-8d4a-4f7e-9c21-5a6b7c8d9e0f",
                "event_timestamp": at,
                "initiating_entity": "user",
            }),
        ),
        (
            "signing-key-revoked",
            Cause::SigningKey {
                kid: "k_0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4",
            },
            Some("key material leaked"),
            json!({"format": "complex", "tenant": {"format": "opaque", "id": "interop"}}),
            "https://veto.dev/secevent/signing-key-revoked",
            json!({
                "kid": "k_0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4",
                "event_timestamp": at,
                "initiating_entity": "admin",
                "reason_admin": {"en": "key material leaked"},
            }),
        ),
    ];

    let master = MasterKey::generate();
    let mut sets = Vec::new();
    let mut expected = Vec::new();
    for alg in [Alg::ES256, Alg::EdDSA] {
        let rec = generate_signing_key(
            "interop",
            alg,
            None,
            &master,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let key = LoadedKey::load(&rec, &master).unwrap();
        // One receiver with two clients (SSF "The "aud" Claim"), and one with a single audience.
        let audiences = [
            Audience::Many(vec!["rp.example/web".into(), "rp.example/mobile".into()]),
            Audience::One("https://rp.example/caep".into()),
        ];
        for (i, (kind, cause, reason, sub_id, uri, members)) in cases.iter().enumerate() {
            let audience = &audiences[i % 2];
            let txn = format!("txn-{kind}");
            let event = Event {
                cause: *cause,
                at,
                reason: *reason,
                reason_user: None,
            };
            let input = SetInput {
                issuer: iss,
                tenant: "interop",
                audience,
                iat,
                txn: &txn,
            };
            let issued = ssf::issue_set(&key, &input, &event).unwrap();
            let name = format!("{kind} {}", alg.as_str());
            expected.push(name.clone());
            sets.push(json!({
                "name": name,
                "token": issued.token,
                "jwk": key.public_jwk.clone().unwrap(),
                "iss": iss,
                "aud": audience.to_json(),
                "iat": iat,
                "jti": issued.jti,
                "txn": txn,
                "sub_id": sub_id,
                "event_uri": uri,
                "event": members,
            }));
        }
    }
    run_client(
        "PyJWT (Security Event Tokens)",
        &python,
        &[repo_root().join("interop/set_check.py")],
        &repo_root(),
        &json!({"sets": sets}),
        &expected,
    )
    .await;
}
