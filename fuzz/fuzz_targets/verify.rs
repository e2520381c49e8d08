//! Arbitrary bytes as a token, against a key ring holding a key of every alg veto supports (and
//! revoked and expired copies of them). The verifier must never panic, and what it accepts must
//! be accepted again identically: verification is a pure function of token, keys and `Expect`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veto_core::verify::{decode_unverified_claims, verify};
use veto_fuzz::{AUDIENCE, TENANT, expect, fixture};

fuzz_target!(|data: &[u8]| {
    // Tokens reach veto as text (a header, a JSON string, a form value); invalid UTF-8 is lost
    // before the verifier ever sees it.
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let f = fixture();
    let lookup = |kid: &str| f.keys.get(TENANT, kid);
    let _ = decode_unverified_claims(token);

    let any = verify(token, lookup, &expect(None));
    let for_api = verify(token, lookup, &expect(Some(AUDIENCE)));
    if let Ok(v) = &any {
        let again =
            verify(token, lookup, &expect(None)).expect("accepted once, refused the second time");
        assert_eq!(
            format!("{v:?}"),
            format!("{again:?}"),
            "the same token verified differently"
        );
        // Only a key that verifies at NOW, and only under its own alg.
        let key = f
            .keys
            .get(TENANT, &v.kid)
            .expect("accepted under a kid the ring does not hold");
        assert!(
            key.verifies_at(veto_fuzz::NOW),
            "accepted under key {}, which does not verify",
            v.kid
        );
        assert_eq!(key.alg, v.alg, "accepted under an alg other than the key's");
        assert!(!v.jti.is_empty());
        assert_eq!(v.iss, veto_fuzz::ISSUER);
    }
    // Naming an audience only ever narrows what is accepted.
    if for_api.is_ok() {
        assert!(any.is_ok(), "accepted for an audience, refused for none");
    }
});
