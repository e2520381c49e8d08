//! Revocation index benchmarks, for docs/architecture.md's budgets "revocation check from the
//! index, 10M revoked jtis: median ≤ 100 ns, revoked and not" and "index memory: ≤ 16 bytes per
//! revoked jti; start-up with 10M ready in ≤ 5 s".
//!
//! Besides divan's table, it prints (to stderr) how long `insert_many` took to load the 10 million
//! (what start-up does), the table's bytes per jti, this machine's latency of one random memory
//! read in a buffer the size of the table (the floor under a check: its probe is such a read),
//! and, after the table, how long the insert that grows the table held the write lock (every
//! check waits that long once per 12 % of growth). Those are single wall-clock measurements:
//! rough, and never asserted anywhere. For a figure that run-to-run noise cannot move, count
//! instructions: `scripts/bench/index_instructions.sh`.
//!
//! `check_*_in_cache` run the same checks against an index of 10,000 jtis, which stays in
//! cache: the cost of a check without the memory round trip.
//!
//! Run: `cargo bench -p veto-core --bench index` (about 1.5 GB of memory, most of it the
//! benchmark's own 10 million jti strings). `VETO_BENCH_INDEX_N` sets another size.
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use veto_core::index::{RevocationIndex, TokenFacts};
use veto_core::tenant::TenantState;

fn n() -> usize {
    std::env::var("VETO_BENCH_INDEX_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn index() -> &'static (RevocationIndex, Vec<String>) {
    static IDX: OnceLock<(RevocationIndex, Vec<String>)> = OnceLock::new();
    IDX.get_or_init(|| {
        let idx = RevocationIndex::new();
        let jtis: Vec<String> = (0..n()).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let start = Instant::now();
        idx.insert_many(jtis.iter().map(|j| ("acme", j.as_str(), None)));
        let took = start.elapsed();
        // As on a server: every tenant is known (set at start-up), and some subject has a cutoff.
        idx.set_tenant("acme", TenantState::default());
        idx.raise_subject_cutoff("acme", "someone-else", 10);
        let per = idx.jti_table_bytes() as f64 / idx.len() as f64;
        eprintln!(
            "index: {} revoked jtis loaded by insert_many in {took:.2?}, jti table {:.1} MiB, \
             {per:.2} bytes per jti",
            idx.len(),
            idx.jti_table_bytes() as f64 / (1024.0 * 1024.0)
        );
        (idx, jtis)
    })
}

fn main() {
    let (idx, _) = index();
    memory_latency(idx.jti_table_bytes());
    divan::main();
    growth_pause();
}

/// Prints the mean latency of a dependent chain of random reads, one per cache line, over a
/// buffer of `bytes`: what one cache miss into the table costs on this machine right now.
fn memory_latency(bytes: usize) {
    let lines = (bytes / 64).max(2);
    // One random cycle through every line (Sattolo's algorithm), one u64 per line used.
    let mut next = vec![0u64; lines * 8];
    let mut order: Vec<u64> = (0..lines as u64).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % i as u64) as usize);
    }
    for w in 0..lines {
        next[order[w] as usize * 8] = order[(w + 1) % lines] * 8;
    }
    const STEPS: u32 = 1_000_000;
    let mut p = 0u64;
    let start = Instant::now();
    for _ in 0..STEPS {
        p = next[p as usize];
    }
    let took = start.elapsed();
    divan::black_box(p);
    eprintln!(
        "memory: one random read in {:.1} MiB takes {:.0} ns on this machine now (mean of a \
         chain of {STEPS})",
        bytes as f64 / (1024.0 * 1024.0),
        took.as_nanos() as f64 / f64::from(STEPS)
    );
}

/// An index of 10,000 jtis, small enough to stay in cache.
fn small_index() -> &'static (RevocationIndex, Vec<String>) {
    static IDX: OnceLock<(RevocationIndex, Vec<String>)> = OnceLock::new();
    IDX.get_or_init(|| {
        let idx = RevocationIndex::new();
        let jtis: Vec<String> = (0..10_000)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        idx.insert_many(jtis.iter().map(|j| ("acme", j.as_str(), None)));
        // As on a server: every tenant is known (set at start-up), and some subject has a cutoff.
        idx.set_tenant("acme", TenantState::default());
        idx.raise_subject_cutoff("acme", "someone-else", 10);
        (idx, jtis)
    })
}

/// Inserts one jti at a time until the table grows, and prints how long that insert took: the
/// rebuild of every entry under the write lock. One sample, so rough.
fn growth_pause() {
    let (idx, _) = index();
    let bytes = idx.jti_table_bytes();
    let mut slowest = Duration::ZERO;
    let mut names = (0u64..).map(|i| format!("growth-{i}"));
    let grew = loop {
        let Some(name) = names.next() else { return };
        let start = Instant::now();
        idx.insert_jti("acme", &name, None);
        let took = start.elapsed();
        if idx.jti_table_bytes() != bytes {
            break took;
        }
        slowest = slowest.max(took);
    };
    eprintln!(
        "growth: the insert that grew the table from {:.1} to {:.1} MiB ({} jtis) took {grew:.2?} \
         (slowest other insert {slowest:.2?}); {:.2} bytes per jti after",
        bytes as f64 / (1024.0 * 1024.0),
        idx.jti_table_bytes() as f64 / (1024.0 * 1024.0),
        idx.len(),
        idx.jti_table_bytes() as f64 / idx.len() as f64,
    );
}

/// Checks `probes` in turn against `idx`. The check rows fix 256 checks per sample: left to
/// itself divan took one per sample for the slow rows, and a sample of one check is mostly the
/// timer's own noise. Back-to-back checks of a table in memory still wait for one cache miss
/// each: a check is longer than the processor's window, so one check's miss does not overlap
/// the next one's.
fn bench_checks(b: divan::Bencher, idx: &RevocationIndex, probes: &[String]) {
    let mask = probes.len() - 1;
    let mut i = 0usize;
    b.bench_local(|| {
        i = (i + 1) & mask;
        let f = TokenFacts {
            jti: &probes[i],
            sub: Some("user-1"),
            iat: 1_000,
            sid: None,
        };
        divan::black_box(idx.check("acme", divan::black_box(&f), 2_000))
    });
}

/// Jtis to check, `n` of them (a power of two), read in order. A real check has the jti it
/// looks up in cache (just parsed from the token), while its table probe lands anywhere in the
/// table. Here the strings are allocated and read in order, so the processor's prefetchers keep
/// them coming and what misses the cache is the table; 2^20 probes touch far more of the table
/// than the caches hold, so the table lines they read have left the cache before they are read
/// again. (A few thousand probes would measure the cache, not the table.)
fn fresh_probes(n: usize) -> Vec<String> {
    (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect()
}

/// `n` of the revoked jtis, spread over all of them, copied into their own array (see above).
fn revoked_probes(jtis: &[String], n: usize) -> Vec<String> {
    (0..n)
        .map(|k| jtis[(k * 151) % jtis.len()].clone())
        .collect()
}

const PROBES: usize = 1 << 20;

/// A token that is not revoked: every map is probed and misses (the common case).
#[divan::bench(sample_size = 256)]
fn check_not_revoked(b: divan::Bencher) {
    bench_checks(b, &index().0, &fresh_probes(PROBES));
}

/// A revoked token: found in the jti table.
#[divan::bench(sample_size = 256)]
fn check_revoked(b: divan::Bencher) {
    let (idx, jtis) = index();
    bench_checks(b, idx, &revoked_probes(jtis, PROBES));
}

#[divan::bench(sample_size = 256)]
fn check_not_revoked_in_cache(b: divan::Bencher) {
    bench_checks(b, &small_index().0, &fresh_probes(1024));
}

#[divan::bench(sample_size = 256)]
fn check_revoked_in_cache(b: divan::Bencher) {
    let (idx, jtis) = small_index();
    bench_checks(b, idx, &revoked_probes(jtis, 1024));
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
