//! What a check costs inside a resource server, per algorithm, next to the bare signature check
//! (the budget of docs/architecture.md: verify + check within 10% of the bare verify).
//!
//! - `sig_public`: `LoadedKey::verify_signature` on the public-only key built from the JWK, on a
//!   prepared message and signature: the floor.
//! - `verifier_check`: `Verifier::check`, what the layer runs per request: the whole of veto's
//!   check (`veto_core::check::Checker`) against the JWKS and a revocation state of 100,000
//!   revoked jtis, both received from a local stand-in for veto before any timing, plus the
//!   verifier's own freshness gate and its metrics counter (no recorder installed: the facade's
//!   no-op).
//!
//! Run: `cargo bench -p veto-verify --bench verify`
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use divan::{Bencher, black_box};
use serde_json::{Map, Value, json};
use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
use veto_core::token::{Audience, IssueInput, issue};
use veto_verify::{Alg, Config, Verifier};

const ALGS: [Alg; 5] = [Alg::EdDSA, Alg::ES256, Alg::ES384, Alg::RS256, Alg::PS256];
const TENANT: &str = "acme";
const REVOKED: usize = 100_000;

struct Fixture {
    alg: Alg,
    public: LoadedKey,
    token: String,
    message: String,
    sig: Vec<u8>,
}

struct World {
    fixtures: Vec<Fixture>,
    verifier: Verifier,
    // Keeps the stand-in veto and the verifier's tasks running.
    _runtime: tokio::runtime::Runtime,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let issuer = format!("{url}/t/{TENANT}");
        let master = MasterKey::generate();
        let now = time::OffsetDateTime::now_utc();
        let mut claims = Map::new();
        claims.insert("scope".into(), json!("read:orders write:orders"));
        claims.insert("role".into(), json!("member"));
        let aud = Audience::One("orders-api".into());
        let mut jwks = Vec::new();
        let fixtures: Vec<Fixture> = ALGS
            .into_iter()
            .map(|alg| {
                let rec = generate_signing_key(TENANT, alg, None, &master, now).expect("key");
                let private = LoadedKey::load(&rec, &master).expect("load");
                let jwk = rec.public_jwk.clone().expect("asymmetric");
                jwks.push(jwk.clone());
                let token = issue(
                    &private,
                    &IssueInput {
                        issuer: &issuer,
                        tenant: TENANT,
                        sub: "user-8d41c2",
                        aud: Some(&aud),
                        iat: now.unix_timestamp(),
                        ttl_seconds: 86_400,
                        nbf: None,
                        sid: Some("ses_01JD4R6Q0Z"),
                        client_id: "ak_3f9a0c",
                        claims: &claims,
                        typ: "at+jwt",
                    },
                )
                .expect("issue")
                .token;
                let (message, sig_b64) = token.rsplit_once('.').expect("three segments");
                let sig = base64::Engine::decode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    sig_b64,
                )
                .expect("base64url");
                Fixture {
                    alg,
                    public: LoadedKey::from_public_jwk(TENANT, &jwk).expect("public key"),
                    message: message.to_owned(),
                    sig,
                    token,
                }
            })
            .collect();
        let revocations: Vec<Value> = (0..REVOKED)
            .map(|i| json!({"jti": format!("jti-{i}"), "until": null}))
            .collect();
        let snapshot = json!({"kind": "snapshot", "position": "0-1", "part": 0, "last": true,
            "tenant_suspended": false, "tenant_cutoff": null, "subject_cutoffs": [],
            "revocations": revocations, "revoked_keys": [], "sessions": [],
            "revoked_sessions": [], "revoked_families": []});
        let first = format!("event: snapshot\nid: 0-1\ndata: {snapshot}\n\n");
        let app = Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server/t/{TENANT}"),
                get(move || async move { axum::Json(json!({ "issuer": issuer })) }),
            )
            .route(
                &format!("/t/{TENANT}/.well-known/jwks.json"),
                get(move || async move { axum::Json(json!({ "keys": jwks })) }),
            )
            .route(
                &format!("/v1/tenants/{TENANT}/revocations/stream"),
                get(move || async move {
                    let beat = "event: heartbeat\nid: 0-1\ndata: {\"kind\":\"heartbeat\",\"position\":\"0-1\",\"age_ms\":0}\n\n";
                    let events = futures_util::stream::unfold(Some(first), move |first| async move {
                        match first {
                            Some(s) => Some((Ok::<_, Infallible>(s), None)),
                            None => {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                                Some((Ok(beat.to_owned()), None))
                            }
                        }
                    });
                    Body::from_stream(events)
                }),
            );
        runtime.spawn(async move { axum::serve(listener, app).await });
        let verifier = runtime
            .block_on(async {
                let v = Verifier::start(
                    Config::new(&url, TENANT, "vk_bench").max_staleness(Duration::from_secs(3600)),
                )?;
                let ready = v.ready(Duration::from_secs(60)).await;
                assert!(ready, "the verifier got the snapshot");
                Ok::<_, veto_verify::StartError>(v)
            })
            .expect("verifier");
        World {
            fixtures,
            verifier,
            _runtime: runtime,
        }
    })
}

fn fixture(alg: Alg) -> &'static Fixture {
    world()
        .fixtures
        .iter()
        .find(|f| f.alg == alg)
        .expect("a fixture per benched alg")
}

fn main() {
    let w = world();
    for f in &w.fixtures {
        // The JWKS task may still be on its first fetch; wait for every key.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while w.verifier.check(&f.token, Some("orders-api")).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: fixture token must verify",
                f.alg
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    divan::main();
}

#[divan::bench(args = ALGS)]
fn sig_public(b: Bencher, alg: Alg) {
    let f = fixture(alg);
    b.bench(|| {
        assert!(
            f.public
                .verify_signature(black_box(f.message.as_bytes()), black_box(&f.sig))
        );
    });
}

#[divan::bench(args = ALGS)]
fn verifier_check(b: Bencher, alg: Alg) {
    let w = world();
    let f = fixture(alg);
    b.bench(|| {
        let v = w.verifier.check(black_box(&f.token), Some("orders-api"));
        assert!(v.is_ok());
        v
    });
}
