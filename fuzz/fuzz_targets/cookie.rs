//! Arbitrary strings as session and pre-login cookies, in either tenant, at times when the
//! retired key still verifies and when it no longer does. Never a panic; an accepted cookie names
//! an id of the right kind, which is the cookie's own third part; no cookie is both a session and
//! a pre-login cookie, or valid in both tenants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;
use veto_fuzz::{COOKIE_TENANTS, NOW, fixture};

fuzz_target!(|data: &[u8]| {
    let Ok(cookie) = std::str::from_utf8(data) else {
        return;
    };
    let ring = &fixture().sessions;
    // NOW: both keys verify; two hours later the retired one has stopped.
    for now in [NOW, NOW + 7_200] {
        let now = OffsetDateTime::from_unix_timestamp(now).unwrap();
        let mut accepted_in = 0;
        for tenant in COOKIE_TENANTS.into_iter().chain(["unknown-tenant", ""]) {
            let session = ring.verify(tenant, cookie, now);
            let prelogin = ring.verify_prelogin(tenant, cookie, now);
            assert!(
                !(session.is_ok() && prelogin.is_ok()),
                "{cookie:?} is both a session and a pre-login cookie"
            );
            for (got, prefix) in [(&session, "ses-"), (&prelogin, "pl-")] {
                if let Ok(id) = got {
                    assert!(id.starts_with(prefix), "{cookie:?} gave id {id:?}");
                    assert_eq!(cookie.split('.').nth(2), Some(id.as_str()));
                    let again = if prefix == "ses-" {
                        ring.verify(tenant, cookie, now)
                    } else {
                        ring.verify_prelogin(tenant, cookie, now)
                    };
                    assert_eq!(
                        got, &again,
                        "{cookie:?} verified differently the second time"
                    );
                    accepted_in += 1;
                }
            }
        }
        assert!(
            accepted_in <= 1,
            "{cookie:?} accepted in more than one tenant or domain"
        );
    }
});
