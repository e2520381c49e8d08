//! What the fuzz targets share: a fixed key ring (token keys of every alg veto supports, session
//! keys of two tenants) and a way to drive veto-server's extractors without a server.
//!
//! The key material is fixed (`fuzz/keys/`, test keys that protect nothing) so that the seed
//! corpus, made once by `examples/seeds.rs`, holds tokens and cookies that really verify: the
//! fuzzer then starts from inputs that reach the claim checks and the MAC comparison rather than
//! having to find a valid signature by chance, which it never would.
use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use time::OffsetDateTime;
use veto_core::Alg;
use veto_core::cookie::{SessionKey, SessionKeyRecord, SessionKeyRing, SessionKeyStatus};
use veto_core::keyring::KeyRing;
use veto_core::keys::{KeyStatus, LoadedKey, MasterKey, SigningKeyRecord};
use veto_core::verify::Expect;

/// The tenant every token key belongs to, and the issuer its tokens must carry.
pub const TENANT: &str = "fuzz";
pub const ISSUER: &str = "https://veto.example/t/fuzz";
pub const AUDIENCE: &str = "api";
/// The fixed "now" of every check: seed tokens are valid at this instant forever.
pub const NOW: i64 = 1_800_000_000;

/// Session-cookie tenants: two, so that a cookie of one must never verify in the other.
pub const COOKIE_TENANTS: [&str; 2] = ["acme", "globex"];

/// The files under `fuzz/keys/` and the algs each one serves. HMAC secrets are raw bytes of the
/// length veto generates; the others PKCS#8 as `keys::generate_private` makes them.
pub const KEY_FILES: [(&str, &[Alg]); 7] = [
    ("hs256.bin", &[Alg::HS256]),
    ("hs384.bin", &[Alg::HS384]),
    ("hs512.bin", &[Alg::HS512]),
    (
        "rsa2048.pk8",
        &[Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256],
    ),
    ("p256.pk8", &[Alg::ES256]),
    ("p384.pk8", &[Alg::ES384]),
    ("ed25519.pk8", &[Alg::EdDSA]),
];

/// Session key secrets (32 bytes each), one per cookie tenant.
pub const SESSION_KEY_FILES: [&str; 2] = ["session-acme.bin", "session-globex.bin"];

pub fn keys_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

fn read_key(name: &str) -> Vec<u8> {
    let path = keys_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (make the keys with `cargo run --example seeds` in fuzz/)",
            path.display()
        )
    })
}

/// The kid of the key of `alg` that verifies; the revoked and the expired-retired ones are named
/// after it.
pub fn kid(alg: Alg) -> String {
    alg.as_str().to_ascii_lowercase()
}

pub struct Fixture {
    pub keys: KeyRing,
    pub sessions: SessionKeyRing,
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).expect("a valid instant")
}

fn token_key(
    master: &MasterKey,
    alg: Alg,
    kid: &str,
    private: &[u8],
    status: KeyStatus,
) -> LoadedKey {
    let rec = SigningKeyRecord {
        kid: kid.to_owned(),
        tenant: TENANT.to_owned(),
        alg,
        status,
        audience: None,
        created_at: at(NOW - 86_400),
        // Retired keys verify until their retention ends: this one ended an hour before NOW.
        retain_until: (status == KeyStatus::Retired).then(|| at(NOW - 3_600)),
        revoked_at: (status == KeyStatus::Revoked).then(|| at(NOW - 3_600)),
        revoke_reason: None,
        encrypted_private: master.seal(TENANT, kid, private).expect("seal"),
        public_jwk: None,
    };
    LoadedKey::load(&rec, master).unwrap_or_else(|e| panic!("load {kid}: {e}"))
}

/// Built once per process: RSA parsing is slow and the fuzzer calls the target millions of times.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let master = MasterKey::from_bytes([42; 32]);
        let keys = KeyRing::new();
        for (file, algs) in KEY_FILES {
            let private = read_key(file);
            for &alg in algs {
                let kid = kid(alg);
                keys.upsert(token_key(&master, alg, &kid, &private, KeyStatus::Active));
                // Same material under other kids: a token naming these must fail on key state,
                // never on the signature.
                keys.upsert(token_key(
                    &master,
                    alg,
                    &format!("{kid}-revoked"),
                    &private,
                    KeyStatus::Revoked,
                ));
                keys.upsert(token_key(
                    &master,
                    alg,
                    &format!("{kid}-retired"),
                    &private,
                    KeyStatus::Retired,
                ));
            }
        }
        let sessions = SessionKeyRing::new();
        for (tenant, file) in COOKIE_TENANTS.into_iter().zip(SESSION_KEY_FILES) {
            for (kid, status, retain_until) in [
                ("k_active", SessionKeyStatus::Active, None),
                // Retired, verifying until NOW + 1 h: cookies under it pass at NOW, fail later.
                (
                    "k_retired",
                    SessionKeyStatus::Retired,
                    Some(at(NOW + 3_600)),
                ),
            ] {
                // The associated data `SessionKeyRecord` documents: label NUL tenant NUL kid.
                let context = format!("veto-session-key-v1\0{tenant}\0{kid}");
                let rec = SessionKeyRecord {
                    tenant: tenant.to_owned(),
                    kid: kid.to_owned(),
                    status,
                    created_at: at(NOW - 86_400),
                    retain_until,
                    encrypted_secret: master
                        .seal_with_context(&context, &read_key(file))
                        .expect("seal"),
                };
                sessions.upsert(SessionKey::load(&rec, &master).expect("load session key"));
            }
        }
        Fixture { keys, sessions }
    })
}

/// What a resource server asks of an access token: veto's `at+jwt`, from our issuer, at NOW.
pub fn expect(audience: Option<&str>) -> Expect<'_> {
    Expect {
        issuer: ISSUER,
        audience,
        typ: "at+jwt",
        now: NOW,
        leeway: 60,
        check_time: true,
    }
}

/// Runs a future that must finish without waiting: veto-server's extractors over an in-memory
/// body never wait for anything, so `Pending` would itself be a bug worth a crash.
pub fn ready<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an extractor over an in-memory body did not finish at once"),
    }
}

/// A POST with `content_type` and `body`, as the extractors see it.
pub fn request(content_type: &str, body: &[u8]) -> axum::extract::Request {
    axum::http::Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", content_type)
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a valid request")
}

/// A refused request is the client's fault: a 4xx (400 naming the fix, 413), never a 5xx.
pub fn refused_with_4xx<T, E: axum::response::IntoResponse>(r: Result<T, E>) {
    if let Err(e) = r {
        let status = e.into_response().status();
        assert!(status.is_client_error(), "a bad body answered {status}");
    }
}
