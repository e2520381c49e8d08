//! `check::Checker`, the whole token check (steps 1–4), with real keys and a real index: each
//! piece of revocation state gives its own reason, in the documented order, and the caller's
//! freshness gate sits between the token's own checks and the revocation state.
use std::cell::Cell;

use serde_json::{Map, json};
use time::OffsetDateTime;
use veto_core::check::Checker;
use veto_core::index::{RevocationIndex, SessionTimes};
use veto_core::keyring::KeyRing;
use veto_core::keys::{KeyStatus, LoadedKey, MasterKey, SigningKeyRecord, generate_signing_key};
use veto_core::refresh::RefreshFamily;
use veto_core::tenant::TenantState;
use veto_core::token::{Audience, IssueInput, issue};
use veto_core::{Alg, Reason};

const NOW: i64 = 1_800_000_000;
const TENANT: &str = "acme";
const ISS: &str = "https://veto.test/t/acme";
const AT: &str = "at+jwt";
const RT: &str = "rt+jwt";
const SUB: &str = "user-1";
const SID: &str = "ses-1";

struct World {
    master: MasterKey,
    rec: SigningKeyRecord,
    keys: KeyRing,
    index: RevocationIndex,
}

impl World {
    fn new(alg: Alg) -> World {
        let master = MasterKey::generate();
        let created = OffsetDateTime::from_unix_timestamp(NOW - 100).unwrap();
        let rec = generate_signing_key(TENANT, alg, None, &master, created).unwrap();
        let keys = KeyRing::new();
        keys.upsert(LoadedKey::load(&rec, &master).unwrap());
        World {
            master,
            rec,
            keys,
            index: RevocationIndex::new(),
        }
    }

    fn checker(&self) -> Checker<'_> {
        Checker {
            keys: &self.keys,
            index: &self.index,
            tenant: TENANT,
            issuer: ISS,
            leeway: 30,
        }
    }

    /// A token of `typ` issued at `iat` for 900 s, with `sid` and the given custom claims.
    fn token(&self, typ: &str, iat: i64, claims: &Map<String, serde_json::Value>) -> Token {
        let key = LoadedKey::load(&self.rec, &self.master).unwrap();
        let aud = Audience::One("api".into());
        let issued = issue(
            &key,
            &IssueInput {
                issuer: ISS,
                tenant: TENANT,
                sub: SUB,
                aud: Some(&aud),
                iat,
                ttl_seconds: 900,
                nbf: None,
                sid: Some(SID),
                client_id: "client",
                claims,
                typ,
            },
        )
        .unwrap();
        Token {
            token: issued.token,
            jti: issued.jti,
        }
    }

    fn access(&self) -> Token {
        self.token(AT, NOW, &Map::new())
    }

    /// An access token minted by a refresh of family `fam`.
    fn access_of_family(&self, fam: &str) -> Token {
        let mut c = Map::new();
        c.insert("fam".into(), json!(fam));
        self.token(AT, NOW, &c)
    }

    /// A refresh token of a new family, and the family's id.
    fn refresh(&self) -> (Token, String) {
        let family = RefreshFamily::new(TENANT, SUB, OffsetDateTime::UNIX_EPOCH);
        let mut c = Map::new();
        family.current_claims().insert_into(&mut c);
        (self.token(RT, NOW, &c), family.id)
    }

    /// The check at `NOW` of an access token with a fresh state and no audience asked.
    fn check(&self, token: &Token) -> Result<(), Reason> {
        self.checker()
            .check(&token.token, AT, None, NOW, || true)
            .map(|_| ())
    }

    fn revoke_key(&self) {
        let mut rec = self.rec.clone();
        rec.status = KeyStatus::Revoked;
        self.keys
            .upsert(LoadedKey::load(&rec, &self.master).unwrap());
    }
}

struct Token {
    token: String,
    jti: String,
}

#[test]
fn a_good_token_passes_with_its_claims() {
    for alg in [Alg::ES256, Alg::EdDSA, Alg::HS256] {
        let w = World::new(alg);
        let t = w.access();
        let v = w
            .checker()
            .check(&t.token, AT, Some("api"), NOW, || true)
            .unwrap();
        assert_eq!(v.jti, t.jti, "{alg}");
        assert_eq!(v.sub.as_deref(), Some(SUB));
        assert_eq!(v.sid.as_deref(), Some(SID));
        assert_eq!(v.iss, ISS);
        assert_eq!(v.kid, w.rec.kid);
        assert_eq!(v.fam, None);
    }
}

#[test]
fn steps_one_to_three_still_decide_first() {
    let w = World::new(Alg::ES256);
    let t = w.access();
    let c = w.checker();
    assert_eq!(
        c.check(&t.token, AT, Some("other-api"), NOW, || true)
            .map(|_| ()),
        Err(Reason::WrongAudience)
    );
    assert_eq!(
        c.check(&t.token, AT, None, NOW + 900 + 30, || true)
            .map(|_| ()),
        Err(Reason::Expired)
    );
    // Within the leeway, still good.
    assert!(c.check(&t.token, AT, None, NOW + 900 + 29, || true).is_ok());
    assert_eq!(
        c.check(&t.token, RT, None, NOW, || true).map(|_| ()),
        Err(Reason::WrongType)
    );
    let other_issuer = Checker {
        issuer: "https://veto.test/t/other",
        ..c
    };
    assert_eq!(
        other_issuer
            .check(&t.token, AT, None, NOW, || true)
            .map(|_| ()),
        Err(Reason::WrongIssuer)
    );
    // Keys are per tenant: another tenant's checker does not know this one's key.
    let other_tenant = Checker {
        tenant: "other",
        ..c
    };
    assert_eq!(
        other_tenant
            .check(&t.token, AT, None, NOW, || true)
            .map(|_| ()),
        Err(Reason::UnknownKey)
    );
    // One character of the signature changed, its first: no padding bits involved.
    let (signed, sig) = t.token.rsplit_once('.').unwrap();
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{first}{}", &sig[1..]);
    assert_eq!(
        c.check(&tampered, AT, None, NOW, || true).map(|_| ()),
        Err(Reason::BadSignature)
    );
}

#[test]
fn each_piece_of_revocation_state_gives_its_reason() {
    let w = World::new(Alg::ES256);

    let t = w.access();
    w.index.insert_jti(TENANT, &t.jti, None);
    assert_eq!(w.check(&t), Err(Reason::Revoked));

    let t = w.access();
    w.index.insert_jti(TENANT, &t.jti, Some(NOW + 60));
    assert_eq!(w.check(&t), Err(Reason::Suspended));
    // A suspension that has lifted no longer counts. (Another token: a second insert of the
    // same jti would count as a second revocation, keeping the later until of the two.)
    let t = w.access();
    w.index.insert_jti(TENANT, &t.jti, Some(NOW));
    assert_eq!(w.check(&t), Ok(()));

    // A jti revoked in another tenant is another token.
    let t = w.access();
    w.index.insert_jti("other", &t.jti, None);
    assert_eq!(w.check(&t), Ok(()));

    let w = World::new(Alg::ES256);
    let t = w.access();
    w.index.raise_subject_cutoff(TENANT, SUB, NOW + 1);
    assert_eq!(w.check(&t), Err(Reason::SubjectRevoked));

    let w = World::new(Alg::ES256);
    let t = w.access();
    w.index.revoke_session(TENANT, SID);
    assert_eq!(w.check(&t), Err(Reason::SessionRevoked));

    // An expired session rejects its tokens like a revoked one.
    let w = World::new(Alg::ES256);
    let t = w.access();
    let times = |expires| SessionTimes {
        last_seen: NOW - 10,
        expires,
    };
    w.index.note_session(TENANT, SID, times(NOW + 1));
    assert_eq!(w.check(&t), Ok(()));
    w.index.forget_session(TENANT, SID);
    w.index.note_session(TENANT, SID, times(NOW));
    assert_eq!(w.check(&t), Err(Reason::SessionRevoked));
}

#[test]
fn a_revoked_key_rejects_its_tokens() {
    let w = World::new(Alg::ES256);
    let t = w.access();
    assert_eq!(w.check(&t), Ok(()));
    w.revoke_key();
    assert_eq!(w.check(&t), Err(Reason::KeyRevoked));
}

#[test]
fn tenant_cutoff_and_suspension() {
    let w = World::new(Alg::ES256);
    let t = w.access();
    // A cutoff in the token's own second does not reject it: `iat < cutoff` does.
    w.index.raise_tenant_cutoff(TENANT, NOW);
    assert_eq!(w.check(&t), Ok(()));
    w.index.raise_tenant_cutoff(TENANT, NOW + 1);
    assert_eq!(w.check(&t), Err(Reason::TenantRevoked));
    // Issued after the cutoff: good again.
    let later = w.token(AT, NOW + 1, &Map::new());
    assert_eq!(w.check(&later), Ok(()));

    w.index.set_tenant_suspended(TENANT, true);
    assert_eq!(w.check(&later), Err(Reason::TenantSuspended));
    w.index.set_tenant_suspended(TENANT, false);
    assert_eq!(w.check(&later), Ok(()));
}

#[test]
fn a_revoked_family_rejects_its_refresh_and_access_tokens() {
    let w = World::new(Alg::ES256);
    let (rt, fam) = w.refresh();
    let at = w.access_of_family(&fam);
    let unrelated = w.access();
    let c = w.checker();
    let v = c.check(&rt.token, RT, None, NOW, || true).unwrap();
    assert_eq!(v.fam.as_deref(), Some(fam.as_str()));
    assert_eq!(w.check(&at), Ok(()));

    w.index.revoke_family(TENANT, &fam);
    assert_eq!(
        c.check(&rt.token, RT, None, NOW, || true).map(|_| ()),
        Err(Reason::Revoked)
    );
    assert_eq!(w.check(&at), Err(Reason::Revoked));
    assert_eq!(w.check(&unrelated), Ok(()));
    // A refresh token is never an access token, nor the other way round.
    assert_eq!(
        c.check(&rt.token, AT, None, NOW, || true).map(|_| ()),
        Err(Reason::WrongType)
    );
    assert_eq!(
        c.check(&at.token, RT, None, NOW, || true).map(|_| ()),
        Err(Reason::WrongType)
    );
}

/// Every piece of state at once, then lifted one at a time, broadest first: each lift uncovers
/// the next reason in index.rs's order (tenant suspended, tenant cutoff, subject cutoff, session,
/// jti), with the family last.
#[test]
fn reasons_come_cheapest_and_broadest_first_family_last() {
    let w = World::new(Alg::ES256);
    let (_, fam) = w.refresh();
    let t = w.access_of_family(&fam);
    w.index.revoke_family(TENANT, &fam);
    w.index.insert_jti(TENANT, &t.jti, None);
    w.index.revoke_session(TENANT, SID);
    w.index.raise_subject_cutoff(TENANT, SUB, NOW + 1);
    w.index.raise_tenant_cutoff(TENANT, NOW + 1);
    w.index.set_tenant_suspended(TENANT, true);

    assert_eq!(w.check(&t), Err(Reason::TenantSuspended));
    w.index.set_tenant_suspended(TENANT, false);
    assert_eq!(w.check(&t), Err(Reason::TenantRevoked));
    w.index.set_tenant(TENANT, TenantState::default());
    assert_eq!(w.check(&t), Err(Reason::SubjectRevoked));
    w.index.remove_subject_cutoff(TENANT, SUB);
    assert_eq!(w.check(&t), Err(Reason::SessionRevoked));
    w.index.forget_session(TENANT, SID);
    assert_eq!(w.check(&t), Err(Reason::Revoked));
    w.index.remove_jti(TENANT, &t.jti);
    assert_eq!(w.check(&t), Err(Reason::Revoked), "the family, last");
    w.index.forget_family(TENANT, &fam);
    assert_eq!(w.check(&t), Ok(()));

    // The key, step 2, comes before all of step 4.
    w.index.set_tenant_suspended(TENANT, true);
    w.revoke_key();
    assert_eq!(w.check(&t), Err(Reason::KeyRevoked));
}

#[test]
fn the_freshness_gate_sits_between_the_token_and_the_revocation_state() {
    let w = World::new(Alg::ES256);
    let t = w.access();
    let c = w.checker();
    let asked = Cell::new(0);
    let stale = || {
        asked.set(asked.get() + 1);
        false
    };

    // A good token on a stale node: index_stale, the gate asked once.
    assert_eq!(
        c.check(&t.token, AT, None, NOW, stale).map(|_| ()),
        Err(Reason::IndexStale)
    );
    assert_eq!(asked.get(), 1);

    // A token failing steps 1–3 keeps its own reason, and the gate is not asked.
    asked.set(0);
    assert_eq!(
        c.check(&t.token, AT, None, NOW + 3600, stale).map(|_| ()),
        Err(Reason::Expired)
    );
    assert_eq!(
        c.check("not.a.token", AT, None, NOW, stale).map(|_| ()),
        Err(Reason::Malformed)
    );
    assert_eq!(asked.get(), 0);

    // Revocation state is read only once the gate let it be: a stale node does not report
    // what its possibly outdated index says.
    w.index.insert_jti(TENANT, &t.jti, None);
    w.index.set_tenant_suspended(TENANT, true);
    assert_eq!(
        c.check(&t.token, AT, None, NOW, stale).map(|_| ()),
        Err(Reason::IndexStale)
    );
    assert_eq!(asked.get(), 1);

    // A revoked key is step 2, decided before the gate.
    w.revoke_key();
    asked.set(0);
    assert_eq!(
        c.check(&t.token, AT, None, NOW, stale).map(|_| ()),
        Err(Reason::KeyRevoked)
    );
    assert_eq!(asked.get(), 0);
}

#[test]
fn verify_signed_skips_time_and_revocation_state() {
    let w = World::new(Alg::ES256);
    let t = w.access();
    let (rt, fam) = w.refresh();
    let c = w.checker();
    w.index.insert_jti(TENANT, &t.jti, None);
    w.index.set_tenant_suspended(TENANT, true);
    w.index.revoke_family(TENANT, &fam);

    // Expired and revoked, yet its signature, key and issuer hold: it may still be revoked.
    let v = c.verify_signed(&t.token, AT, NOW + 3600).unwrap();
    assert_eq!(v.jti, t.jti);
    assert_eq!(v.sub.as_deref(), Some(SUB));
    let v = c.verify_signed(&rt.token, RT, NOW + 3600).unwrap();
    assert_eq!(v.fam.as_deref(), Some(fam.as_str()));

    assert_eq!(
        c.verify_signed(&rt.token, AT, NOW).map(|_| ()),
        Err(Reason::WrongType)
    );
    let other_issuer = Checker {
        issuer: "https://veto.test/t/other",
        ..c
    };
    assert_eq!(
        other_issuer.verify_signed(&t.token, AT, NOW).map(|_| ()),
        Err(Reason::WrongIssuer)
    );
    w.revoke_key();
    assert_eq!(
        c.verify_signed(&t.token, AT, NOW).map(|_| ()),
        Err(Reason::KeyRevoked)
    );
}
