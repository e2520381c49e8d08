//! Unpadded base64url, the one text encoding of veto's wire formats: JWS segments, cookie tags,
//! random ids, JWK coordinates and the secrets handed to clients.
//!
//! A module of its own so that every domain module encodes and decodes with the same (strict)
//! rules without importing another domain module to get them.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `None` unless `text` is the one canonical encoding of some bytes: no `=` padding, no `+`/`/`,
/// no whitespace, no length that leaves a lone 6-bit group and no non-zero trailing bits, so a
/// value signed or MACed in its encoded form has no second spelling that would decode to the
/// same bytes. The rules of the `base64` crate's `URL_SAFE_NO_PAD`, which encodes.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = vec![0u8; decoded_len(text.len())?];
    let n = b64url_decode_to(text.as_bytes(), &mut out)?;
    out.truncate(n);
    Some(out)
}

/// The number of bytes `len` base64url characters decode to; `None` for a length no canonical
/// encoding has.
pub(crate) fn decoded_len(len: usize) -> Option<usize> {
    match len % 4 {
        1 => None,
        0 => Some(len / 4 * 3),
        r => Some(len / 4 * 3 + r - 1),
    }
}

/// Each byte's 6-bit value, or `INVALID` for a byte outside the URL-safe alphabet.
const INVALID: u8 = 0x80;
const DECODE: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < alphabet.len() {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

fn sextet(b: u8) -> u8 {
    DECODE[usize::from(b)]
}

/// Decodes strict base64url `text` into `out`, returning how many bytes it wrote; `None` when
/// `text` is not canonical (see [`b64url_decode`]) or `out` is too short.
///
/// Written here rather than taken from the `base64` crate because every check decodes three
/// segments of a token, and the crate's general engine cost more than the HMAC of an HS256
/// token: this is a table lookup per character and one validity test per segment. Its answers
/// are held to the crate's by property tests.
pub(crate) fn b64url_decode_to(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = decoded_len(text.len())?;
    let out = out.get_mut(..n)?;
    let quads = text.chunks_exact(4);
    let tail = quads.remainder();
    let mut triples = out.chunks_exact_mut(3);
    // The OR of every looked-up value: INVALID's bit survives if any byte was outside the
    // alphabet (a valid value has 6 bits).
    let mut seen = 0u8;
    for (q, t) in quads.zip(&mut triples) {
        // Both patterns always match (exact chunks); spelled so that no index is checked and
        // no three-byte copy becomes a call.
        if let ([a, b, c, d], [x, y, z]) = (q, t) {
            let (a, b, c, d) = (sextet(*a), sextet(*b), sextet(*c), sextet(*d));
            seen |= a | b | c | d;
            *x = a << 2 | b >> 4;
            *y = b << 4 | c >> 2;
            *z = c << 6 | d;
        }
    }
    let rest = triples.into_remainder();
    let spare_bits = match *tail {
        [] => 0,
        [a, b] => {
            let (a, b) = (sextet(a), sextet(b));
            seen |= a | b;
            *rest.first_mut()? = a << 2 | b >> 4;
            // 12 bits for one byte: the low 4 must be zero.
            b & 0x0f
        }
        [a, b, c] => {
            let (a, b, c) = (sextet(a), sextet(b), sextet(c));
            seen |= a | b | c;
            rest.copy_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2]);
            // 18 bits for two bytes: the low 2 must be zero.
            c & 0x03
        }
        _ => return None,
    };
    (seen & INVALID == 0 && spare_bits == 0).then_some(n)
}

pub(crate) fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The decoder accepts exactly what `URL_SAFE_NO_PAD` accepts, and decodes it alike.
        #[test]
        fn decodes_like_the_base64_crate(text in "[A-Za-z0-9_=+/. -]{0,40}") {
            prop_assert_eq!(b64url_decode(&text), URL_SAFE_NO_PAD.decode(&text).ok());
        }

        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(b64url_decode(&b64url(&bytes)), Some(bytes));
        }

        /// One character changed in a valid encoding: the near-misses a strict decoder refuses.
        #[test]
        fn near_misses_agree(bytes in proptest::collection::vec(any::<u8>(), 1..40), at in any::<prop::sample::Index>(), c in "[A-Za-z0-9_=+/-]") {
            let mut text: Vec<char> = b64url(&bytes).chars().collect();
            let i = at.index(text.len());
            text[i] = c.chars().next().expect("one char");
            let text: String = text.into_iter().collect();
            prop_assert_eq!(b64url_decode(&text), URL_SAFE_NO_PAD.decode(&text).ok());
        }
    }

    #[test]
    fn short_output_buffer_is_refused() {
        let mut out = [0u8; 2];
        assert_eq!(b64url_decode_to(b"AAAA", &mut out), None);
        assert_eq!(b64url_decode_to(b"AAA", &mut out), Some(2));
    }
}
