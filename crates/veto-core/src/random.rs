//! Where veto-core gets its random bytes, and the random identifiers made from them.
//!
//! Ids, CSRF tokens, API key secrets, session key secrets, master keys and AES-GCM nonces all
//! come from [`fill`], so what happens when the system generator fails is decided once, there.
//! (aws-lc calls that take a `SecureRandom`, such as ECDSA signing and key pair generation, get
//! an `aws_lc_rs::rand::SystemRandom`, the same generator, and report failure through their own
//! `Result`.)
use zeroize::Zeroizing;

use crate::encoding::{b64url, is_b64url_byte};

/// Random ids carry 128 bits: unguessable, and collision-free without coordination between
/// nodes.
const RANDOM_ID_BYTES: usize = 16;

/// Length of those 128 bits in unpadded base64url.
const RANDOM_ID_CHARS: usize = 22;

/// Fills `buf` from aws-lc's generator (a DRBG seeded from the operating system).
///
/// This panics instead of returning a `Result`, for two reasons:
/// - The panic cannot fire with the aws-lc we build on (aws-lc-sys 0.47): `RAND_bytes` returns 1
///   unconditionally and calls `abort()` itself when it cannot get entropy, so aws-lc-rs never
///   sees an error to return.
/// - Were a later aws-lc to report the failure instead, stopping would still be the only right
///   answer. Without random bytes no id, secret, nonce or key can be made safely; no caller can
///   repair the system's generator; and no caller input can cause the failure. A `Result` would
///   carry an error nobody can handle through every infallible constructor the store and the
///   server call (`new_session_id`, `MasterKey::generate`, `generate_api_key`, ...).
#[allow(
    clippy::expect_used,
    reason = "aws-lc aborts before this can fail; see the doc comment"
)]
pub(crate) fn fill(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("system random number generator failed");
}

/// `N` random bytes in a buffer wiped on drop: most callers make a secret out of them.
pub(crate) fn bytes<const N: usize>() -> Zeroizing<[u8; N]> {
    let mut b = Zeroizing::new([0u8; N]);
    fill(b.as_mut());
    b
}

/// `prefix` followed by 128 random bits in base64url.
pub(crate) fn random_id(prefix: &str) -> String {
    // Not wiped: an id is not a secret (it is in listings, logs and claims).
    let mut bytes = [0u8; RANDOM_ID_BYTES];
    fill(&mut bytes);
    format!("{prefix}{}", b64url(&bytes))
}

/// Whether `id` is shaped like an id made by [`random_id`] with `prefix`. Cookies carry ids, so
/// their verification relies on this to keep ids free of the separators (`.`, NUL) that
/// structure the signed message.
pub(crate) fn is_random_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == RANDOM_ID_CHARS && rest.bytes().all(is_b64url_byte))
}

/// A new key id, for signing keys and session keys alike: a UUID v7 in hex, unique without
/// coordination, and ordered by creation time (to the millisecond, monotonic within a process),
/// so that "the newest key" has an answer even for keys created in the same second, whose
/// `created_at` (stored in whole seconds) ties. Hex rather than base64url because hex strings
/// sort like the bytes they encode. Its random bits come from `uuid`, not from `fill` above: a
/// kid is public, and needs to be unique and ordered rather than unguessable.
pub fn new_kid() -> String {
    format!("k_{}", uuid::Uuid::now_v7().simple())
}
