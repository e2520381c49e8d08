//! Revocation index benchmarks: docs/architecture.md budget "revocation check from the index, 1M revoked
//! jtis: median ≤ 200 ns", and the memory per revoked jti (≤ 64 bytes).
//!
//! Run: `cargo bench -p veto-core --bench index`; `VETO_BENCH_INDEX_N=100000` sets another size
//! (scripts/bench/peers.sh runs it at several).
use std::sync::OnceLock;

use veto_core::index::{RevocationIndex, TokenFacts};

/// How many revoked jtis the index holds: 1M unless `VETO_BENCH_INDEX_N` says otherwise.
fn n() -> usize {
    std::env::var("VETO_BENCH_INDEX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn index() -> &'static (RevocationIndex, Vec<String>) {
    static IDX: OnceLock<(RevocationIndex, Vec<String>)> = OnceLock::new();
    IDX.get_or_init(|| {
        let idx = RevocationIndex::new();
        let jtis: Vec<String> = (0..n()).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        idx.insert_many(jtis.iter().map(|j| ("acme", j.as_str(), None)));
        idx.raise_subject_cutoff("acme", "someone-else", 10);
        let per = idx.jti_table_bytes() as f64 / idx.len() as f64;
        eprintln!(
            "index: {} revoked jtis, jti table {:.1} MiB, {per:.1} bytes per jti",
            idx.len(),
            idx.jti_table_bytes() as f64 / (1024.0 * 1024.0)
        );
        (idx, jtis)
    })
}

fn main() {
    index();
    divan::main();
}

/// A token that is not revoked: every map is probed and misses (the common case).
#[divan::bench]
fn check_not_revoked(b: divan::Bencher) {
    let (idx, _) = index();
    let fresh: Vec<String> = (0..1024)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & 1023;
        let f = TokenFacts {
            jti: &fresh[i],
            sub: Some("user-1"),
            iat: 1_000,
            sid: None,
        };
        divan::black_box(idx.check("acme", divan::black_box(&f), 2_000))
    });
}

/// A revoked token: found in the jti map.
///
/// The probed jtis are 65,536 of the million, spread over the whole table, copied into their
/// own array: in a real check the jti was just parsed from the token and is in cache, while the
/// table probe lands anywhere in the 50 MiB table. Walking the million `String`s themselves
/// would add the benchmark's own cache misses (the `Vec` and each string's heap data) to the
/// measurement; 65,536 probes are still far more table than fits in cache.
#[divan::bench]
fn check_revoked(b: divan::Bencher) {
    let (idx, jtis) = index();
    const PROBES: usize = 1 << 16;
    let probes: Vec<String> = (0..PROBES).map(|k| jtis[(k * 15) % jtis.len()].clone()).collect();
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & (PROBES - 1);
        let f = TokenFacts {
            jti: &probes[i],
            sub: Some("user-1"),
            iat: 1_000,
            sid: None,
        };
        divan::black_box(idx.check("acme", divan::black_box(&f), 2_000))
    });
}

/// Inserting into a large index (one revocation acknowledged).
#[divan::bench]
fn insert_one(b: divan::Bencher) {
    let (idx, _) = index();
    let mut i = 0u64;
    b.bench_local(|| {
        i += 1;
        idx.insert_jti("bench-insert", &i.to_string(), None);
    });
}
