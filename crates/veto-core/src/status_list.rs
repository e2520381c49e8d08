//! The Token Status List (draft-ietf-oauth-status-list-20): veto's list of token statuses as the
//! draft's byte array, its ZLIB-compressed base64url text (`lst`), and the claims of the Status
//! List Token that carries it. Pure: no I/O, no clock; the caller hands in `now`.
//!
//! Decisions:
//!
//! - **Two bits per token** ([`BITS`]), the draft's smallest width that holds VALID, INVALID and
//!   SUSPENDED. Entry `i` sits in bits `2*(i%4)..2*(i%4)+2` of byte `i/4`: the least significant
//!   bits first, as the draft packs them.
//! - **Incremental compression.** A 2^20-entry list is 256 KiB; deflating all of it on every
//!   revocation would cost 16 ms per flip (level 9, see the bench). The byte array is cut into chunks of
//!   [`CHUNK_BYTES`], and each chunk's raw-DEFLATE output is kept. A chunk is compressed by a fresh
//!   compressor that ends with a *full flush* (byte-aligned, no back-reference into another
//!   chunk, not the final block), the last chunk with *finish* (the final block). Raw DEFLATE
//!   outputs that end that way can be concatenated into one valid stream, so `set` only marks
//!   its chunk dirty, and an encode recompresses the dirty chunks alone and glues the cached
//!   outputs between the 2-byte zlib header and the Adler-32 trailer (RFC 1950). What this costs
//!   is some size: each chunk starts with empty history and a fresh Huffman table and ends with
//!   a 5-byte flush marker, about 20 bytes per chunk. On the draft's own 2^20 vector (11 entries
//!   set) that doubles the text, 423 characters of `lst` in one stream against 858 in 16 chunks;
//!   on a list with 1 % of entries set (24 k characters) it is noise. A flip then costs a
//!   sixteenth of a full encode (see [`CHUNK_BYTES`] and `LEVEL`).
//! - **The Adler-32 is computed over the whole array on each encode** (`adler2`, already in the
//!   tree under miniz_oxide) rather than combined from per-chunk checksums: 256 KiB costs ~25 µs, 2-3 % of a
//!   flip-and-encode, and a checksum computed from the bytes cannot drift from them.
//! - **Decoding** ([`StatusList::from_lst`]) is for tests and for a verifier: strict base64url,
//!   an inflated-size cap chosen by the caller (DEFLATE inflates up to about 1000:1, so a
//!   megabyte of `lst` can stand for a gigabyte), no trailing bytes after the zlib stream, and `bits` must be 2.
//! - **Value 3** (the draft's "application specific") never comes out of [`StatusList::set`],
//!   which takes a [`Status`]; a list decoded from elsewhere may hold it, so [`StatusList::get`]
//!   reports it as [`StatusListError::UnknownStatus`] and [`StatusList::get_raw`] gives the bits.
use std::io::Read;

use flate2::{Compress, Compression, FlushCompress, Status as ZStatus};
use serde_json::{Value, json};

use crate::encoding::{b64url, b64url_decode};
use crate::keys::{KeyError, LoadedKey};

pub mod registry;

/// Bits per token in veto's status lists.
pub const BITS: u8 = 2;
const ENTRIES_PER_BYTE: usize = 8 / BITS as usize;
const MASK: u8 = (1 << BITS) - 1;

/// Bytes per compressed chunk: 65,536 entries, so a 2^20-entry list has 16 chunks. Smaller
/// chunks make a flip cheaper (one chunk is recompressed) but add per-chunk overhead to the
/// served text (a restarted history, a fresh Huffman table and a 5-byte flush marker each) and
/// to each encode (a compressor set up per dirty chunk, and one copy per chunk). 16 KiB keeps a
/// flip about a sixteenth of a full encode (~1 ms against ~15 ms on the bench) while the
/// overhead stays about 20 bytes a chunk, some 330 bytes on a 2^20 list: a few percent of any
/// list with real revocations in it, though it doubles the text of a list almost all VALID.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// The smallest list [`StatusList::new`] makes: the draft's privacy advice is a list large
/// enough that one token's index says little about its holder; 2^17 entries is two chunks.
pub const MIN_ENTRIES: usize = 1 << 17;
/// The largest list [`StatusList::new`] makes: 2^26 entries, 16 MiB of bytes.
pub const MAX_ENTRIES: usize = 1 << 26;
/// The compression level: best, as the draft's reference code uses. Measured on a 2^20 list with
/// 1 % of entries set (benches/status_list.rs, a loaded 2-core machine): level 9 gives 24.2 k
/// characters of `lst` for ~1 ms per flip-and-encode (16 ms for all chunks); level 6 gives 26.7 k
/// for ~0.34 ms (6 ms). The text is what every relying party downloads on every refresh, the
/// encode is paid once per change, so the smaller text wins.
const LEVEL: u32 = 9;

/// A token's status, as the draft numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Valid = 0x00,
    Invalid = 0x01,
    Suspended = 0x02,
}

impl TryFrom<u8> for Status {
    type Error = StatusListError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0x00 => Ok(Status::Valid),
            0x01 => Ok(Status::Invalid),
            0x02 => Ok(Status::Suspended),
            other => Err(StatusListError::UnknownStatus(other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusListError {
    #[error("a status list of {entries} entries is not allowed: {why}")]
    BadSize { entries: usize, why: &'static str },
    #[error("index {idx} is outside a status list of {len} entries")]
    OutOfRange { idx: usize, len: usize },
    #[error("status value {0:#04x} is not one veto knows")]
    UnknownStatus(u8),
    #[error("status list with {0} bits per entry: veto reads only 2")]
    UnsupportedBits(u64),
    #[error("lst is not unpadded base64url")]
    Base64,
    #[error("lst is not one valid zlib stream (header, data, checksum or trailing bytes)")]
    Zlib,
    #[error("lst inflates to more than {0} bytes")]
    TooLarge(usize),
    #[error("lst inflates to an empty list")]
    Empty,
    #[error("the compressor failed")]
    Compress,
    #[error("a status list token's validity and ttl must both be positive")]
    BadLifetime,
    #[error("no status list {0:?} is held")]
    UnknownList(String),
}

/// A fixed-size list of 2-bit statuses, with its compressed form kept up to date chunk by chunk.
#[derive(Clone)]
pub struct StatusList {
    bytes: Vec<u8>,
    chunk_bytes: usize,
    /// Raw DEFLATE output of each chunk, valid when its `dirty` flag is clear.
    deflated: Vec<Vec<u8>>,
    dirty: Vec<bool>,
    /// The last `lst` encoded, while no entry has changed since.
    lst: Option<String>,
}

impl std::fmt::Debug for StatusList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusList")
            .field("entries", &self.len())
            .field("chunk_bytes", &self.chunk_bytes)
            .finish_non_exhaustive()
    }
}

impl StatusList {
    /// A list of `entries` VALID statuses: a power of two in `MIN_ENTRIES..=MAX_ENTRIES`, so
    /// that it is a whole number of chunks and its size says nothing about how many tokens
    /// were issued.
    pub fn new(entries: usize) -> Result<Self, StatusListError> {
        if !entries.is_power_of_two() {
            return Err(StatusListError::BadSize {
                entries,
                why: "not a power of two",
            });
        }
        if !(MIN_ENTRIES..=MAX_ENTRIES).contains(&entries) {
            return Err(StatusListError::BadSize {
                entries,
                why: "outside 2^17..=2^26",
            });
        }
        Self::with_chunk_bytes(entries, CHUNK_BYTES)
    }

    /// A list of `entries` VALID statuses cut into chunks of `chunk_bytes` bytes: for tests and
    /// benchmarks, which want small lists of several chunks. `entries` must fill a whole,
    /// non-zero number of chunks and stay within [`MAX_ENTRIES`].
    pub fn with_chunk_bytes(entries: usize, chunk_bytes: usize) -> Result<Self, StatusListError> {
        let entries_per_chunk = chunk_bytes.saturating_mul(ENTRIES_PER_BYTE);
        if chunk_bytes == 0
            || entries == 0
            || entries > MAX_ENTRIES
            || !entries.is_multiple_of(entries_per_chunk)
        {
            return Err(StatusListError::BadSize {
                entries,
                why: "not a whole, non-zero number of chunks within 2^26",
            });
        }
        Ok(Self::from_bytes(
            vec![0; entries / ENTRIES_PER_BYTE],
            chunk_bytes,
        ))
    }

    /// Any non-empty byte array; the last chunk may be short (a decoded list's size is the
    /// issuer's choice).
    fn from_bytes(bytes: Vec<u8>, chunk_bytes: usize) -> Self {
        let chunks = bytes.len().div_ceil(chunk_bytes);
        StatusList {
            bytes,
            chunk_bytes,
            deflated: vec![Vec::new(); chunks],
            dirty: vec![true; chunks],
            lst: None,
        }
    }

    /// How many entries the list holds.
    pub fn len(&self) -> usize {
        self.bytes.len() * ENTRIES_PER_BYTE
    }

    /// Never true for a list this module made: every constructor refuses an empty one.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The packed byte array, as the draft lays it out.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The two bits at `idx`, whatever they hold (3 included).
    pub fn get_raw(&self, idx: usize) -> Result<u8, StatusListError> {
        let byte = self
            .bytes
            .get(idx / ENTRIES_PER_BYTE)
            .ok_or(self.out_of_range(idx))?;
        Ok((byte >> shift(idx)) & MASK)
    }

    /// The status at `idx`; [`StatusListError::UnknownStatus`] for the value 3.
    pub fn get(&self, idx: usize) -> Result<Status, StatusListError> {
        Status::try_from(self.get_raw(idx)?)
    }

    /// Sets the status at `idx`; whether it changed. A change marks the entry's chunk for
    /// recompression at the next encode.
    pub fn set(&mut self, idx: usize, status: Status) -> Result<bool, StatusListError> {
        let err = self.out_of_range(idx);
        let at = idx / ENTRIES_PER_BYTE;
        let byte = self.bytes.get_mut(at).ok_or(err)?;
        let updated = (*byte & !(MASK << shift(idx))) | ((status as u8) << shift(idx));
        if updated == *byte {
            return Ok(false);
        }
        *byte = updated;
        if let Some(d) = self.dirty.get_mut(at / self.chunk_bytes) {
            *d = true;
        }
        self.lst = None;
        Ok(true)
    }

    fn out_of_range(&self, idx: usize) -> StatusListError {
        StatusListError::OutOfRange {
            idx,
            len: self.len(),
        }
    }

    /// The list as a ZLIB stream (RFC 1950): header, the chunks' DEFLATE outputs (recompressing
    /// the dirty ones), Adler-32 of the whole array.
    pub fn encode_zlib(&mut self) -> Result<Vec<u8>, StatusListError> {
        let last = self.deflated.len().saturating_sub(1);
        for (i, (data, (out, dirty))) in self
            .bytes
            .chunks(self.chunk_bytes)
            .zip(self.deflated.iter_mut().zip(self.dirty.iter_mut()))
            .enumerate()
        {
            if *dirty {
                *out = deflate_chunk(data, i == last)?;
                *dirty = false;
            }
        }
        let body: usize = self.deflated.iter().map(Vec::len).sum();
        let mut stream = Vec::with_capacity(2 + body + 4);
        stream.extend_from_slice(&zlib_header(LEVEL));
        for out in &self.deflated {
            stream.extend_from_slice(out);
        }
        stream.extend_from_slice(&adler2::adler32_slice(&self.bytes).to_be_bytes());
        Ok(stream)
    }

    /// The draft's `lst`: the ZLIB stream in unpadded base64url. Kept until an entry changes,
    /// so encoding an unchanged list returns the same text without touching the compressor.
    pub fn encode_lst(&mut self) -> Result<&str, StatusListError> {
        if self.lst.is_none() {
            let text = b64url(&self.encode_zlib()?);
            self.lst = Some(text);
        }
        Ok(self.lst.as_deref().unwrap_or_default())
    }

    /// Reads a list from a status list's `bits` and `lst` members. `bits` is the JSON integer as
    /// read (a `u64`, so that no caller narrows 258 to 2 on the way in); it must be 2.
    /// `max_bytes` bounds the inflated array: past it, [`StatusListError::TooLarge`] without
    /// inflating further. The list may have any non-zero size.
    pub fn from_lst(bits: u64, lst: &str, max_bytes: usize) -> Result<Self, StatusListError> {
        if bits != u64::from(BITS) {
            return Err(StatusListError::UnsupportedBits(bits));
        }
        let compressed = b64url_decode(lst).ok_or(StatusListError::Base64)?;
        let mut decoder = flate2::read::ZlibDecoder::new(compressed.as_slice());
        let mut bytes = Vec::new();
        // One byte past the cap tells "exactly at the cap" from "over it".
        let limit = u64::try_from(max_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        (&mut decoder)
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|_| StatusListError::Zlib)?;
        if bytes.len() > max_bytes {
            return Err(StatusListError::TooLarge(max_bytes));
        }
        // `read_to_end` stops at the end of the zlib stream; bytes after it are not part of any
        // list an issuer signed.
        if usize::try_from(decoder.total_in()).ok() != Some(compressed.len()) {
            return Err(StatusListError::Zlib);
        }
        if bytes.is_empty() {
            return Err(StatusListError::Empty);
        }
        Ok(Self::from_bytes(bytes, CHUNK_BYTES))
    }
}

fn shift(idx: usize) -> u32 {
    // `idx % 4 * 2` is at most 6.
    ((idx % ENTRIES_PER_BYTE) as u32) * u32::from(BITS)
}

/// CMF 0x78 (DEFLATE, 32 KiB window), then FLG with FLEVEL for `level` and the FCHECK bits that
/// make the pair a multiple of 31 (RFC 1950 §2.2). FLEVEL is informative only.
fn zlib_header(level: u32) -> [u8; 2] {
    const CMF: u8 = 0x78;
    let flevel: u8 = match level {
        0 | 1 => 0,
        2..=5 => 1,
        6 => 2,
        _ => 3,
    };
    let flg = flevel << 6;
    let rem = ((u16::from(CMF) << 8) | u16::from(flg)) % 31;
    // Adding 31 - rem (≤ 31) only touches FCHECK, the low five bits, which are zero.
    let fcheck = if rem == 0 { 0 } else { 31 - rem as u8 };
    [CMF, flg | fcheck]
}

/// Raw DEFLATE of one chunk by a fresh compressor: ending with a full flush (byte-aligned, not
/// final) unless `last`, which ends the stream.
fn deflate_chunk(data: &[u8], last: bool) -> Result<Vec<u8>, StatusListError> {
    let mut c = Compress::new(Compression::new(LEVEL), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Full
    };
    let mut out = Vec::with_capacity(data.len() / 8 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let before = (c.total_in(), c.total_out());
        let consumed = usize::try_from(c.total_in()).map_err(|_| StatusListError::Compress)?;
        let rest = data.get(consumed..).unwrap_or_default();
        let had_room = out.capacity() - out.len();
        let status = c
            .compress_vec(rest, &mut out, flush)
            .map_err(|_| StatusListError::Compress)?;
        // A compressor that neither read nor wrote while it had room never will: refuse rather
        // than spin.
        if (c.total_in(), c.total_out()) == before && had_room > 0 && status != ZStatus::StreamEnd {
            return Err(StatusListError::Compress);
        }
        let consumed = usize::try_from(c.total_in()).map_err(|_| StatusListError::Compress)?;
        match status {
            ZStatus::StreamEnd => return Ok(out),
            // A flush is complete once all input is in and the compressor stopped with output
            // room to spare; a full buffer means it may have more to write.
            ZStatus::Ok | ZStatus::BufError
                if !last && consumed == data.len() && out.len() < out.capacity() =>
            {
                return Ok(out);
            }
            ZStatus::Ok | ZStatus::BufError => {}
        }
    }
}

/// What a Status List Token says besides the list: where it lives, when it was made, how long
/// it is good for and how long a relying party may cache it (draft §5.1).
#[derive(Debug, Clone, Copy)]
pub struct TokenInput<'a> {
    /// The `sub`: the URI the token is served at, which referenced tokens name.
    pub uri: &'a str,
    /// The list's `lst`, from [`StatusList::encode_lst`].
    pub lst: &'a str,
    /// `iat`, unix seconds.
    pub now: i64,
    /// `exp - iat`, seconds.
    pub validity_seconds: i64,
    /// `ttl`: how long a relying party may keep the token before fetching it again, seconds.
    pub ttl_seconds: i64,
}

/// The claims of a Status List Token: `sub`, `iat`, `exp`, `ttl` and `status_list`. The draft
/// wants `ttl` positive; a token valid for no time at all is as wrong, so both are refused
/// unless above zero.
pub fn token_claims(input: &TokenInput<'_>) -> Result<Value, StatusListError> {
    if input.validity_seconds <= 0 || input.ttl_seconds <= 0 {
        return Err(StatusListError::BadLifetime);
    }
    Ok(json!({
        "sub": input.uri,
        "iat": input.now,
        "exp": input.now.saturating_add(input.validity_seconds),
        "ttl": input.ttl_seconds,
        "status_list": {"bits": BITS, "lst": input.lst},
    }))
}

/// A new list's id: 128 random bits in base64url (safe in a URI path). Random rather than
/// sequential so that a list's URI says nothing about how many lists, or tokens, came before.
pub fn new_list_id() -> String {
    crate::random::random_id("")
}

/// `n` random numbers from the system generator: candidate indices for an allocation, each
/// taken modulo the list's size (a power of two keeps them uniform). Random indices are the
/// draft's privacy rule (unlinkability): an index says nothing about when, or in what order, tokens
/// were issued.
pub fn index_candidates(n: usize) -> Vec<u32> {
    let mut bytes = vec![0u8; n * 4];
    crate::random::fill(&mut bytes);
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The JOSE `typ` of a Status List Token (draft §5.1).
pub const TOKEN_TYP: &str = "statuslist+jwt";

/// Signs `claims` (from [`token_claims`]) as a Status List Token, with veto's one JWS writer.
pub fn sign_token(key: &LoadedKey, claims: &Value) -> Result<String, KeyError> {
    crate::token::sign_jws(key, TOKEN_TYP, claims)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;

    /// Inflates with flate2's own zlib reader, not through `from_lst`: the encoder is checked
    /// against a decoder that has no part in this module.
    fn inflate_lst(lst: &str) -> Vec<u8> {
        let zlib = URL_SAFE_NO_PAD.decode(lst).expect("base64url");
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(zlib.as_slice())
            .read_to_end(&mut out)
            .expect("a valid zlib stream");
        out
    }

    /// The naive packing: entry i in bits 2*(i%4).. of byte i/4.
    fn pack(statuses: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; statuses.len().div_ceil(4)];
        for (i, s) in statuses.iter().enumerate() {
            bytes[i / 4] |= (s & 0b11) << (2 * (i % 4));
        }
        bytes
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    // draft-ietf-oauth-status-list-20, §4.1 "Compressed Byte Array", the 2-bit example, and §4.2
    // "Status List in JSON Format" (examples/status_list_encoding2_json.md), verbatim:
    //
    //   status[0] = 0b01 ... status[11] = 0b11
    //   byte_array = [0xc9, 0x44, 0xf9]
    //   "bits": 2,
    //   "lst": "eNo76fITAAPfAgc"
    const SHORT_STATUSES: [u8; 12] = [
        0b01, 0b10, 0b00, 0b11, 0b00, 0b01, 0b00, 0b01, 0b01, 0b10, 0b11, 0b11,
    ];
    const SHORT_BYTES: [u8; 3] = [0xc9, 0x44, 0xf9];
    const SHORT_LST: &str = "eNo76fITAAPfAgc";

    // draft-ietf-oauth-status-list-20, Appendix C "Test vectors for Status List encoding",
    // C.2 "2-bit Status List": "All values that are not mentioned for the examples below can be
    // assumed to be 0 (VALID). All examples are initialized with a size of 2^20 entries."
    //
    //   status[0] = 0b01
    //   status[1993] = 0b10
    //   status[25460]= 0b01
    //   status[159495] = 0b11
    //   status[495669] = 0b01
    //   status[554353] = 0b01
    //   status[645645] = 0b10
    //   status[723232] = 0b01
    //   status[854545] = 0b01
    //   status[934534] = 0b10
    //   status[1000345] = 0b11
    const LONG_ENTRIES: [(usize, u8); 11] = [
        (0, 0b01),
        (1993, 0b10),
        (25460, 0b01),
        (159495, 0b11),
        (495669, 0b01),
        (554353, 0b01),
        (645645, 0b10),
        (723232, 0b01),
        (854545, 0b01),
        (934534, 0b10),
        (1000345, 0b11),
    ];
    // Its JSON encoding (examples/status_list_encoding2_long_json.md), verbatim, line breaks
    // included: the draft folds the string to fit the page; `long_lst` takes them out.
    const LONG_JSON_LST: &str = "eNrt2zENACEQAEEuoaBABP5VIO01fCjIHTMStt9ovGV
  IAAAAAABAbiEBAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEB5WwIAAAAAA
  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAID0ugQAAAAAAAAAAAAAAAAAQG12SgAAA
  AAAAAAAAAAAAAAAAAAAAAAAAOCSIQEAAAAAAAAAAAAAAAAAAAAAAAD8ExIAAAAAAAA
  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAwJEuAQAAAAAAAAAAAAAAAAAAAAAAAMB9S
  wIAAAAAAAAAAAAAAAAAAACoYUoAAAAAAAAAAAAAAEBqH81gAQw";

    fn long_lst() -> String {
        LONG_JSON_LST.split_ascii_whitespace().collect()
    }

    fn long_model() -> Vec<u8> {
        let mut statuses = vec![0u8; 1 << 20];
        for (i, s) in LONG_ENTRIES {
            statuses[i] = s;
        }
        pack(&statuses)
    }

    #[test]
    fn status_values_are_the_drafts() {
        assert_eq!(Status::try_from(0x00), Ok(Status::Valid));
        assert_eq!(Status::try_from(0x01), Ok(Status::Invalid));
        assert_eq!(Status::try_from(0x02), Ok(Status::Suspended));
        assert_eq!(
            Status::try_from(0x03),
            Err(StatusListError::UnknownStatus(3))
        );
        assert_eq!(
            Status::try_from(0xff),
            Err(StatusListError::UnknownStatus(0xff))
        );
        for s in [Status::Valid, Status::Invalid, Status::Suspended] {
            assert_eq!(Status::try_from(s as u8), Ok(s));
        }
    }

    #[test]
    fn short_draft_example_decodes_to_its_bytes() {
        let list = StatusList::from_lst(2, SHORT_LST, 1024).expect("the draft's lst");
        assert_eq!(list.as_bytes(), SHORT_BYTES);
        assert_eq!(pack(&SHORT_STATUSES), SHORT_BYTES);
        for (i, s) in SHORT_STATUSES.iter().enumerate() {
            assert_eq!(list.get_raw(i), Ok(*s), "entry {i}");
        }
        assert_eq!(list.get(0), Ok(Status::Invalid));
        assert_eq!(list.get(1), Ok(Status::Suspended));
        assert_eq!(list.get(2), Ok(Status::Valid));
        assert_eq!(list.get(3), Err(StatusListError::UnknownStatus(3)));
        assert!(matches!(
            list.get(12),
            Err(StatusListError::OutOfRange { idx: 12, len: 12 })
        ));
    }

    #[test]
    fn short_draft_example_reencodes_to_its_bytes() {
        let mut list = StatusList::from_lst(2, SHORT_LST, 1024).expect("the draft's lst");
        let lst = list.encode_lst().expect("encodes").to_owned();
        assert_eq!(inflate_lst(&lst), SHORT_BYTES);
    }

    #[test]
    fn set_packs_least_significant_bits_first() {
        // 8 entries, one chunk of 2 bytes.
        let mut list = StatusList::with_chunk_bytes(8, 2).expect("size");
        assert_eq!(list.set(0, Status::Invalid), Ok(true));
        assert_eq!(list.as_bytes(), [0b0000_0001, 0]);
        assert_eq!(list.set(1, Status::Suspended), Ok(true));
        assert_eq!(list.as_bytes(), [0b0000_1001, 0]);
        assert_eq!(list.set(3, Status::Invalid), Ok(true));
        assert_eq!(list.as_bytes(), [0b0100_1001, 0]);
        assert_eq!(list.set(4, Status::Suspended), Ok(true));
        assert_eq!(list.as_bytes(), [0b0100_1001, 0b0000_0010]);
        // Same value again: no change. Back to VALID clears only its own two bits.
        assert_eq!(list.set(4, Status::Suspended), Ok(false));
        assert_eq!(list.set(1, Status::Valid), Ok(true));
        assert_eq!(list.as_bytes(), [0b0100_0001, 0b0000_0010]);
        assert_eq!(list.get(3), Ok(Status::Invalid));
        assert_eq!(list.get(4), Ok(Status::Suspended));
        assert_eq!(list.get(7), Ok(Status::Valid));
    }

    #[test]
    fn the_draft_2bit_vector_decodes_to_its_array() {
        let list = StatusList::from_lst(2, &long_lst(), 1 << 20).expect("the draft's lst");
        assert_eq!(list.len(), 1 << 20);
        assert_eq!(list.as_bytes(), long_model().as_slice());
        for (i, s) in LONG_ENTRIES {
            assert_eq!(list.get_raw(i), Ok(s), "entry {i}");
        }
        let non_valid = (0..list.len())
            .filter(|&i| list.get_raw(i) != Ok(0))
            .count();
        assert_eq!(non_valid, LONG_ENTRIES.len());
    }

    #[test]
    fn the_draft_2bit_array_encodes_to_the_same_bytes() {
        // Through `set` for what a `Status` can say, through the decoded list for all of it
        // (the vector holds 0b11, which veto never sets).
        let mut built = StatusList::new(1 << 20).expect("size");
        let mut model = vec![0u8; 1 << 20];
        for (i, s) in LONG_ENTRIES {
            if let Ok(status) = Status::try_from(s) {
                assert_eq!(built.set(i, status), Ok(true));
                model[i] = s;
            }
        }
        let lst = built.encode_lst().expect("encodes").to_owned();
        assert_eq!(inflate_lst(&lst), pack(&model));

        let mut decoded = StatusList::from_lst(2, &long_lst(), 1 << 20).expect("the draft's lst");
        let lst = decoded.encode_lst().expect("encodes").to_owned();
        assert_eq!(inflate_lst(&lst), long_model());
        // Chunking costs a little size against the draft's single stream.
        let ours = lst.len();
        let theirs = long_lst().len();
        eprintln!("draft 2-bit vector: draft lst {theirs} chars, veto's {ours}");
        assert!(ours <= theirs + 16 * 64, "{ours} vs {theirs}");
    }

    #[test]
    fn constructors_refuse_bad_sizes() {
        assert!(StatusList::new(1 << 17).is_ok());
        assert!(StatusList::new(1 << 20).is_ok());
        assert!(StatusList::new(MAX_ENTRIES).is_ok());
        for bad in [
            0,
            1,
            1 << 16,
            3 << 17,
            (1 << 20) + 4,
            MAX_ENTRIES * 2,
            usize::MAX,
        ] {
            assert!(
                matches!(StatusList::new(bad), Err(StatusListError::BadSize { .. })),
                "{bad}"
            );
        }
        assert!(StatusList::with_chunk_bytes(16, 4).is_ok());
        assert!(StatusList::with_chunk_bytes(48, 4).is_ok());
        for (entries, chunk) in [(0, 4), (16, 0), (20, 4), (18, 1), (16, usize::MAX)] {
            assert!(
                matches!(
                    StatusList::with_chunk_bytes(entries, chunk),
                    Err(StatusListError::BadSize { .. })
                ),
                "{entries} / {chunk}"
            );
        }
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let mut list = StatusList::with_chunk_bytes(16, 4).expect("size");
        for idx in [16, 17, 1 << 40, usize::MAX] {
            let err = StatusListError::OutOfRange { idx, len: 16 };
            assert_eq!(list.get(idx), Err(err.clone()));
            assert_eq!(list.get_raw(idx), Err(err.clone()));
            assert_eq!(list.set(idx, Status::Invalid), Err(err));
        }
        assert_eq!(list.set(15, Status::Invalid), Ok(true));
    }

    #[test]
    fn zlib_header_checks_for_every_level() {
        for level in 0..=9 {
            let [cmf, flg] = zlib_header(level);
            assert_eq!(cmf, 0x78);
            assert_eq!(
                (u16::from(cmf) * 256 + u16::from(flg)) % 31,
                0,
                "level {level}"
            );
        }
        assert_eq!(zlib_header(1), [0x78, 0x01]);
        assert_eq!(zlib_header(6), [0x78, 0x9C]);
        assert_eq!(zlib_header(9), [0x78, 0xDA]);
    }

    #[test]
    fn encoding_reuses_clean_chunks() {
        // Three chunks of 4 bytes. Replace chunk 0's cached output by the deflate of other bytes:
        // if an encode after a change in chunk 1 recompressed chunk 0, the poison would vanish.
        let mut list = StatusList::with_chunk_bytes(48, 4).expect("size");
        list.encode_lst().expect("encodes");
        list.deflated[0] = deflate_chunk(&[0xAA; 4], false).expect("deflates");
        assert_eq!(list.set(20, Status::Suspended), Ok(true));
        let lst = list.encode_lst().expect("encodes").to_owned();
        let mut expected = [0u8; 12];
        expected[..4].fill(0xAA);
        expected[5] = 0b10;
        // The checksum is over the real array, so read the DEFLATE data without it.
        let zlib = URL_SAFE_NO_PAD.decode(&lst).expect("base64url");
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&zlib[2..zlib.len() - 4])
            .read_to_end(&mut out)
            .expect("raw deflate");
        assert_eq!(out, expected);
        assert!(list.dirty.iter().all(|d| !d));
    }

    #[test]
    fn hostile_lst_gets_typed_errors() {
        let good = zlib(&[0u8; 64]);
        let good_lst = b64url(&good);
        assert!(StatusList::from_lst(2, &good_lst, 64).is_ok());

        // Bits other than 2, including ones that narrow to 2.
        for bits in [0, 1, 4, 8, 258, u64::MAX] {
            assert_eq!(
                StatusList::from_lst(bits, &good_lst, 64).map(|_| ()),
                Err(StatusListError::UnsupportedBits(bits))
            );
        }
        // Not canonical base64url.
        for text in [
            "eNo7+fITAAPfAgc",
            "eNo76fITAAPfAgc=",
            "eNo76fIT AAPfAgc",
            "eNo76fITAAPfAgc\n",
            "A",
            "eNo76fITAAPfAgd",
        ] {
            assert_eq!(
                StatusList::from_lst(2, text, 64).map(|_| ()),
                Err(StatusListError::Base64),
                "{text:?}"
            );
        }
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("not zlib", b"hello, world".to_vec()),
            ("raw deflate without the zlib header", good[2..].to_vec()),
            ("gzip", {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(&[0u8; 64]).expect("write");
                e.finish().expect("finish")
            }),
            ("bad checksum", {
                let mut z = good.clone();
                let n = z.len();
                z[n - 1] ^= 1;
                z
            }),
            ("truncated", good[..good.len() - 3].to_vec()),
            ("trailing bytes", {
                let mut z = good.clone();
                z.push(0);
                z
            }),
            ("bad header check", {
                let mut z = good.clone();
                z[1] ^= 1;
                z
            }),
        ];
        for (what, bytes) in cases {
            assert_eq!(
                StatusList::from_lst(2, &b64url(&bytes), 64).map(|_| ()),
                Err(StatusListError::Zlib),
                "{what}"
            );
        }
        assert_eq!(
            StatusList::from_lst(2, &b64url(&zlib(&[])), 64).map(|_| ()),
            Err(StatusListError::Empty)
        );
    }

    #[test]
    fn the_inflate_cap_holds() {
        // 64 MiB of zeros is a 64 KiB lst: refused without inflating it all.
        let bomb = b64url(&zlib(&vec![0u8; 64 << 20]));
        assert!(bomb.len() < 128 << 10);
        assert_eq!(
            StatusList::from_lst(2, &bomb, 1 << 20).map(|_| ()),
            Err(StatusListError::TooLarge(1 << 20))
        );
        // Exactly at the cap is allowed; one byte under it is not.
        let lst = long_lst();
        assert!(StatusList::from_lst(2, &lst, 1 << 18).is_ok());
        assert_eq!(
            StatusList::from_lst(2, &lst, (1 << 18) - 1).map(|_| ()),
            Err(StatusListError::TooLarge((1 << 18) - 1))
        );
        assert_eq!(
            StatusList::from_lst(2, &lst, 0).map(|_| ()),
            Err(StatusListError::TooLarge(0))
        );
    }

    #[test]
    fn token_claims_are_the_drafts() {
        let input = TokenInput {
            uri: "https://veto.example/statuslists/1",
            lst: SHORT_LST,
            now: 1_800_000_000,
            validity_seconds: 86_400,
            ttl_seconds: 300,
        };
        assert_eq!(
            token_claims(&input),
            Ok(json!({
                "sub": "https://veto.example/statuslists/1",
                "iat": 1_800_000_000,
                "exp": 1_800_086_400,
                "ttl": 300,
                "status_list": {"bits": 2, "lst": "eNo76fITAAPfAgc"},
            }))
        );
        for (validity_seconds, ttl_seconds) in [(0, 300), (86_400, 0), (-1, 300), (86_400, -5)] {
            let bad = TokenInput {
                validity_seconds,
                ttl_seconds,
                ..input
            };
            assert_eq!(token_claims(&bad), Err(StatusListError::BadLifetime));
        }
    }

    #[test]
    fn status_list_token_is_signed_with_its_typ() {
        use crate::keys::{MasterKey, generate_signing_key};
        let master = MasterKey::from_bytes([7; 32]);
        let rec = generate_signing_key(
            "acme",
            crate::Alg::ES256,
            None,
            &master,
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .expect("key");
        let key = LoadedKey::load(&rec, &master).expect("loads");
        let mut list = StatusList::new(1 << 17).expect("size");
        list.set(42, Status::Invalid).expect("in range");
        let lst = list.encode_lst().expect("encodes").to_owned();
        let claims = token_claims(&TokenInput {
            uri: "https://veto.example/statuslists/1",
            lst: &lst,
            now: 1_800_000_000,
            validity_seconds: 86_400,
            ttl_seconds: 300,
        })
        .expect("claims");
        let token = sign_token(&key, &claims).expect("signs");

        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(
            header,
            json!({"alg": "ES256", "kid": key.kid, "typ": "statuslist+jwt"})
        );
        let body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(body, claims);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(key.verify_signature(signed.as_bytes(), &signature));
        // And what it carries reads back.
        let back = StatusList::from_lst(
            2,
            body["status_list"]["lst"].as_str().expect("lst"),
            1 << 15,
        )
        .expect("decodes");
        assert_eq!(back.get(42), Ok(Status::Invalid));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(usize, u8),
        Encode,
    }

    fn op(entries: usize) -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..entries, 0u8..3).prop_map(|(i, s)| Op::Set(i, s)),
            1 => Just(Op::Encode),
        ]
    }

    fn case() -> impl Strategy<Value = (usize, usize, Vec<Op>)> {
        // Chunks of 1 to 64 bytes, 1 to 5 of them: boundaries everywhere, lists small enough
        // to run hundreds of cases.
        (1usize..=64, 1usize..=5).prop_flat_map(|(chunk_bytes, chunks)| {
            let entries = chunk_bytes * chunks * 4;
            (
                Just(chunk_bytes),
                Just(entries),
                proptest::collection::vec(op(entries), 0..80),
            )
        })
    }

    proptest! {
        /// After any sequence of sets and encodes, the encoded list inflates to exactly the
        /// naive packing of what was set; an encode with nothing changed since the last one
        /// gives the same text; and what is encoded decodes back to the same list.
        #[test]
        fn encodes_what_a_naive_model_packs((chunk_bytes, entries, ops) in case()) {
            let mut list = StatusList::with_chunk_bytes(entries, chunk_bytes).expect("size");
            let mut model = vec![0u8; entries];
            let mut last: Option<String> = None;
            let mut changed = true;
            for op in ops.into_iter().chain([Op::Encode, Op::Encode]) {
                match op {
                    Op::Set(i, s) => {
                        let status = Status::try_from(s).expect("0..3");
                        let did = list.set(i, status).expect("in range");
                        prop_assert_eq!(did, model[i] != s);
                        changed |= did;
                        model[i] = s;
                        prop_assert_eq!(list.get(i), Ok(status));
                    }
                    Op::Encode => {
                        let lst = list.encode_lst().expect("encodes").to_owned();
                        prop_assert_eq!(inflate_lst(&lst), pack(&model));
                        if !changed {
                            prop_assert_eq!(Some(&lst), last.as_ref());
                        }
                        // Freshly compressed from the same bytes, the same text.
                        let mut again = list.clone();
                        again.dirty.fill(true);
                        again.lst = None;
                        prop_assert_eq!(again.encode_lst().expect("encodes"), lst.as_str());
                        last = Some(lst);
                        changed = false;
                    }
                }
            }
            let lst = last.expect("encoded at least twice");
            let back = StatusList::from_lst(2, &lst, entries / 4).expect("decodes");
            let packed = pack(&model);
            prop_assert_eq!(back.as_bytes(), packed.as_slice());
        }
    }
}
