//! The tenant's revocation state as the stream builds it (docs/stream.md): snapshot parts into
//! a fresh state that replaces the old one only once the last part has arrived, then changes
//! applied in order. No I/O here, so every rule is unit-tested without a server.
//!
//! The state is veto-core's own [`RevocationIndex`], filled here, plus the kids of revoked keys
//! (which the key ring turns into keys that answer `key_revoked`): the check itself is
//! `veto_core::check::Checker`, the very one veto runs.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use veto_core::index::{RevocationIndex, SessionTimes};

use crate::event::{Change, Heartbeat, Snapshot};
use crate::sse::SseEvent;

/// What one event did to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fed {
    /// A snapshot part that is not the last: nothing visible changed yet.
    SnapshotPart,
    /// The last part arrived: the fresh state replaced the old one (index and revoked keys).
    Snapshot,
    /// A change applied (or one of a kind not known, skipped); `keys` says whether it concerns
    /// signing keys.
    Change { keys: KeyChange },
    /// The serving node's state is `age_ms` old.
    Heartbeat { age_ms: u64 },
    /// Not applicable now (an event name not in docs/stream.md, or a heartbeat in the middle of
    /// a snapshot, which says nothing of the state being built).
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    None,
    /// A key was revoked: its tokens are `key_revoked` from now on.
    Revoked(String),
    /// A key was created or retired: the JWKS is worth fetching again.
    JwksChanged,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0} event without an id (a position)")]
    NoPosition(String),
    #[error("{event} event at {position} does not parse: {error}")]
    BadJson {
        event: String,
        position: String,
        error: serde_json::Error,
    },
    #[error("snapshot part {part} at {position} out of order")]
    PartOutOfOrder { part: u32, position: String },
    #[error("change at {0} in the middle of a snapshot")]
    ChangeInSnapshot(String),
}

/// A snapshot being received.
struct Building {
    position: String,
    next_part: u32,
    index: RevocationIndex,
    revoked_keys: HashSet<String>,
}

pub struct Ledger {
    tenant: String,
    index: Arc<RevocationIndex>,
    revoked_keys: HashSet<String>,
    building: Option<Building>,
    /// The position of the last event fully applied: what a reconnect resumes after.
    position: Option<String>,
    /// A complete snapshot has been applied at least once.
    has_state: bool,
}

impl Ledger {
    pub fn new(tenant: &str) -> Self {
        Ledger {
            tenant: tenant.to_owned(),
            index: Arc::new(RevocationIndex::new()),
            revoked_keys: HashSet::new(),
            building: None,
            position: None,
            has_state: false,
        }
    }

    /// The current state (the one checks are to use).
    pub fn index(&self) -> &Arc<RevocationIndex> {
        &self.index
    }

    pub fn revoked_keys(&self) -> &HashSet<String> {
        &self.revoked_keys
    }

    pub fn position(&self) -> Option<&str> {
        self.position.as_deref()
    }

    pub fn has_state(&self) -> bool {
        self.has_state
    }

    /// A snapshot is being received: until its last part, the current state falls behind.
    #[cfg(test)]
    pub fn mid_snapshot(&self) -> bool {
        self.building.is_some()
    }

    /// The connection ended: a snapshot cut before its last part is dropped, and the position
    /// stays the one before it (docs/stream.md, "snapshot").
    pub fn disconnected(&mut self) {
        self.building = None;
    }

    /// veto refused the resume position (a `400`): start over with a fresh snapshot. The current
    /// state keeps serving (and ageing) until that snapshot is complete.
    pub fn forget_position(&mut self) {
        self.position = None;
    }

    pub fn feed(&mut self, event: &SseEvent) -> Result<Fed, ProtocolError> {
        let name = event.event.as_str();
        if !matches!(name, "snapshot" | "change" | "heartbeat") {
            return Ok(Fed::Ignored);
        }
        let position = event
            .id
            .clone()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| ProtocolError::NoPosition(name.to_owned()))?;
        let bad = |error| ProtocolError::BadJson {
            event: name.to_owned(),
            position: position.clone(),
            error,
        };
        match name {
            "snapshot" => {
                let part: Snapshot = serde_json::from_str(&event.data).map_err(bad)?;
                self.snapshot(position, part)
            }
            "change" => {
                if self.building.is_some() {
                    return Err(ProtocolError::ChangeInSnapshot(position));
                }
                let change: Change = serde_json::from_str(&event.data).map_err(bad)?;
                let keys = self.apply(&change);
                self.position = Some(position);
                Ok(Fed::Change { keys })
            }
            _ => {
                let beat: Heartbeat = serde_json::from_str(&event.data).map_err(bad)?;
                if self.building.is_some() {
                    return Ok(Fed::Ignored);
                }
                // veto sends a heartbeat at its feed position after every change of the tenant
                // up to it, so that position is fully applied too: resuming from it keeps a
                // quiet tenant's resume position within the change log (kept for a day)
                // instead of falling back to a full snapshot. Not before the first snapshot,
                // which a resume position would skip.
                if self.has_state {
                    self.position = Some(position);
                }
                Ok(Fed::Heartbeat {
                    age_ms: beat.age_ms,
                })
            }
        }
    }

    fn snapshot(&mut self, position: String, part: Snapshot) -> Result<Fed, ProtocolError> {
        if part.part == 0 {
            // A new snapshot starts over, whatever was being built.
            self.building = Some(Building {
                position: position.clone(),
                next_part: 0,
                index: RevocationIndex::new(),
                revoked_keys: HashSet::new(),
            });
        }
        let b = match self.building.as_mut() {
            Some(b) if b.position == position && b.next_part == part.part => b,
            _ => {
                self.building = None;
                return Err(ProtocolError::PartOutOfOrder {
                    part: part.part,
                    position,
                });
            }
        };
        let t = self.tenant.as_str();
        let idx = &b.index;
        if part.part == 0 {
            idx.set_tenant_suspended(t, part.tenant_suspended);
            if let Some(c) = part.tenant_cutoff {
                idx.raise_tenant_cutoff(t, c);
            }
        }
        for c in &part.subject_cutoffs {
            idx.raise_subject_cutoff(t, &c.sub, c.not_before_iat);
        }
        idx.insert_many(
            part.revocations
                .iter()
                .map(|r| (t, r.jti.as_str(), r.until)),
        );
        b.revoked_keys.extend(part.revoked_keys);
        for s in &part.sessions {
            idx.note_session(t, &s.session, session_times(s.expires));
        }
        for s in &part.revoked_sessions {
            idx.revoke_session(t, s);
        }
        for f in &part.revoked_families {
            idx.revoke_family(t, f);
        }
        b.next_part = b.next_part.saturating_add(1);
        if !part.last {
            return Ok(Fed::SnapshotPart);
        }
        if let Some(b) = self.building.take() {
            self.index = Arc::new(b.index);
            self.revoked_keys = b.revoked_keys;
            self.position = Some(b.position);
            self.has_state = true;
        }
        Ok(Fed::Snapshot)
    }

    fn apply(&mut self, change: &Change) -> KeyChange {
        let t = self.tenant.as_str();
        let idx = &self.index;
        match change {
            Change::Revocation { jti, until } => idx.insert_jti(t, jti, *until),
            Change::RevocationLift { jti } | Change::RevocationPurge { jti } => {
                idx.remove_jti(t, jti)
            }
            Change::SubjectCutoff {
                sub,
                not_before_iat,
            } => idx.raise_subject_cutoff(t, sub, *not_before_iat),
            Change::TenantCutoff { not_before_iat } => idx.raise_tenant_cutoff(t, *not_before_iat),
            Change::CutoffPurge { sub: Some(sub) } => idx.remove_subject_cutoff(t, sub),
            Change::CutoffPurge { sub: None } => idx.remove_tenant_cutoff(t),
            Change::TenantSuspend => idx.set_tenant_suspended(t, true),
            Change::TenantResume => idx.set_tenant_suspended(t, false),
            Change::KeyRevoke { kid } => {
                self.revoked_keys.insert(kid.clone());
                return KeyChange::Revoked(kid.clone());
            }
            Change::KeyChanged => return KeyChange::JwksChanged,
            Change::SessionExpires { session, expires } => {
                idx.note_session(t, session, session_times(*expires))
            }
            Change::SessionRevoke { session } => idx.revoke_session(t, session),
            Change::SessionPurge { session } => idx.forget_session(t, session),
            Change::RefreshRevoke { family } => idx.revoke_family(t, family),
            Change::RefreshPurge { family } => idx.forget_family(t, family),
            Change::Unknown => {}
        }
        KeyChange::None
    }
}

/// The stream gives a session's expiry only; `last_seen` is what veto uses to slide it on its
/// own node, which a verifier never does.
fn session_times(expires: i64) -> SessionTimes {
    SessionTimes {
        last_seen: i64::MIN,
        expires,
    }
}

/// When a state stops being current: `received` (on the caller's clock) is when the last
/// heartbeat or change arrived, `age_ms` how old the serving node said its own state was then.
/// The state is as old as the time since `received` plus `age_ms` (docs/stream.md), so it is
/// current until `received + bound - age_ms`; `None` when it is already too old on arrival.
pub fn current_until(received: Duration, age_ms: u64, bound: Duration) -> Option<Duration> {
    let age = Duration::from_millis(age_ms);
    (age <= bound).then(|| received + (bound - age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use veto_core::Reason;
    use veto_core::index::TokenFacts;

    const T: &str = "acme";

    fn ev(event: &str, id: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: Some(id.into()),
        }
    }

    fn check(
        l: &Ledger,
        jti: &str,
        sub: Option<&str>,
        iat: i64,
        sid: Option<&str>,
    ) -> Result<(), Reason> {
        l.index()
            .check(T, &TokenFacts { jti, sub, iat, sid }, 1_000)
    }

    fn fam(l: &Ledger, f: &str) -> bool {
        l.index().family_revoked(T, f)
    }

    const PART0: &str = r#"{"kind":"snapshot","position":"0-10","part":0,"last":false,"tenant_suspended":false,"tenant_cutoff":100,"subject_cutoffs":[{"sub":"u1","not_before_iat":500}],"revocations":[{"jti":"a1","until":null},{"jti":"b2","until":2000}],"revoked_keys":["k-3"],"sessions":[],"revoked_sessions":[],"revoked_families":[]}"#;
    const PART1: &str = r#"{"kind":"snapshot","position":"0-10","part":1,"last":true,"subject_cutoffs":[],"revocations":[],"revoked_keys":[],"sessions":[{"session":"ses-1","expires":900}],"revoked_sessions":["ses-2"],"revoked_families":["fam-9"]}"#;

    fn with_snapshot() -> Ledger {
        let mut l = Ledger::new(T);
        assert_eq!(
            l.feed(&ev("snapshot", "0-10", PART0)).unwrap(),
            Fed::SnapshotPart
        );
        assert_eq!(
            l.feed(&ev("snapshot", "0-10", PART1)).unwrap(),
            Fed::Snapshot
        );
        l
    }

    #[test]
    fn a_snapshot_in_parts_replaces_the_state_only_when_complete() {
        let mut l = Ledger::new(T);
        assert!(!l.has_state());
        assert_eq!(
            l.feed(&ev("snapshot", "0-10", PART0)).unwrap(),
            Fed::SnapshotPart
        );
        // Part 0 alone changes nothing visible, nor the resume position.
        assert!(!l.has_state() && l.mid_snapshot());
        assert_eq!(l.position(), None);
        assert_eq!(check(&l, "a1", None, 200, None), Ok(()));
        assert_eq!(
            l.feed(&ev("snapshot", "0-10", PART1)).unwrap(),
            Fed::Snapshot
        );
        assert!(l.has_state() && !l.mid_snapshot());
        assert_eq!(l.position(), Some("0-10"));
        // Every member of both parts is in force.
        assert_eq!(check(&l, "a1", None, 200, None), Err(Reason::Revoked));
        assert_eq!(check(&l, "b2", None, 200, None), Err(Reason::Suspended));
        assert_eq!(check(&l, "c", None, 99, None), Err(Reason::TenantRevoked));
        assert_eq!(
            check(&l, "c", Some("u1"), 499, None),
            Err(Reason::SubjectRevoked)
        );
        assert_eq!(check(&l, "c", Some("u1"), 500, None), Ok(()));
        assert_eq!(
            check(&l, "c", None, 200, Some("ses-1")),
            Err(Reason::SessionRevoked),
            "expired at 900"
        );
        assert_eq!(
            check(&l, "c", None, 200, Some("ses-2")),
            Err(Reason::SessionRevoked)
        );
        assert_eq!(check(&l, "c", None, 200, Some("ses-3")), Ok(()));
        assert!(fam(&l, "fam-9") && !fam(&l, "fam-8"));
        assert!(l.revoked_keys().contains("k-3"));
    }

    #[test]
    fn a_new_snapshot_replaces_everything_and_a_cut_one_leaves_the_old_state() {
        let mut l = with_snapshot();
        let old = Arc::clone(l.index());
        // Cut after part 0: the old state and position stay.
        l.feed(&ev(
            "snapshot",
            "0-20",
            &PART0.replace("0-10", "0-20").replace("a1", "zz"),
        ))
        .unwrap();
        l.disconnected();
        assert!(Arc::ptr_eq(&old, l.index()));
        assert_eq!(l.position(), Some("0-10"));
        // A complete one replaces it: what it no longer lists is gone.
        let only = r#"{"kind":"snapshot","position":"0-30","part":0,"last":true,"tenant_suspended":true,"tenant_cutoff":null,"subject_cutoffs":[],"revocations":[{"jti":"n1","until":null}],"revoked_keys":[],"sessions":[],"revoked_sessions":[],"revoked_families":[]}"#;
        assert_eq!(
            l.feed(&ev("snapshot", "0-30", only)).unwrap(),
            Fed::Snapshot
        );
        assert!(!Arc::ptr_eq(&old, l.index()));
        assert_eq!(l.position(), Some("0-30"));
        assert_eq!(
            check(&l, "a1", None, 200, None),
            Err(Reason::TenantSuspended)
        );
        assert!(l.revoked_keys().is_empty());
        assert!(!fam(&l, "fam-9"));
    }

    #[test]
    fn parts_must_come_in_order_of_one_snapshot() {
        let mut l = with_snapshot();
        assert!(matches!(
            l.feed(&ev("snapshot", "0-10", PART1)),
            Err(ProtocolError::PartOutOfOrder { part: 1, .. })
        ));
        l.feed(&ev("snapshot", "0-11", &PART0.replace("0-10", "0-11")))
            .unwrap();
        assert!(matches!(
            l.feed(&ev("snapshot", "0-12", PART1)),
            Err(ProtocolError::PartOutOfOrder { .. })
        ));
        assert!(!l.mid_snapshot());
        l.feed(&ev("snapshot", "0-13", PART0)).unwrap();
        let change = r#"{"kind":"revocation","position":"0-14","at":1,"jti":"x","until":null}"#;
        assert!(matches!(
            l.feed(&ev("change", "0-14", change)),
            Err(ProtocolError::ChangeInSnapshot(_))
        ));
        // A heartbeat in the middle of a snapshot does not vouch for the state.
        let beat = r#"{"kind":"heartbeat","position":"0-13","age_ms":3}"#;
        assert_eq!(
            l.feed(&ev("heartbeat", "0-13", beat)).unwrap(),
            Fed::Ignored
        );
        assert_eq!(l.position(), Some("0-10"));
    }

    fn change(l: &mut Ledger, id: &str, json: &str) -> KeyChange {
        match l.feed(&ev("change", id, json)).unwrap() {
            Fed::Change { keys } => {
                assert_eq!(l.position(), Some(id));
                keys
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_change_kind() {
        let mut l = with_snapshot();
        let none = KeyChange::None;
        // As the ledger writes them: a row per revocation, a lift deletes a suspension's row.
        assert_eq!(
            change(
                &mut l,
                "0-11",
                r#"{"kind":"revocation","position":"0-11","at":1,"jti":"c3","until":5000}"#
            ),
            none
        );
        assert_eq!(check(&l, "c3", None, 200, None), Err(Reason::Suspended));
        change(
            &mut l,
            "0-12",
            r#"{"kind":"revocation.lift","position":"0-12","at":1,"jti":"c3"}"#,
        );
        assert_eq!(check(&l, "c3", None, 200, None), Ok(()));
        change(
            &mut l,
            "0-13",
            r#"{"kind":"revocation","position":"0-13","at":1,"jti":"c4","until":null}"#,
        );
        assert_eq!(check(&l, "c4", None, 200, None), Err(Reason::Revoked));
        change(
            &mut l,
            "0-14",
            r#"{"kind":"revocation.purge","position":"0-14","at":1,"jti":"a1"}"#,
        );
        assert_eq!(check(&l, "a1", None, 200, None), Ok(()));

        change(
            &mut l,
            "0-15",
            r#"{"kind":"subject.cutoff","position":"0-15","at":1,"sub":"u2","not_before_iat":300}"#,
        );
        assert_eq!(
            check(&l, "j", Some("u2"), 299, None),
            Err(Reason::SubjectRevoked)
        );
        change(
            &mut l,
            "0-16",
            r#"{"kind":"cutoff.purge","position":"0-16","at":1,"sub":"u2"}"#,
        );
        assert_eq!(check(&l, "j", Some("u2"), 299, None), Ok(()));
        change(
            &mut l,
            "0-17",
            r#"{"kind":"tenant.cutoff","position":"0-17","at":1,"not_before_iat":400}"#,
        );
        assert_eq!(check(&l, "j", None, 399, None), Err(Reason::TenantRevoked));
        change(
            &mut l,
            "0-18",
            r#"{"kind":"cutoff.purge","position":"0-18","at":1,"sub":null}"#,
        );
        assert_eq!(check(&l, "j", None, 399, None), Ok(()));
        change(
            &mut l,
            "0-19",
            r#"{"kind":"tenant.suspend","position":"0-19","at":1}"#,
        );
        assert_eq!(
            check(&l, "j", None, 399, None),
            Err(Reason::TenantSuspended)
        );
        change(
            &mut l,
            "0-20",
            r#"{"kind":"tenant.resume","position":"0-20","at":1}"#,
        );
        assert_eq!(check(&l, "j", None, 399, None), Ok(()));

        assert_eq!(
            change(
                &mut l,
                "0-21",
                r#"{"kind":"key.revoke","position":"0-21","at":1,"kid":"k-7"}"#
            ),
            KeyChange::Revoked("k-7".into())
        );
        assert!(l.revoked_keys().contains("k-7"));
        for kind in ["key.insert", "key.retire"] {
            let json = format!(r#"{{"kind":"{kind}","position":"0-22","at":1,"kid":"k-8"}}"#);
            assert_eq!(change(&mut l, "0-22", &json), KeyChange::JwksChanged);
        }

        change(
            &mut l,
            "0-23",
            r#"{"kind":"session.create","position":"0-23","at":1,"session":"s5","expires":1100}"#,
        );
        assert_eq!(check(&l, "j", None, 399, Some("s5")), Ok(()));
        change(
            &mut l,
            "0-24",
            r#"{"kind":"session.touch","position":"0-24","at":1,"session":"s6","expires":1000}"#,
        );
        assert_eq!(
            check(&l, "j", None, 399, Some("s6")),
            Err(Reason::SessionRevoked),
            "expired at 1000"
        );
        change(
            &mut l,
            "0-25",
            r#"{"kind":"session.revoke","position":"0-25","at":1,"session":"s5"}"#,
        );
        assert_eq!(
            check(&l, "j", None, 399, Some("s5")),
            Err(Reason::SessionRevoked)
        );
        change(
            &mut l,
            "0-26",
            r#"{"kind":"session.purge","position":"0-26","at":1,"session":"s5"}"#,
        );
        assert_eq!(check(&l, "j", None, 399, Some("s5")), Ok(()));

        change(
            &mut l,
            "0-27",
            r#"{"kind":"refresh.revoke","position":"0-27","at":1,"family":"f1"}"#,
        );
        assert!(fam(&l, "f1"));
        change(
            &mut l,
            "0-28",
            r#"{"kind":"refresh.purge","position":"0-28","at":1,"family":"f1"}"#,
        );
        assert!(!fam(&l, "f1"));
    }

    #[test]
    fn unknown_kinds_and_events_are_ignored_but_move_the_position() {
        let mut l = with_snapshot();
        assert_eq!(
            change(
                &mut l,
                "0-11",
                r#"{"kind":"api_key.create","position":"0-11","at":1,"whatever":[1,2]}"#
            ),
            KeyChange::None
        );
        assert_eq!(
            l.feed(&ev("something-new", "0-12", "{}")).unwrap(),
            Fed::Ignored
        );
        assert_eq!(l.position(), Some("0-11"));
        assert_eq!(check(&l, "a1", None, 200, None), Err(Reason::Revoked));
    }

    #[test]
    fn heartbeats_and_bad_events() {
        let mut l = with_snapshot();
        let beat = r#"{"kind":"heartbeat","position":"0-40","age_ms":12}"#;
        assert_eq!(
            l.feed(&ev("heartbeat", "0-40", beat)).unwrap(),
            Fed::Heartbeat { age_ms: 12 }
        );
        assert_eq!(l.position(), Some("0-40"));
        assert!(matches!(
            l.feed(&ev("change", "0-41", "{not json")),
            Err(ProtocolError::BadJson { .. })
        ));
        assert!(matches!(
            l.feed(&ev("change", "0-41", r#"{"kind":"revocation","jti":7}"#)),
            Err(ProtocolError::BadJson { .. })
        ));
        let no_id = SseEvent {
            event: "change".into(),
            data: "{}".into(),
            id: None,
        };
        assert!(matches!(l.feed(&no_id), Err(ProtocolError::NoPosition(_))));
        assert_eq!(l.position(), Some("0-40"));
        // Before the first snapshot, a heartbeat gives no resume position.
        let mut fresh = Ledger::new(T);
        let beat_fed = fresh.feed(&ev("heartbeat", "0-40", beat)).unwrap();
        assert_eq!(beat_fed, Fed::Heartbeat { age_ms: 12 });
        assert_eq!(fresh.position(), None);
        l.forget_position();
        assert_eq!(l.position(), None);
        assert!(
            l.has_state(),
            "the state keeps serving until a new snapshot"
        );
    }

    #[test]
    fn staleness_bound() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // Received at 10 s, node 0 ms old, bound 5 s: current until 15 s.
        assert_eq!(current_until(s(10), 0, s(5)), Some(s(15)));
        // A node already 4.5 s old leaves half a second.
        assert_eq!(current_until(s(10), 4_500, s(5)), Some(s(10) + ms(500)));
        assert_eq!(current_until(s(10), 5_000, s(5)), Some(s(10)));
        assert_eq!(current_until(s(10), 5_001, s(5)), None);
    }
}
