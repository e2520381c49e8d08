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
//! Run: `cargo bench -p veto-core --bench status_list`
use divan::{Bencher, black_box};
use veto_core::status_list::{Status, StatusList};

const ENTRIES: usize = 1 << 20;

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
