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

/// Decodes strict base64url `text` into `out`, returning how many bytes it wrote; `None` when
/// `text` is not canonical (see [`b64url_decode`]) or `out` is too short.
///
/// `base64-simd` rather than the `base64` crate (which encodes) because every check decodes
/// the three segments of a token, and the general engine's scalar loop cost a third of an HS256
/// check's HMAC; the SIMD decoder takes a quarter of that. The two agree on what is canonical:
/// the property tests below hold this function to `URL_SAFE_NO_PAD`'s answers.
pub(crate) fn b64url_decode_to(text: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = decoded_len(text.len())?;
    let out = out.get_mut(..n)?;
    let decoded = base64_simd::URL_SAFE_NO_PAD
        .decode(text, base64_simd::Out::from_slice(out))
        .ok()?;
    Some(decoded.len())
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
