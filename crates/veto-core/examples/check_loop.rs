//! Runs the whole check (`Checker::check`, steps 1–4) on one access token N times, for profilers
//! that count instructions or sample a process (`valgrind --tool=callgrind`, `perf record`): the
//! medians in `benches/core.rs` say how long a check takes, this says where the time goes.
//!
//!   cargo build --profile bench -p veto-core --example check_loop
//!   valgrind --tool=callgrind target/release/examples/check_loop 100000 HS256
use std::sync::Arc;

use serde_json::{Map, json};
use time::OffsetDateTime;
use veto_core::Alg;
use veto_core::check::Checker;
use veto_core::index::RevocationIndex;
use veto_core::keyring::KeyRing;
use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
use veto_core::token::{Audience, IssueInput, issue};

const NOW: i64 = 1_800_000_000;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let alg: Alg = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(Alg::HS256);
    let master = MasterKey::generate();
    let created = OffsetDateTime::from_unix_timestamp(NOW - 3600).expect("in range");
    let rec = generate_signing_key("acme", alg, None, &master, created).expect("key");
    let key = Arc::new(LoadedKey::load(&rec, &master).expect("load"));
    let ring = KeyRing::new();
    ring.upsert(LoadedKey::load(&rec, &master).expect("load"));
    let mut claims = Map::new();
    claims.insert("scope".into(), json!("read:orders write:orders"));
    claims.insert("role".into(), json!("member"));
    claims.insert("org".into(), json!({"id": "org_42", "plan": "pro"}));
    let aud = Audience::One("orders-api".into());
    let issuer = "https://veto.example/t/acme";
    let token = issue(
        &key,
        &IssueInput {
            issuer,
            tenant: "acme",
            sub: "user-8d41c2",
            aud: Some(&aud),
            iat: NOW,
            ttl_seconds: 900,
            nbf: None,
            sid: Some("ses_01JD4R6Q0Z"),
            client_id: "ak_3f9a0c",
            claims: &claims,
            typ: "at+jwt",
        },
    )
    .expect("issue")
    .token;
    let index = RevocationIndex::new();
    let jtis: Vec<String> = (0..10_000).map(|i| format!("revoked-{i}")).collect();
    index.insert_many(jtis.iter().map(|j| ("acme", j.as_str(), None)));
    let checker = Checker {
        keys: &ring,
        index: &index,
        tenant: "acme",
        issuer,
        leeway: 30,
    };
    let mut active = 0u64;
    for _ in 0..n {
        let v = checker.check(
            std::hint::black_box(&token),
            "at+jwt",
            Some("orders-api"),
            NOW + 60,
            || true,
        );
        active += u64::from(v.is_ok());
    }
    assert_eq!(active, n, "the fixture token must be active");
}
