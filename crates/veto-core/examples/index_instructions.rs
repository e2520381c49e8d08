//! Builds a revocation index of N jtis, then runs M checks of one kind: what
//! `scripts/bench/index_instructions.sh` runs under cachegrind, once with M checks and once
//! with none, to get the instructions of one check as the difference over M. A count of
//! instructions is the same from run to run on a busy machine, where a median in nanoseconds is
//! not; it says nothing of cache misses, which the divan bench (`benches/index.rs`) measures.
//!
//!   index_instructions N M revoked|fresh
//!
//! The jtis are UUID-shaped strings from a fixed sequence. The index's hash key is random per
//! process, so probe paths differ between runs; over a million checks that averages out.
use std::process::ExitCode;

use veto_core::index::{RevocationIndex, TokenFacts};
use veto_core::tenant::TenantState;

/// A UUID-shaped jti (36 characters), the `i`th of a fixed pseudo-random sequence.
fn jti(i: u64) -> String {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = match args.as_slice() {
        [_, n, m, kind] => {
            n.parse::<u64>()
                .ok()
                .zip(m.parse::<u64>().ok())
                .zip(match kind.as_str() {
                    "revoked" => Some(true),
                    "fresh" => Some(false),
                    _ => None,
                })
        }
        _ => None,
    };
    let Some(((n, m), revoked)) = parsed else {
        eprintln!("usage: index_instructions N M revoked|fresh");
        return ExitCode::FAILURE;
    };

    let idx = RevocationIndex::new();
    let jtis: Vec<String> = (0..n).map(jti).collect();
    idx.insert_many(jtis.iter().map(|j| ("acme", j.as_str(), None)));
    // As on a server: every tenant is known (set at start-up), and some subject has a cutoff.
    idx.set_tenant("acme", TenantState::default());
    idx.raise_subject_cutoff("acme", "someone-else", 10);
    drop(jtis);

    // Probes in their own small array, as in the divan bench: revoked ones spread over the
    // sequence, fresh ones from past its end.
    const PROBES: u64 = 1 << 16;
    let probes: Vec<String> = (0..PROBES)
        .map(|k| {
            if revoked {
                jti((k * 151) % n.max(1))
            } else {
                jti(n + k)
            }
        })
        .collect();

    let mut rejected = 0u64;
    for i in 0..m {
        let f = TokenFacts {
            jti: &probes[(i % PROBES) as usize],
            sub: Some("user-1"),
            iat: 1_000,
            sid: None,
        };
        rejected += u64::from(idx.check("acme", std::hint::black_box(&f), 2_000).is_err());
    }
    let expected = if revoked && n > 0 { m } else { 0 };
    println!("{n} jtis, {m} checks, {rejected} rejected");
    if rejected == expected {
        ExitCode::SUCCESS
    } else {
        eprintln!("expected {expected} rejected");
        ExitCode::FAILURE
    }
}
