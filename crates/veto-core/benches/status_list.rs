//! Token Status List benchmarks: what serving a 2^20-entry list costs.
//!
//! - `encode_full_2^20`: every chunk dirty (a list just loaded or decoded), so every chunk is
//!   deflated: the cost incremental compression avoids.
//! - `flip_and_encode_2^20`: one `set` that changes an entry, then an encode: one chunk
//!   recompressed, the others copied from cache, the Adler-32 over the whole array, base64url.
//! - `set`: one `set` alone.
//! - `adler32_2^20`: the checksum of the whole 256 KiB array, the part of an encode that does not
//!   shrink with the chunk size.
//!
//! The lists hold about 1 % INVALID/SUSPENDED entries at random indices, as a list of mostly
//! live tokens would; the encoded size is printed to stderr before divan's table.
//!
//! - `registry_*`: a tenant's registry holding all 2^17 entries of a list: building it (its
//!   allocations are the memory a node spends per entry), re-judging every entry (a tenant
//!   suspended or resumed), and re-judging the one entry of a revoked jti.
//!
//! Run: `cargo bench -p veto-core --bench status_list`
use divan::{Bencher, black_box};
use veto_core::status_list::{Status, StatusList};

const ENTRIES: usize = 1 << 20;

// Counts allocations per bench (divan's columns), for the registry's bytes per entry.
#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

/// A 2^20 list with ~1 % of entries revoked or suspended, at indices from a fixed xorshift.
fn list() -> StatusList {
    let mut list = StatusList::new(ENTRIES).expect("2^20 is a valid size");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..ENTRIES / 100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let status = if i.is_multiple_of(4) {
            Status::Suspended
        } else {
            Status::Invalid
        };
        list.set(x as usize % ENTRIES, status).expect("in range");
    }
    list
}

fn main() {
    let mut l = list();
    let lst = l.encode_lst().expect("encodes").len();
    let mut empty = StatusList::new(ENTRIES).expect("valid size");
    let empty_lst = empty.encode_lst().expect("encodes").len();
    eprintln!(
        "status_list: 2^20 entries, ~1 % set: lst {lst} chars; all VALID: lst {empty_lst} chars"
    );
    divan::main();
}

#[divan::bench(name = "encode_full_2^20")]
fn encode_full(bencher: Bencher) {
    // Never encoded, so every chunk of it (and of each clone) is dirty.
    let fresh = list();
    bencher
        .with_inputs(|| fresh.clone())
        .bench_local_values(|mut l| {
            black_box(l.encode_lst().map(str::len).ok());
            l
        });
}

#[divan::bench(name = "flip_and_encode_2^20")]
fn flip_and_encode(bencher: Bencher) {
    let mut l = list();
    l.encode_lst().expect("encodes");
    let mut i = 0usize;
    bencher.bench_local(move || {
        // Alternate one entry, so every iteration changes it and dirties its chunk.
        i = i.wrapping_add(1);
        let status = if i.is_multiple_of(2) {
            Status::Invalid
        } else {
            Status::Valid
        };
        l.set(black_box(777_777), status).expect("in range");
        black_box(l.encode_lst().map(str::len).ok());
    });
}

#[divan::bench]
fn set(bencher: Bencher) {
    let mut l = list();
    let mut i = 0usize;
    bencher.bench_local(move || {
        i = i.wrapping_add(1);
        let status = if i.is_multiple_of(2) {
            Status::Invalid
        } else {
            Status::Valid
        };
        black_box(l.set(black_box(i % ENTRIES), status).ok());
    });
}

#[divan::bench(name = "adler32_2^20")]
fn adler32(bencher: Bencher) {
    let l = list();
    bencher.bench_local(|| adler2::adler32_slice(black_box(l.as_bytes())));
}

/// A tenant's registry with every entry of a 2^17 list held (a token per entry: subject, key,
/// and for half of them a session), judged against an index that knows nothing of them.
mod registry {
    use divan::{Bencher, black_box};
    use veto_core::Alg;
    use veto_core::index::RevocationIndex;
    use veto_core::keyring::KeyRing;
    use veto_core::keys::{LoadedKey, MasterKey, generate_signing_key};
    use veto_core::status_list::registry::{Affects, EntryFacts, Judge, TenantStatusLists};

    const T: &str = "acme";
    const ENTRIES: u32 = 1 << 17;

    struct World {
        index: RevocationIndex,
        keys: KeyRing,
        kid: String,
    }

    fn world() -> World {
        let master = MasterKey::generate();
        let rec = generate_signing_key(
            T,
            Alg::ES256,
            None,
            &master,
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .expect("key");
        let keys = KeyRing::new();
        keys.upsert(LoadedKey::load(&rec, &master).expect("load"));
        World {
            index: RevocationIndex::new(),
            keys,
            kid: rec.kid,
        }
    }

    fn facts(w: &World, n: u32) -> EntryFacts {
        EntryFacts {
            jti: format!("6f1c2b7e-0d5a-4c3e-9a41-{n:012}").into(),
            sub: Some(format!("user-{}", n % 50_000).into()),
            sid: n.is_multiple_of(2).then(|| format!("ses_{n:020}").into()),
            kid: w.kid.as_str().into(),
            fam: None,
            iat: 1_000,
            exp: 100_000,
        }
    }

    fn judge(w: &World) -> Judge<'_> {
        Judge {
            index: &w.index,
            keys: &w.keys,
            tenant: T,
            now: 2_000,
        }
    }

    fn full(w: &World) -> TenantStatusLists {
        let mut r = TenantStatusLists::default();
        r.add_list("l1", ENTRIES as usize).expect("list");
        for n in 0..ENTRIES {
            r.insert("l1", n, facts(w, n), &judge(w)).expect("insert");
        }
        r
    }

    /// Holding every entry of a 2^17 list: the allocations this reports, divided by 131,072,
    /// are the bytes a node spends per token issued with a status list entry.
    #[divan::bench(name = "registry_fill_2^17", sample_count = 5, sample_size = 1)]
    fn fill(bencher: Bencher) {
        let w = world();
        bencher.bench_local(|| black_box(full(&w).len()));
    }

    /// A tenant suspended or resumed: every entry of the tenant judged again (the mirror does
    /// this under its lock).
    #[divan::bench(name = "registry_tenant_wide_2^17", sample_count = 10, sample_size = 1)]
    fn tenant_wide(bencher: Bencher) {
        let w = world();
        let mut r = full(&w);
        let mut on = false;
        bencher.bench_local(move || {
            on = !on;
            w.index.set_tenant_suspended(T, on);
            black_box(r.apply(Affects::All, &judge(&w)))
        });
    }

    /// One jti revoked among 2^17 entries: the lookup and one re-judgement.
    #[divan::bench(name = "registry_one_jti_2^17")]
    fn one_jti(bencher: Bencher) {
        let w = world();
        let mut r = full(&w);
        let jti = facts(&w, 4_242).jti;
        bencher.bench_local(move || black_box(r.apply(Affects::Jti(&jti), &judge(&w))));
    }
}
