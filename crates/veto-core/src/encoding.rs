//! Unpadded base64url, the one text encoding of veto's wire formats: JWS segments, cookie tags,
//! random ids, JWK coordinates and the secrets handed to clients.
//!
//! A module of its own so that every domain module encodes and decodes with the same (strict)
//! rules without importing another domain module to get them.
use std::mem::MaybeUninit;

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
    decoded_len(text.len())?;
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(text.as_bytes())
        .ok()
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

/// Decodes strict base64url `text` (canonical as for [`b64url_decode`]) into a buffer that need
/// not be initialised: the decoded bytes, or `None` when `text` is not canonical or `out` is too
/// short. For the stack buffers of a check (a signature buffer sized for RSA-8192 is 1 KiB, and
/// zeroing it on every check cost more than decoding a signature into it).
///
/// `base64-simd` rather than the `base64` crate (which encodes) because every check decodes
/// the three segments of a token, and the general engine's scalar loop cost a third of an HS256
/// check's HMAC; the SIMD decoder takes a quarter of that. The two agree on what is canonical:
/// the property tests below hold both decoders to `URL_SAFE_NO_PAD`'s answers.
pub(crate) fn b64url_decode_uninit<'d>(
    text: &[u8],
    out: &'d mut [MaybeUninit<u8>],
) -> Option<&'d [u8]> {
    let n = decoded_len(text.len())?;
    // `decode` panics on a short buffer: hand it exactly what the text needs, or give up.
    let out = out.get_mut(..n)?;
    let decoded = base64_simd::URL_SAFE_NO_PAD
        .decode(text, base64_simd::Out::from_uninit_slice(out))
        .ok()?;
    Some(decoded)
}

pub(crate) fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether `text` looks like unpadded base64url: only its alphabet, and no length that leaves a
/// lone 6-bit group (trailing bits are not looked at; [`b64url_decode_uninit`] refuses those).
///
/// Asked of every token's signature segment before its key is looked up (342 characters for
/// RS256): the SIMD checker answers for a canonical segment, which every genuine signature is,
/// at a tenth of the cost of a byte loop; only a segment it refuses is walked byte by byte, so
/// that non-canonical trailing bits alone still count as base64url here.
pub(crate) fn is_b64url_text(text: &[u8]) -> bool {
    text.len() % 4 != 1
        && (base64_simd::URL_SAFE_NO_PAD.check(text).is_ok()
            || text.iter().copied().all(is_b64url_byte))
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

    proptest! {
        /// The fast shape test answers exactly what the byte loop answers.
        #[test]
        fn shape_test_agrees_with_the_byte_loop(text in "[A-Za-z0-9_=+/. -]{0,40}") {
            let expected = text.len() % 4 != 1 && text.bytes().all(is_b64url_byte);
            prop_assert_eq!(is_b64url_text(text.as_bytes()), expected);
        }

        /// Including for what an encoder writes, then edited in one place.
        #[test]
        fn shape_test_agrees_on_near_misses(bytes in proptest::collection::vec(any::<u8>(), 1..300), at in any::<prop::sample::Index>(), c in "[A-Za-z0-9_=+/-]") {
            let mut text = b64url(&bytes).into_bytes();
            let i = at.index(text.len());
            text[i] = c.as_bytes()[0];
            let expected = text.len() % 4 != 1 && text.iter().copied().all(is_b64url_byte);
            prop_assert_eq!(is_b64url_text(&text), expected);
        }
    }

    proptest! {
        /// Into uninitialised memory, the same answers as the `base64` crate.
        #[test]
        fn uninit_decoding_agrees(text in "[A-Za-z0-9_=+/-]{0,60}") {
            let mut uninit = [MaybeUninit::<u8>::uninit(); 64];
            prop_assert_eq!(
                b64url_decode_uninit(text.as_bytes(), &mut uninit).map(<[u8]>::to_vec),
                URL_SAFE_NO_PAD.decode(&text).ok()
            );
        }
    }

    #[test]
    fn short_output_buffer_is_refused() {
        let mut out = [MaybeUninit::<u8>::uninit(); 2];
        assert_eq!(b64url_decode_uninit(b"AAAA", &mut out), None);
        assert_eq!(b64url_decode_uninit(b"AAA", &mut out), Some(&[0u8, 0][..]));
    }
}
