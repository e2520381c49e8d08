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

/// `None` unless `text` is the one canonical encoding of some bytes: `URL_SAFE_NO_PAD` refuses
/// `=` padding, `+`/`/`, whitespace and non-zero trailing bits, so a value signed or MACed in
/// its encoded form has no second spelling that would decode to the same bytes.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

pub(crate) fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}
