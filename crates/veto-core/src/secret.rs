//! Secrets that veto hands out once and then only recognises: API keys, CSRF tokens, pre-login
//! `state`. Only their SHA-256 is kept, and a presented value is checked by comparing hashes in
//! constant time. Also the `Debug` helper that keeps secrets and personal data out of logs.
//!
//! One module, so that every domain module checks and redacts secrets the same way, and none
//! has to import another domain module (API keys, sessions) to do it.
use aws_lc_rs::digest;
use subtle::ConstantTimeEq;

/// Longer presented secrets are refused before hashing: a CSRF token is 43 characters and a
/// pre-login `state` at most 512 bytes, and there is no reason to hash megabytes a client chose
/// to send.
const MAX_PRESENTED_SECRET_BYTES: usize = 512;

/// The SHA-256 of a secret. Unsalted and fast on purpose: the secrets whose hashes are stored
/// (API keys, CSRF tokens) are 256 random bits, which no guessing or precomputed table reaches,
/// and an unsalted hash can be looked up directly (an API key is found by its hash).
pub fn hash_secret(secret: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality of two stored hashes.
pub(crate) fn hashes_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `presented` is the secret whose hash is `stored`. Comparing hashes rather than the
/// texts means the time taken depends on neither side's content nor length.
pub(crate) fn secret_matches(presented: &str, stored: &[u8; 32]) -> bool {
    if presented.len() > MAX_PRESENTED_SECRET_BYTES {
        return false;
    }
    hashes_match(&hash_secret(presented), stored)
}

/// `Debug` printing only the listed fields, the rest shown as `..`. For every type that holds a
/// secret, key material or personal data: what may reach a log is an explicit allow-list, so a
/// field added later stays out of logs until someone decides otherwise.
///
/// - `debug_fields!(T { a, b })` prints `T { a: .., b: .., .. }`.
/// - `debug_fields!(T { a, n: len() })` prints the result of `self.len()` as `n`, for types whose
///   useful summary is computed (a key ring's size) rather than stored.
/// - `debug_fields!(T)` prints `T(..)`: nothing at all.
macro_rules! debug_fields {
    ($ty:ident $(<$lt:lifetime>)?) => {
        impl std::fmt::Debug for $ty $(<$lt>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($ty)).finish_non_exhaustive()
            }
        }
    };
    ($ty:ident $(<$lt:lifetime>)? { $($field:ident $(: $method:ident())?),* $(,)? }) => {
        impl std::fmt::Debug for $ty $(<$lt>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(
                        stringify!($field),
                        &$crate::secret::debug_fields!(@value self $field $($method)?),
                    ))*
                    .finish_non_exhaustive()
            }
        }
    };
    (@value $self:ident $field:ident) => {
        $self.$field
    };
    (@value $self:ident $field:ident $method:ident) => {
        $self.$method()
    };
}
pub(crate) use debug_fields;

#[cfg(test)]
mod tests {
    use super::*;

    struct Listed {
        public: u8,
        secret: &'static str,
    }

    impl Listed {
        fn size(&self) -> usize {
            self.secret.len()
        }
    }

    debug_fields!(Listed {
        public,
        len: size()
    });

    struct Hidden {
        #[allow(dead_code, reason = "only there to be kept out of Debug")]
        secret: &'static str,
    }

    debug_fields!(Hidden);

    #[test]
    fn debug_fields_prints_only_what_is_listed() {
        let listed = Listed {
            public: 7,
            secret: "hunter2",
        };
        assert_eq!(format!("{listed:?}"), "Listed { public: 7, len: 7, .. }");
        let hidden = Hidden { secret: "hunter2" };
        assert_eq!(format!("{hidden:?}"), "Hidden(..)");
    }

    #[test]
    fn secrets_match_only_themselves() {
        let stored = hash_secret("s3cret");
        assert!(secret_matches("s3cret", &stored));
        assert!(!secret_matches("s3cret ", &stored));
        assert!(!secret_matches("", &stored));
        let long = "x".repeat(MAX_PRESENTED_SECRET_BYTES + 1);
        assert!(!secret_matches(&long, &hash_secret(&long)));
    }
}
