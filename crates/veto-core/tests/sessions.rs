//! Sessions, cookies, CSRF, pre-login state and refresh families, tested through the public API
//! as the store and HTTP layers will use them.
use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};
use veto_core::cookie::{
    DEFAULT_KEY_RETENTION, MAX_COOKIE_BYTES, SessionKey, SessionKeyRecord, SessionKeyRing,
    SessionKeyStatus,
};
use veto_core::keys::{KeyError, MasterKey};
use veto_core::prelogin::{
    ConsumeError, NewPreLogin, PRELOGIN_TTL, PreLoginError, PreLoginRecord, new_prelogin_id,
};
use veto_core::refresh::{
    REUSE_REASON, RefreshClaims, RefreshFamily, RotateDecision, TOKEN_USE_REFRESH, new_family_id,
    rotate,
};
use veto_core::session::{
    InputError, MAX_USER_AGENT_BYTES, NewSession, SessionPolicy, SessionReason, SessionRecord,
    TOUCH_COALESCE, csrf_matches, new_csrf_token, new_session_id,
};

const NOW: i64 = 1_800_000_000;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap()
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

fn input<'a>() -> NewSession<'a> {
    NewSession {
        tenant: "acme",
        actor_id: "user-1",
        actor_type: "user",
        ip_address: Some("203.0.113.7"),
        user_agent: Some("Mozilla/5.0"),
    }
}

fn session() -> (SessionRecord, String) {
    SessionRecord::new(&input(), &SessionPolicy::default(), at(NOW)).unwrap()
}

fn field(r: Result<impl std::fmt::Debug, InputError>) -> &'static str {
    r.unwrap_err().field
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A ring holding one freshly generated active key for each tenant given.
fn ring(tenants: &[&str]) -> (SessionKeyRing, MasterKey, Vec<SessionKeyRecord>) {
    let master = MasterKey::generate();
    let ring = SessionKeyRing::new();
    let mut recs = Vec::new();
    for t in tenants {
        let rec = SessionKeyRecord::generate(t, &master, at(NOW - 100)).unwrap();
        ring.upsert(SessionKey::load(&rec, &master).unwrap());
        recs.push(rec);
    }
    (ring, master, recs)
}

/// A ring with one key for `acme`, a fresh session id and its cookie.
fn signed() -> (SessionKeyRing, String, String) {
    let (ring, _, _) = ring(&["acme"]);
    let id = new_session_id();
    let cookie = ring.sign("acme", &id).unwrap();
    (ring, id, cookie)
}

// ---------------------------------------------------------------------------------------------
// Session records.
// ---------------------------------------------------------------------------------------------

#[test]
fn session_ids_are_prefixed_128_bit_base64url() {
    let ids: HashSet<String> = (0..1000).map(|_| new_session_id()).collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        let rest = id.strip_prefix("ses-").unwrap();
        assert_eq!(rest.len(), 22, "{id}");
        assert!(is_b64url(rest), "{id}");
    }
}

#[test]
fn new_session_computes_expiries_and_a_csrf_token() {
    let (s, csrf) = session();
    assert!(s.id.starts_with("ses-"));
    assert_eq!(s.created_at, at(NOW));
    assert_eq!(s.last_seen_at, at(NOW));
    assert_eq!(s.idle_expires_at, at(NOW + 3600));
    assert_eq!(s.absolute_expires_at, at(NOW + 8 * 3600));
    assert_eq!(s.revoked_at, None);
    assert!(csrf_matches(&csrf, &s.csrf_hash));
    assert_eq!(csrf.len(), 43);

    let p = SessionPolicy::from_seconds(Some(600), Some(1200)).unwrap();
    let (s, _) = SessionRecord::new(&input(), &p, at(NOW)).unwrap();
    assert_eq!(s.idle_expires_at, at(NOW + 600));
    assert_eq!(s.absolute_expires_at, at(NOW + 1200));
}

#[test]
fn session_json_matches_the_contract_and_hides_the_csrf_hash() {
    let (mut s, _) = session();
    let v = serde_json::to_value(&s).unwrap();
    let keys: HashSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: HashSet<&str> = [
        "id",
        "tenant",
        "actor_id",
        "actor_type",
        "created_at",
        "last_seen_at",
        "idle_expires_at",
        "absolute_expires_at",
        "ip_address",
        "user_agent",
        "revoked_at",
        "revoke_reason",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);
    assert_eq!(v["created_at"], json!("2027-01-15T08:00:00Z"));
    assert_eq!(v["idle_expires_at"], json!("2027-01-15T09:00:00Z"));
    assert_eq!(v["revoked_at"], Value::Null);
    assert_eq!(v["ip_address"], json!("203.0.113.7"));

    s.revoke(at(NOW + 5), Some("admin")).unwrap();
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["revoked_at"], json!("2027-01-15T08:00:05Z"));
    assert_eq!(v["revoke_reason"], json!("admin"));
}

#[test]
fn session_debug_redacts_secrets_and_personal_data() {
    let (s, csrf) = session();
    let dbg = format!("{s:?}");
    assert!(dbg.contains(&s.id));
    assert!(!dbg.contains("203.0.113.7"));
    assert!(!dbg.contains("Mozilla"));
    assert!(!dbg.contains("csrf"));
    assert!(!dbg.contains(&csrf));
}

#[test]
fn actor_fields_are_validated_and_named() {
    let long = "a".repeat(257);
    let max = "é".repeat(128); // 256 bytes
    let ok = |i: NewSession<'_>| {
        SessionRecord::new(&i, &SessionPolicy::default(), at(NOW))
            .map(|_| ())
            .map_err(|e| e.field)
    };
    assert_eq!(
        ok(NewSession {
            actor_id: &long,
            ..input()
        }),
        Err("actor_id")
    );
    assert_eq!(
        ok(NewSession {
            actor_id: "",
            ..input()
        }),
        Err("actor_id")
    );
    assert_eq!(
        ok(NewSession {
            actor_id: "a\nb",
            ..input()
        }),
        Err("actor_id")
    );
    assert_eq!(
        ok(NewSession {
            actor_id: "a\u{7f}",
            ..input()
        }),
        Err("actor_id")
    );
    assert_eq!(
        ok(NewSession {
            actor_id: &max,
            ..input()
        }),
        Ok(())
    );
    assert_eq!(
        ok(NewSession {
            actor_type: &long,
            ..input()
        }),
        Err("actor_type")
    );
    assert_eq!(
        ok(NewSession {
            actor_type: "x\0",
            ..input()
        }),
        Err("actor_type")
    );
    assert_eq!(
        ok(NewSession {
            tenant: "Acme",
            ..input()
        }),
        Err("tenant")
    );
    assert_eq!(
        ok(NewSession {
            ip_address: Some("not-an-ip"),
            ..input()
        }),
        Err("ip_address")
    );
    assert_eq!(
        ok(NewSession {
            ip_address: None,
            ..input()
        }),
        Ok(())
    );
    assert_eq!(
        ok(NewSession {
            user_agent: Some("\u{0}\u{1b}[31m"),
            ..input()
        }),
        Ok(())
    );
}

#[test]
fn ip_addresses_are_stored_canonically_and_user_agents_sanitised() {
    let mut i = input();
    i.ip_address = Some("2001:DB8:0:0::0001");
    i.user_agent = Some("bad\r\nX-Injected: 1");
    let (s, _) = SessionRecord::new(&i, &SessionPolicy::default(), at(NOW)).unwrap();
    assert_eq!(s.ip_address.as_deref(), Some("2001:db8::1"));
    assert_eq!(s.user_agent.as_deref(), Some("bad  X-Injected: 1"));

    // Cut at a character boundary, never in the middle of one.
    let ua = "ü".repeat(MAX_USER_AGENT_BYTES);
    i.user_agent = Some(&ua);
    let (s, _) = SessionRecord::new(&i, &SessionPolicy::default(), at(NOW)).unwrap();
    let stored = s.user_agent.unwrap();
    assert_eq!(stored.len(), MAX_USER_AGENT_BYTES);
    assert!(stored.chars().all(|c| c == 'ü'));
}

#[test]
fn policy_bounds_name_the_offending_field() {
    assert_eq!(SessionPolicy::default().idle(), Duration::hours(1));
    assert_eq!(SessionPolicy::default().absolute(), Duration::hours(8));
    assert_eq!(
        SessionPolicy::from_seconds(None, None).unwrap(),
        SessionPolicy::default()
    );
    let f = |i, a| field(SessionPolicy::from_seconds(i, a));
    assert_eq!(f(Some(59), None), "idle_timeout_seconds");
    assert_eq!(f(Some(-1), None), "idle_timeout_seconds");
    assert_eq!(f(Some(i64::MIN), None), "idle_timeout_seconds");
    assert_eq!(f(Some(120), Some(119)), "absolute_timeout_seconds");
    assert_eq!(f(None, Some(30 * 86400 + 1)), "absolute_timeout_seconds");
    assert_eq!(f(None, Some(i64::MAX)), "absolute_timeout_seconds");
    // Idle above the default absolute timeout needs an explicit absolute one.
    assert_eq!(f(Some(9 * 3600), None), "absolute_timeout_seconds");
    assert!(SessionPolicy::from_seconds(Some(60), Some(60)).is_ok());
    assert!(SessionPolicy::from_seconds(Some(9 * 3600), Some(30 * 86400)).is_ok());
    assert!(SessionPolicy::new(secs(60), Duration::days(30)).is_ok());
}

#[test]
fn expiry_boundaries_are_exclusive() {
    let (s, _) = session();
    assert_eq!(s.check(at(NOW)), Ok(()));
    assert_eq!(s.check(at(NOW + 3599)), Ok(()));
    assert_eq!(s.check(at(NOW + 3600)), Err(SessionReason::IdleExpired));

    // Keep it alive by touching until only the absolute bound remains.
    let mut s = s;
    let p = SessionPolicy::default();
    let mut t = NOW;
    while t < NOW + 8 * 3600 - 1 {
        t += 1800;
        s.touch(at(t.min(NOW + 8 * 3600 - 1)), &p);
    }
    assert_eq!(s.idle_expires_at, s.absolute_expires_at);
    assert_eq!(s.check(at(NOW + 8 * 3600 - 1)), Ok(()));
    assert_eq!(
        s.check(at(NOW + 8 * 3600)),
        Err(SessionReason::AbsoluteExpired)
    );
}

#[test]
fn absolute_expiry_wins_and_revocation_wins_over_both() {
    let (mut s, _) = session();
    // Both passed.
    let late = at(NOW + 9 * 3600);
    assert!(late >= s.idle_expires_at && late >= s.absolute_expires_at);
    assert_eq!(s.check(late), Err(SessionReason::AbsoluteExpired));
    // Both at exactly the same instant.
    s.idle_expires_at = s.absolute_expires_at;
    assert_eq!(
        s.check(s.absolute_expires_at),
        Err(SessionReason::AbsoluteExpired)
    );
    s.revoke(at(NOW + 1), None).unwrap();
    assert_eq!(s.check(at(NOW + 2)), Err(SessionReason::Revoked));
    assert_eq!(s.check(late), Err(SessionReason::Revoked));
}

#[test]
fn first_revocation_stands() {
    let (mut s, _) = session();
    assert_eq!(s.revoke(at(NOW + 1), Some("logout")), Ok(true));
    assert_eq!(s.revoke(at(NOW + 2), Some("admin")), Ok(false));
    assert_eq!(s.revoked_at, Some(at(NOW + 1)));
    assert_eq!(s.revoke_reason.as_deref(), Some("logout"));
    let (mut s, _) = session();
    assert_eq!(s.revoke(at(NOW), Some("a\nb")).unwrap_err().field, "reason");
    assert_eq!(s.revoked_at, None);
}

#[test]
fn touch_slides_the_idle_expiry_but_never_past_the_absolute_one() {
    let (mut s, _) = session();
    let p = SessionPolicy::default();
    assert!(s.touch(at(NOW + 600), &p));
    assert_eq!(s.last_seen_at, at(NOW + 600));
    assert_eq!(s.idle_expires_at, at(NOW + 600 + 3600));
    // Late in the session, the absolute expiry caps it.
    s.idle_expires_at = at(NOW + 7 * 3600 + 1800);
    assert!(s.touch(at(NOW + 7 * 3600 + 1000), &p));
    assert_eq!(s.idle_expires_at, s.absolute_expires_at);
    // A longer policy than the session's own still cannot pass the absolute expiry.
    let long = SessionPolicy::new(Duration::days(2), Duration::days(3)).unwrap();
    s.touch(at(NOW + 7 * 3600 + 1100), &long);
    assert_eq!(s.idle_expires_at, s.absolute_expires_at);
}

#[test]
fn touch_never_revives_and_never_goes_backwards() {
    let p = SessionPolicy::default();
    let (mut s, _) = session();
    let before = s.clone();
    // At the idle expiry instant the session is dead: touching must not bring it back.
    assert!(!s.touch(at(NOW + 3600), &p));
    assert_eq!(s, before);
    assert_eq!(s.check(at(NOW + 3600)), Err(SessionReason::IdleExpired));

    let (mut s, _) = session();
    s.touch(at(NOW + 1000), &p);
    let snapshot = s.clone();
    // A node whose clock lags: nothing moves backwards.
    assert!(!s.touch(at(NOW + 500), &p));
    assert_eq!(s, snapshot);

    let (mut s, _) = session();
    s.revoke(at(NOW + 1), None).unwrap();
    let snapshot = s.clone();
    assert!(!s.touch(at(NOW + 2), &p));
    assert_eq!(s, snapshot);
}

#[test]
fn write_back_is_coalesced_to_once_a_minute() {
    assert_eq!(TOUCH_COALESCE, secs(60));
    let (mut s, _) = session();
    let persisted = s.last_seen_at;
    let p = SessionPolicy::default();
    s.touch(at(NOW + 59), &p);
    assert!(!s.needs_write_back(persisted, at(NOW + 59)));
    s.touch(at(NOW + 60), &p);
    assert!(s.needs_write_back(persisted, at(NOW + 60)));
    // A clock behind the stored one never asks for a write.
    assert!(!s.needs_write_back(at(NOW + 600), at(NOW + 60)));
    // Nor does a session that is no longer valid.
    assert!(!s.needs_write_back(persisted, at(NOW + 60 + 3600)));
    s.revoke(at(NOW + 61), None).unwrap();
    assert!(!s.needs_write_back(persisted, at(NOW + 120)));
}

#[test]
fn csrf_tokens_match_only_themselves() {
    let (secret, hash) = new_csrf_token();
    let (other, other_hash) = new_csrf_token();
    assert_ne!(secret, other);
    assert_ne!(hash, other_hash);
    assert_eq!(secret.len(), 43);
    assert!(is_b64url(&secret));
    assert!(csrf_matches(&secret, &hash));
    assert!(!csrf_matches(&other, &hash));
    assert!(!csrf_matches("", &hash));
    assert!(!csrf_matches(&secret[..42], &hash));
    assert!(!csrf_matches(&format!("{secret} "), &hash));
    assert!(!csrf_matches(&"a".repeat(100_000), &hash));
    // Not the hash itself, nor its encoding: only the secret.
    assert!(!csrf_matches(&hex::encode(hash), &hash));
}

#[test]
fn validation_checks_the_session_before_the_csrf_token() {
    let (mut s, csrf) = session();
    let now = at(NOW + 1);
    assert_eq!(s.validate(now, None), Ok(()));
    assert_eq!(s.validate(now, Some(&csrf)), Ok(()));
    assert_eq!(
        s.validate(now, Some("wrong")),
        Err(SessionReason::CsrfMismatch)
    );
    assert_eq!(s.validate(now, Some("")), Err(SessionReason::CsrfMismatch));
    s.revoke(now, None).unwrap();
    assert_eq!(s.validate(now, Some("wrong")), Err(SessionReason::Revoked));
}

#[test]
fn session_reasons_serialise_to_the_contract_strings() {
    let strings: Vec<Value> = SessionReason::ALL
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect();
    assert_eq!(
        Value::from(strings),
        json!([
            "malformed",
            "bad_signature",
            "unknown_key",
            "revoked",
            "idle_expired",
            "absolute_expired",
            "csrf_mismatch"
        ])
    );
    assert_eq!(SessionReason::IdleExpired.to_string(), "idle_expired");
}

/// Each reason, produced by the API rather than constructed.
#[test]
fn every_session_reason_is_reachable() {
    let (ring, _, _) = ring(&["acme"]);
    let (s, csrf) = session();
    let cookie = ring.sign("acme", &s.id).unwrap();
    let now = at(NOW + 1);
    let mut seen = HashSet::new();
    let mut record = |r: Result<String, SessionReason>| {
        if let Err(e) = r {
            seen.insert(e);
        }
    };
    record(ring.verify("acme", "garbage", now));
    record(ring.verify("acme", &cookie.replace("v1.", "v1.k_other."), now));
    let parts: Vec<&str> = cookie.split('.').collect();
    record(ring.verify("acme", &format!("v1.k_nope.{}.{}", parts[2], parts[3]), now));
    record(ring.verify("acme", &cookie[..cookie.len() - 1], now));
    let mut seen: HashSet<SessionReason> = seen;
    let checks = [
        s.check(at(NOW + 3600)),
        s.check(at(NOW + 8 * 3600)),
        s.validate(now, Some(&format!("{csrf}x"))),
        {
            let mut r = s.clone();
            r.revoke(now, None).unwrap();
            r.check(now)
        },
    ];
    seen.extend(checks.into_iter().filter_map(Result::err));
    assert_eq!(seen, SessionReason::ALL.into_iter().collect());
}

proptest! {
    /// Whatever the sequence of touches, at whatever times (including backwards: nodes' clocks
    /// differ), the idle expiry never passes the absolute one and nothing moves backwards. With
    /// time moving forwards, a session once expired stays expired. (With clocks out of step it
    /// need not: a lagging node may touch a session another node already saw expire, but never
    /// beyond that node's idle window nor past the absolute expiry.)
    #[test]
    fn touch_invariants(
        idle in 60i64..7200,
        extra in 0i64..20_000,
        mut steps in proptest::collection::vec(-3000i64..40_000, 0..40),
        monotone in any::<bool>(),
    ) {
        if monotone {
            steps.sort_unstable();
        }
        let p = SessionPolicy::new(secs(idle), secs(idle + extra)).unwrap();
        let (mut s, _) = SessionRecord::new(&input(), &p, at(NOW)).unwrap();
        let mut dead_since: Option<OffsetDateTime> = None;
        for off in steps {
            let now = at(NOW + off);
            let before = s.clone();
            let alive = s.check(now).is_ok();
            let changed = s.touch(now, &p);
            prop_assert!(s.idle_expires_at <= s.absolute_expires_at);
            prop_assert!(s.idle_expires_at >= before.idle_expires_at);
            prop_assert!(s.last_seen_at >= before.last_seen_at);
            prop_assert_eq!(changed, s != before);
            if !alive {
                prop_assert_eq!(&s, &before);
                dead_since = dead_since.or(Some(now));
            } else {
                prop_assert!(s.idle_expires_at >= now.min(s.absolute_expires_at));
            }
            if monotone && let Some(d) = dead_since {
                prop_assert!(s.check(now).is_err() && s.check(d).is_err());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cookies and session keys.
// ---------------------------------------------------------------------------------------------

#[test]
fn cookies_round_trip_and_have_the_contract_shape() {
    let (ring, _, recs) = ring(&["acme"]);
    let id = new_session_id();
    let cookie = ring.sign("acme", &id).unwrap();
    let parts: Vec<&str> = cookie.split('.').collect();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[0], "v1");
    assert_eq!(parts[1], recs[0].kid);
    assert_eq!(parts[2], id);
    assert_eq!(parts[3].len(), 43);
    assert_eq!(ring.verify("acme", &cookie, at(NOW)), Ok(id));
    assert!(cookie.len() < 128);
}

#[test]
fn signing_refuses_what_it_cannot_make_verifiable() {
    let (ring, _, _) = ring(&["acme"]);
    assert_eq!(ring.sign("globex", &new_session_id()), None);
    assert_eq!(ring.sign("acme", "ses-short"), None);
    assert_eq!(ring.sign("acme", "not-a-session"), None);
    assert_eq!(ring.sign("acme", &new_prelogin_id()), None);
    assert_eq!(ring.sign_prelogin("acme", &new_session_id()), None);
    let with_dot = format!("{}.", &new_session_id()[..25]);
    assert_eq!(ring.sign("acme", &with_dot), None);
}

#[test]
fn malformed_cookies() {
    let (ring, id, cookie) = signed();
    let parts: Vec<&str> = cookie.split('.').collect();
    let (kid, sig) = (parts[1], parts[3]);
    let long = format!("{cookie}{}", "A".repeat(MAX_COOKIE_BYTES));
    let cases = [
        String::new(),
        ".".into(),
        "...".into(),
        "....".into(),
        format!("v1.{kid}.{id}"),
        format!("v1.{kid}.{id}."),
        format!("v1.{kid}.{id}.{sig}."),
        format!("v2.{kid}.{id}.{sig}"),
        format!("V1.{kid}.{id}.{sig}"),
        format!("v1..{id}.{sig}"),
        format!("v1.{kid}..{sig}"),
        format!("v1.{kid}.{id}.{sig}="),
        format!("v1.{kid}.{id}.{}+", &sig[..42]),
        format!("v1.{kid}.{id}.{}/", &sig[..42]),
        format!("v1.{kid}.{id}\0.{sig}"),
        format!("v1.{kid}.ses-{}.{sig}", "A".repeat(21)),
        format!("v1.{kid}.sess{}.{sig}", &id[4..]),
        format!(" {cookie}"),
        format!("{cookie} "),
        long,
    ];
    for c in &cases {
        assert_eq!(
            ring.verify("acme", c, at(NOW)),
            Err(SessionReason::Malformed),
            "{c:?}"
        );
    }
}

#[test]
fn tampered_and_truncated_signatures_are_bad_signatures() {
    let (ring, id, cookie) = signed();
    let sig_start = cookie.rfind('.').unwrap() + 1;
    // Every truncation that leaves some signature.
    for cut in 1..(cookie.len() - sig_start) {
        let c = &cookie[..cookie.len() - cut];
        assert_eq!(
            ring.verify("acme", c, at(NOW)),
            Err(SessionReason::BadSignature),
            "cut {cut}"
        );
    }
    // A different, well-formed session id under the original signature.
    let other = new_session_id();
    let swapped = cookie.replace(&id, &other);
    assert_eq!(
        ring.verify("acme", &swapped, at(NOW)),
        Err(SessionReason::BadSignature)
    );
    // An extended signature.
    assert_eq!(
        ring.verify("acme", &format!("{cookie}AA"), at(NOW)),
        Err(SessionReason::BadSignature)
    );
}

/// Exhaustively, every position of a cookie replaced by every other character of its alphabet:
/// the base64 of the signature has exactly one valid spelling, so not even its last character's
/// spare bits can change.
#[test]
fn every_in_alphabet_substitution_is_rejected() {
    let (ring, _, cookie) = signed();
    for (i, original) in cookie.char_indices() {
        for c in COOKIE_ALPHABET.chars().filter(|c| *c != original) {
            let changed = format!("{}{c}{}", &cookie[..i], &cookie[i + 1..]);
            assert!(ring.verify("acme", &changed, at(NOW)).is_err(), "{changed}");
        }
    }
}

#[test]
fn foreign_tenant_cookies_are_rejected() {
    let (ring, _, _) = ring(&["acme", "globex"]);
    let id = new_session_id();
    let cookie = ring.sign("acme", &id).unwrap();
    // The kid is acme's: globex has no such key.
    assert_eq!(
        ring.verify("globex", &cookie, at(NOW)),
        Err(SessionReason::UnknownKey)
    );
    assert_eq!(
        ring.verify("nobody", &cookie, at(NOW)),
        Err(SessionReason::UnknownKey)
    );
    // (That the tenant inside the MAC rejects it even under a shared kid and secret is a unit
    // test in cookie.rs, the only place such a ring can be built.)
}

#[test]
fn session_and_prelogin_cookies_never_pass_for_each_other() {
    let (ring, _, _) = ring(&["acme"]);
    let sid = new_session_id();
    let pid = new_prelogin_id();
    let sc = ring.sign("acme", &sid).unwrap();
    let pc = ring.sign_prelogin("acme", &pid).unwrap();
    assert_eq!(ring.verify_prelogin("acme", &pc, at(NOW)), Ok(pid.clone()));
    assert!(ring.verify_prelogin("acme", &sc, at(NOW)).is_err());
    assert!(ring.verify("acme", &pc, at(NOW)).is_err());
    // With the id prefixes swapped so that the shape checks pass, the MAC domain still differs.
    let forged = sc.replacen("ses-", "pl-", 1);
    assert_eq!(
        ring.verify_prelogin("acme", &forged, at(NOW)),
        Err(SessionReason::BadSignature)
    );
    let forged = pc.replacen("pl-", "ses-", 1);
    assert_eq!(
        ring.verify("acme", &forged, at(NOW)),
        Err(SessionReason::BadSignature)
    );
}

#[test]
fn rotation_keeps_retired_keys_verifying_within_retention_only() {
    let (ring, master, mut recs) = ring(&["acme"]);
    let id = new_session_id();
    let old_cookie = ring.sign("acme", &id).unwrap();

    // Rotate: new active key, the old one retired for 24 h.
    let rotated_at = at(NOW);
    let new = SessionKeyRecord::generate("acme", &master, rotated_at).unwrap();
    let mut old = recs.remove(0);
    old.retire(rotated_at, DEFAULT_KEY_RETENTION);
    assert_eq!(old.status, SessionKeyStatus::Retired);
    assert_eq!(old.retain_until, Some(at(NOW + 86_400)));
    ring.upsert(SessionKey::load(&new, &master).unwrap());
    ring.upsert(SessionKey::load(&old, &master).unwrap());
    assert_eq!(ring.len(), 2);

    let new_cookie = ring.sign("acme", &id).unwrap();
    assert!(new_cookie.contains(&new.kid));
    assert_eq!(
        ring.verify("acme", &new_cookie, at(NOW + 86_400)),
        Ok(id.clone())
    );
    assert_eq!(
        ring.verify("acme", &old_cookie, at(NOW + 1)),
        Ok(id.clone())
    );
    assert_eq!(
        ring.verify("acme", &old_cookie, at(NOW + 86_399)),
        Ok(id.clone())
    );
    assert_eq!(
        ring.verify("acme", &old_cookie, at(NOW + 86_400)),
        Err(SessionReason::UnknownKey)
    );
    assert!(old.verifies_at(at(NOW + 86_399)));
    assert!(!old.verifies_at(at(NOW + 86_400)));

    // Retiring again does not stretch the window.
    old.retire(at(NOW + 1000), DEFAULT_KEY_RETENTION);
    assert_eq!(old.retain_until, Some(at(NOW + 86_400)));

    // A tenant with only retired keys verifies but does not sign.
    ring.remove("acme", &new.kid);
    assert_eq!(ring.sign("acme", &id), None);
    assert_eq!(
        ring.verify("acme", &old_cookie, at(NOW + 1)),
        Ok(id.clone())
    );
    ring.remove("acme", &old.kid);
    assert!(ring.is_empty());
    assert_eq!(
        ring.verify("acme", &old_cookie, at(NOW + 1)),
        Err(SessionReason::UnknownKey)
    );
}

#[test]
fn the_newest_active_key_signs() {
    let master = MasterKey::generate();
    let ring = SessionKeyRing::new();
    // Same created_at second: the kid (UUID v7) orders them, and insertion order must not matter.
    let a = SessionKeyRecord::generate("acme", &master, at(NOW)).unwrap();
    let b = SessionKeyRecord::generate("acme", &master, at(NOW)).unwrap();
    let c = SessionKeyRecord::generate("acme", &master, at(NOW - 10)).unwrap();
    for r in [&b, &a, &c] {
        ring.upsert(SessionKey::load(r, &master).unwrap());
    }
    let cookie = ring.sign("acme", &new_session_id()).unwrap();
    assert!(cookie.contains(&b.kid), "{cookie} vs {}", b.kid);
    // Upserting a changed key replaces it rather than adding a second copy.
    let mut b2 = b.clone();
    b2.retire(at(NOW), DEFAULT_KEY_RETENTION);
    ring.upsert(SessionKey::load(&b2, &master).unwrap());
    assert_eq!(ring.len(), 3);
    assert!(
        ring.sign("acme", &new_session_id())
            .unwrap()
            .contains(&a.kid)
    );
}

#[test]
fn session_key_material_is_bound_to_tenant_kid_and_purpose() {
    let master = MasterKey::generate();
    let rec = SessionKeyRecord::generate("acme", &master, at(NOW)).unwrap();
    assert!(SessionKey::load(&rec, &master).is_ok());
    let decrypt = |r: &SessionKeyRecord, m: &MasterKey| {
        matches!(SessionKey::load(r, m), Err(KeyError::Decrypt))
    };
    assert!(decrypt(&rec, &MasterKey::generate()));
    let mut moved = rec.clone();
    moved.tenant = "globex".into();
    assert!(decrypt(&moved, &master));
    let mut renamed = rec.clone();
    renamed.kid = "k_other".into();
    assert!(decrypt(&renamed, &master));
    let mut flipped = rec.clone();
    flipped.encrypted_secret[20] ^= 1;
    assert!(decrypt(&flipped, &master));
    let mut short = rec.clone();
    short.encrypted_secret.truncate(10);
    assert!(decrypt(&short, &master));
    // Not a signing key: the signing keys' associated data does not open it.
    assert!(
        master
            .open(&rec.tenant, &rec.kid, &rec.encrypted_secret)
            .is_err()
    );
    // A kid that could not appear in a cookie is refused at load time.
    let mut dotted = rec.clone();
    dotted.kid = "k.1".into();
    assert!(SessionKey::load(&dotted, &master).is_err());
}

#[test]
fn session_key_debug_never_shows_material() {
    let master = MasterKey::generate();
    let rec = SessionKeyRecord::generate("acme", &master, at(NOW)).unwrap();
    let dbg = format!("{rec:?}");
    assert!(dbg.contains(&rec.kid));
    assert!(!dbg.contains("encrypted"));
    assert!(!dbg.contains(&format!("{:?}", &rec.encrypted_secret[..4])));
    let key = SessionKey::load(&rec, &master).unwrap();
    assert_eq!(key.kid(), rec.kid);
    assert_eq!(key.tenant(), "acme");
    assert_eq!(key.status(), SessionKeyStatus::Active);
    let dbg = format!("{key:?}");
    assert!(dbg.contains(&rec.kid) && !dbg.contains("key:"));
    assert_eq!(
        SessionKeyStatus::parse("retired"),
        Some(SessionKeyStatus::Retired)
    );
    assert_eq!(SessionKeyStatus::Active.as_str(), "active");
    assert_eq!(SessionKeyStatus::parse("revoked"), None);
}

const COOKIE_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

fn cookie_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[v1.A-Za-z0-9_=+/\\-\\x00]{0,200}",
        "v1\\.k_[0-9a-f]{32}\\.(ses|pl)-[A-Za-z0-9_-]{20,24}\\.[A-Za-z0-9_-]{0,50}",
        ".{500,600}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No input makes verification panic, and none is accepted.
    #[test]
    fn arbitrary_cookies_never_panic(c in cookie_like(), tenant in ".{0,20}") {
        let (ring, _, _) = ring(&["acme"]);
        prop_assert!(ring.verify("acme", &c, at(NOW)).is_err());
        prop_assert!(ring.verify_prelogin("acme", &c, at(NOW)).is_err());
        prop_assert!(ring.verify(&tenant, &c, at(NOW)).is_err());
        let _ = ring.sign(&tenant, &c);
    }

    #[test]
    fn sign_verify_round_trips(tenant in "[a-z0-9][a-z0-9-]{0,62}", prelogin in any::<bool>()) {
        let (ring, _, _) = ring(&[&tenant]);
        if prelogin {
            let id = new_prelogin_id();
            let c = ring.sign_prelogin(&tenant, &id).unwrap();
            prop_assert_eq!(ring.verify_prelogin(&tenant, &c, at(NOW)), Ok(id));
        } else {
            let id = new_session_id();
            let c = ring.sign(&tenant, &id).unwrap();
            prop_assert_eq!(ring.verify(&tenant, &c, at(NOW)), Ok(id));
        }
    }

    /// Replacing any one byte of a valid cookie with any other character is rejected; half the
    /// replacements come from the cookie's own alphabet, where a change is hardest to spot.
    #[test]
    fn any_single_byte_change_is_rejected(
        pos in any::<prop::sample::Index>(),
        with in prop_oneof![any::<char>(), prop::sample::select(COOKIE_ALPHABET.chars().collect::<Vec<_>>())],
    ) {
        let (ring, _, cookie) = signed();
        let i = pos.index(cookie.len());
        let mut changed = String::with_capacity(cookie.len() + 4);
        changed.push_str(&cookie[..i]);
        changed.push(with);
        changed.push_str(&cookie[i + 1..]);
        prop_assume!(changed != cookie);
        prop_assert!(ring.verify("acme", &changed, at(NOW)).is_err(), "{changed}");
    }
}

// ---------------------------------------------------------------------------------------------
// Pre-login state.
// ---------------------------------------------------------------------------------------------

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn prelogin_input<'a>() -> NewPreLogin<'a> {
    NewPreLogin {
        state: "af0ifjsldkj",
        nonce: "n-0S6_WzA2Mj",
        pkce_verifier: VERIFIER,
        redirect_uri: Some("https://app.example/callback?x=1"),
    }
}

fn prelogin(master: &MasterKey) -> PreLoginRecord {
    PreLoginRecord::new("acme", &prelogin_input(), master, at(NOW)).unwrap()
}

#[test]
fn prelogin_records_consume_once_with_the_right_state() {
    let master = MasterKey::generate();
    let rec = prelogin(&master);
    assert!(rec.id.starts_with("pl-"));
    assert_eq!(rec.expires_at, at(NOW) + PRELOGIN_TTL);
    assert_eq!(PRELOGIN_TTL, Duration::minutes(10));
    assert!(
        !rec.encrypted_pkce_verifier
            .windows(10)
            .any(|w| w == &VERIFIER.as_bytes()[..10])
    );

    let out = rec
        .clone()
        .consume("af0ifjsldkj", &master, at(NOW + 599))
        .unwrap();
    assert_eq!(out.state, "af0ifjsldkj");
    assert_eq!(out.nonce, "n-0S6_WzA2Mj");
    assert_eq!(out.pkce_verifier.as_str(), VERIFIER);
    assert_eq!(
        out.redirect_uri.as_deref(),
        Some("https://app.example/callback?x=1")
    );
    assert!(!format!("{out:?}").contains(VERIFIER));
    assert!(!format!("{rec:?}").contains("af0ifjsldkj"));

    for wrong in ["", "af0ifjsldk", "af0ifjsldkjj", "AF0IFJSLDKJ"] {
        assert!(matches!(
            rec.clone().consume(wrong, &master, at(NOW + 1)),
            Err(ConsumeError::WrongState)
        ));
    }
    assert!(matches!(
        rec.clone().consume("af0ifjsldkj", &master, at(NOW + 600)),
        Err(ConsumeError::Expired)
    ));
    // Expired wins over a wrong state: the record is gone either way (410).
    assert!(matches!(
        rec.consume("nope", &master, at(NOW + 600)),
        Err(ConsumeError::Expired)
    ));
}

#[test]
fn a_sealed_verifier_opens_only_for_its_own_record() {
    let master = MasterKey::generate();
    let a = prelogin(&master);
    let b = prelogin(&master);
    assert_ne!(a.id, b.id);
    let mut swapped = b.clone();
    swapped.encrypted_pkce_verifier = a.encrypted_pkce_verifier.clone();
    assert!(matches!(
        swapped.consume("af0ifjsldkj", &master, at(NOW + 1)),
        Err(ConsumeError::Sealed(KeyError::Decrypt))
    ));
    let mut moved = a.clone();
    moved.tenant = "globex".into();
    assert!(matches!(
        moved.consume("af0ifjsldkj", &master, at(NOW + 1)),
        Err(ConsumeError::Sealed(_))
    ));
    assert!(matches!(
        a.consume("af0ifjsldkj", &MasterKey::generate(), at(NOW + 1)),
        Err(ConsumeError::Sealed(_))
    ));
}

#[test]
fn prelogin_input_is_validated_and_named() {
    let master = MasterKey::generate();
    let check = |i: NewPreLogin<'_>| -> Result<(), &'static str> {
        match PreLoginRecord::new("acme", &i, &master, at(NOW)) {
            Ok(_) => Ok(()),
            Err(PreLoginError::Input(e)) => Err(e.field),
            Err(e) => panic!("{e}"),
        }
    };
    let s512 = "s".repeat(512);
    let s513 = "s".repeat(513);
    let v43 = "a".repeat(43);
    let v128 = "~".repeat(128);
    let v42 = "a".repeat(42);
    let v129 = "a".repeat(129);
    let u2048 = format!("https://a.example/{}", "p".repeat(2048 - 18));
    let u2049 = format!("{u2048}p");
    assert_eq!(u2048.len(), 2048);

    assert_eq!(
        check(NewPreLogin {
            state: "",
            ..prelogin_input()
        }),
        Err("state")
    );
    assert_eq!(
        check(NewPreLogin {
            state: &s513,
            ..prelogin_input()
        }),
        Err("state")
    );
    assert_eq!(
        check(NewPreLogin {
            state: "caf\u{e9}",
            ..prelogin_input()
        }),
        Err("state")
    );
    assert_eq!(
        check(NewPreLogin {
            state: "a\tb",
            ..prelogin_input()
        }),
        Err("state")
    );
    assert_eq!(
        check(NewPreLogin {
            state: &s512,
            ..prelogin_input()
        }),
        Ok(())
    );
    assert_eq!(
        check(NewPreLogin {
            state: "a b~!",
            ..prelogin_input()
        }),
        Ok(())
    );
    assert_eq!(
        check(NewPreLogin {
            nonce: "",
            ..prelogin_input()
        }),
        Err("nonce")
    );
    assert_eq!(
        check(NewPreLogin {
            nonce: "\u{7f}",
            ..prelogin_input()
        }),
        Err("nonce")
    );
    assert_eq!(
        check(NewPreLogin {
            pkce_verifier: &v42,
            ..prelogin_input()
        }),
        Err("pkce_verifier")
    );
    assert_eq!(
        check(NewPreLogin {
            pkce_verifier: &v129,
            ..prelogin_input()
        }),
        Err("pkce_verifier")
    );
    assert_eq!(
        check(NewPreLogin {
            pkce_verifier: &v43,
            ..prelogin_input()
        }),
        Ok(())
    );
    assert_eq!(
        check(NewPreLogin {
            pkce_verifier: &v128,
            ..prelogin_input()
        }),
        Ok(())
    );
    let plus = format!("{}+", &VERIFIER[..43]);
    assert_eq!(
        check(NewPreLogin {
            pkce_verifier: &plus,
            ..prelogin_input()
        }),
        Err("pkce_verifier")
    );
    assert_eq!(
        check(NewPreLogin {
            redirect_uri: None,
            ..prelogin_input()
        }),
        Ok(())
    );
    assert_eq!(
        check(NewPreLogin {
            redirect_uri: Some(&u2048),
            ..prelogin_input()
        }),
        Ok(())
    );
    assert_eq!(
        check(NewPreLogin {
            redirect_uri: Some(&u2049),
            ..prelogin_input()
        }),
        Err("redirect_uri")
    );
    for ok in [
        "http://localhost:8080/cb",
        "HTTPS://App.Example",
        "https://[::1]:443/cb",
        "https://a.example?x=%20y",
    ] {
        assert_eq!(
            check(NewPreLogin {
                redirect_uri: Some(ok),
                ..prelogin_input()
            }),
            Ok(()),
            "{ok}"
        );
    }
    for bad in [
        "",
        "/relative",
        "app.example/cb",
        "ftp://app.example/",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "https://:443/",
        "https://app.example/cb#frag",
        "https://user:pw@app.example/",
        "https://good.example@evil.example/",
        "https://app.example/a b",
        "https://app.exämple/",
        "http:/app.example",
    ] {
        assert_eq!(
            check(NewPreLogin {
                redirect_uri: Some(bad),
                ..prelogin_input()
            }),
            Err("redirect_uri"),
            "{bad}"
        );
    }
    assert!(matches!(
        PreLoginRecord::new("bad tenant", &prelogin_input(), &master, at(NOW)),
        Err(PreLoginError::Input(InputError {
            field: "tenant",
            ..
        }))
    ));
}

// ---------------------------------------------------------------------------------------------
// Refresh families.
// ---------------------------------------------------------------------------------------------

fn family() -> RefreshFamily {
    RefreshFamily::new("acme", "user-1", at(NOW + 30 * 86_400))
}

#[test]
fn rotation_decisions() {
    let mut f = family();
    assert!(f.id.starts_with("rf-"));
    assert_eq!(f.current_gen, 0);
    let now = at(NOW);
    assert_eq!(rotate(&f, 0, now), RotateDecision::Rotate { next_gen: 1 });
    f.current_gen = 5;
    assert_eq!(rotate(&f, 5, now), RotateDecision::Rotate { next_gen: 6 });
    assert_eq!(rotate(&f, 4, now), RotateDecision::Reuse);
    assert_eq!(rotate(&f, 0, now), RotateDecision::Reuse);
    assert_eq!(rotate(&f, 6, now), RotateDecision::Invalid);
    assert_eq!(rotate(&f, u32::MAX, now), RotateDecision::Invalid);
    // Expiry is exclusive, like every other in veto.
    let exp = f.expires_at;
    assert_eq!(
        rotate(&f, 5, exp - secs(1)),
        RotateDecision::Rotate { next_gen: 6 }
    );
    assert_eq!(rotate(&f, 5, exp), RotateDecision::Invalid);
    assert_eq!(rotate(&f, 4, exp), RotateDecision::Invalid);
    // A revoked family answers nothing but invalid: there is nothing left to revoke.
    f.revoked_at = Some(now);
    f.revoke_reason = Some(REUSE_REASON.into());
    assert_eq!(rotate(&f, 5, now), RotateDecision::Invalid);
    assert_eq!(rotate(&f, 4, now), RotateDecision::Invalid);
    // The counter never wraps back to generation 0.
    let mut f = family();
    f.current_gen = u32::MAX;
    assert_eq!(rotate(&f, u32::MAX, now), RotateDecision::Invalid);
}

/// The store the module documentation asks for: a compare-and-swap on `current_gen`.
fn refresh(store: &mut RefreshFamily, presented: u32, now: OffsetDateTime) -> RotateDecision {
    loop {
        let snapshot = store.clone();
        let d = rotate(&snapshot, presented, now);
        match d {
            RotateDecision::Rotate { next_gen } => {
                if store.current_gen == presented && store.revoked_at.is_none() {
                    store.current_gen = next_gen;
                    return d;
                }
                // Lost the race: decide again on fresh state.
            }
            RotateDecision::Reuse => {
                store.revoked_at = Some(now);
                store.revoke_reason = Some(REUSE_REASON.into());
                return d;
            }
            RotateDecision::Invalid => return d,
        }
    }
}

#[test]
fn concurrent_refreshes_of_one_token_make_one_winner_and_one_reuse() {
    let mut store = family();
    let now = at(NOW);
    // Both requests read generation 0 and decide to rotate.
    let a = rotate(&store, 0, now);
    let b = rotate(&store, 0, now);
    assert_eq!(a, b);
    // A commits first; B's compare-and-swap then fails, it re-reads and sees a reuse.
    assert_eq!(
        refresh(&mut store, 0, now),
        RotateDecision::Rotate { next_gen: 1 }
    );
    assert_eq!(refresh(&mut store, 0, now), RotateDecision::Reuse);
    assert!(store.revoked_at.is_some());
    assert_eq!(store.revoke_reason.as_deref(), Some("refresh_token_reuse"));
    // The winner's new token dies with the family.
    assert_eq!(refresh(&mut store, 1, now), RotateDecision::Invalid);
}

proptest! {
    /// Against a model that remembers every token ever issued: only the newest is accepted, an
    /// older one revokes everything, and the family's state stays one counter however long it runs.
    #[test]
    fn families_accept_only_the_newest_token(presented in proptest::collection::vec(0u32..12, 1..60)) {
        let mut store = family();
        let mut issued: u32 = 0; // tokens 0..=issued exist
        let mut revoked = false;
        for g in presented {
            let d = refresh(&mut store, g, at(NOW));
            let expected = if revoked || g > issued {
                RotateDecision::Invalid
            } else if g < issued {
                revoked = true;
                RotateDecision::Reuse
            } else {
                issued += 1;
                RotateDecision::Rotate { next_gen: issued }
            };
            prop_assert_eq!(d, expected);
            prop_assert_eq!(store.current_gen, issued);
            prop_assert_eq!(store.revoked_at.is_some(), revoked);
        }
    }
}

#[test]
fn refresh_claims_round_trip_and_refuse_other_tokens() {
    let f = family();
    let mut claims = Map::new();
    claims.insert("sub".into(), "user-1".into());
    claims.insert("gen".into(), json!("caller's"));
    let c = f.current_claims();
    c.insert_into(&mut claims);
    assert_eq!(claims["token_use"], json!(TOKEN_USE_REFRESH));
    assert_eq!(claims["gen"], json!(0));
    assert_eq!(RefreshClaims::from_claims(&claims), Some(c));

    let with = |k: &str, v: Value| {
        let mut m = claims.clone();
        m.insert(k.into(), v);
        RefreshClaims::from_claims(&m)
    };
    assert_eq!(with("token_use", json!("access")), None);
    assert_eq!(with("token_use", json!(null)), None);
    assert_eq!(with("gen", json!(-1)), None);
    assert_eq!(with("gen", json!(u64::from(u32::MAX) + 1)), None);
    assert_eq!(with("gen", json!(1.5)), None);
    assert_eq!(with("gen", json!("1")), None);
    assert_eq!(with("fam", json!("ses-AAAAAAAAAAAAAAAAAAAAAA")), None);
    assert_eq!(with("fam", json!(7)), None);
    assert_eq!(
        with("gen", json!(u32::MAX)).map(|c| c.generation),
        Some(u32::MAX)
    );
    let mut access = claims.clone();
    access.remove("token_use");
    assert_eq!(RefreshClaims::from_claims(&access), None);
    let id = new_family_id();
    assert_eq!(id.len(), 25);
}
