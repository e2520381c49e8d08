//! Session validation in process: what `POST /sessions/validate` computes besides reading the
//! session row, i.e. the cookie's HMAC under the tenant's session key ring, then the session
//! rules (revoked, absolute and idle expiry, CSRF in constant time) and a sliding touch.
//!
//! Run: `cargo bench -p veto-core --bench sessions`
use std::sync::OnceLock;

use divan::{Bencher, black_box};
use time::OffsetDateTime;
use veto_core::cookie::{SessionKey, SessionKeyRecord, SessionKeyRing};
use veto_core::keys::MasterKey;
use veto_core::session::{NewSession, SessionPolicy, SessionRecord};

struct World {
    ring: SessionKeyRing,
    cookie: String,
    session: SessionRecord,
    csrf: String,
    now: OffsetDateTime,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let master = MasterKey::generate();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("in range");
        let ring = SessionKeyRing::new();
        let rec = SessionKeyRecord::generate("acme", &master, now).expect("session key");
        ring.upsert(SessionKey::load(&rec, &master).expect("load"));
        let (session, csrf) = SessionRecord::new(
            &NewSession {
                tenant: "acme",
                actor_id: "user-1",
                actor_type: "user",
                ip_address: Some("203.0.113.7"),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench"),
            },
            &SessionPolicy::default(),
            now,
        )
        .expect("session");
        let cookie = ring.sign("acme", &session.id).expect("sign");
        World {
            ring,
            cookie,
            session,
            csrf,
            now,
        }
    })
}

fn main() {
    world();
    divan::main();
}

/// The cookie alone: parse, find the key, HMAC-SHA256 in constant time.
#[divan::bench]
fn cookie_verify(b: Bencher) {
    let w = world();
    b.bench_local(|| black_box(w.ring.verify("acme", black_box(&w.cookie), w.now)));
}

/// Cookie, then the session rules with a CSRF token, then a touch (on a copy of the record).
#[divan::bench]
fn validate_with_csrf_and_touch(b: Bencher) {
    let w = world();
    let policy = SessionPolicy::default();
    b.bench_local(|| {
        let id = w.ring.verify("acme", black_box(&w.cookie), w.now);
        let mut s = w.session.clone();
        let ok = s.validate(w.now, Some(black_box(&w.csrf)));
        black_box((id, ok, s.touch(w.now, &policy)))
    });
}
