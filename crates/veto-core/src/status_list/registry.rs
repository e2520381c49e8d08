//! A tenant's status lists as a node holds them: every entry (the token facts a later revocation
//! needs to find it), the bit array derived from the node's revocation state, and the lookups
//! that let a change flip only the entries it touches.
//!
//! Decisions:
//!
//! - **Bits are derived, never stored.** An entry's status is a function of its token's facts
//!   and the revocation state ([`Judge`]): the same index and key ring every check reads. A node
//!   that applies a change to that state asks the registry to re-judge the entries the change
//!   can touch ([`Affects`]), so every node, and every restart, arrives at the same bits from
//!   the same state, and no write has to update thousands of rows when a subject is cut off.
//! - **INVALID is final** for every permanent cause. Nothing that makes a token invalid is ever
//!   undone while the token can be valid (cutoffs only rise, revoked keys, sessions and families
//!   stay revoked, a permanent revocation stays), but the purge removes revocations once their
//!   tokens have expired, and an expired token must not read VALID again. So an entry made
//!   INVALID by such a cause stays so until its own row is purged. SUSPENDED goes back to VALID
//!   when the suspension lifts or the tenant resumes.
//! - **A session's idle expiry is the one INVALID that a later change may undo**: the idle
//!   expiry a node knows lags the session's activity on other nodes by up to the write-back
//!   coalescing window, so a node can see a session end that another node has just extended.
//!   When the extension arrives (a touch: [`Affects::Session`]), the entries of that session
//!   are judged again, so that every node ends with the same bits.
//! - **Time-driven flips are scheduled.** A suspension lifts at `until` and a session's tokens
//!   end at its idle expiry without any write: [`Judge`] returns when an entry's answer may
//!   next change, and [`TenantStatusLists::tick`] re-judges the entries whose time has come
//!   (called before a list is served). Stale schedule items (a session touched since) are
//!   skipped on the way out.
//! - **Lookups hold hashes, not strings**: a (field, string) pair is hashed with a per-process
//!   random key to 64 bits, and a hit is confirmed against the entry's own string, so a
//!   collision costs one comparison and the maps hold no second copy of any string.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;

use compact_str::CompactString;
use smallvec::SmallVec;

use super::{Status, StatusList, StatusListError};
use crate::index::RevocationIndex;
use crate::keyring::KeyRing;
use crate::keys::KeyStatus;

/// What a later revocation needs to find a token's entry, and what its status is judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    pub jti: CompactString,
    pub sub: Option<CompactString>,
    pub sid: Option<CompactString>,
    pub kid: CompactString,
    pub fam: Option<CompactString>,
    /// Unix seconds: cutoffs compare against it.
    pub iat: i64,
    /// Unix seconds: the row is purged some time after it.
    pub exp: i64,
}

/// The revocation state an entry is judged against: the node's own, as every check reads it.
#[derive(Clone, Copy)]
pub struct Judge<'a> {
    pub index: &'a RevocationIndex,
    pub keys: &'a KeyRing,
    pub tenant: &'a str,
    pub now: i64,
}

/// What [`Judge::verdict`] finds for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// When the answer may change without any write (a suspension lifting, a session reaching
    /// its idle expiry).
    pub due: Option<i64>,
    /// INVALID for a permanent cause: no later change undoes it (see the module comment).
    pub lasting: bool,
}

impl Judge<'_> {
    /// [`verdict`](Self::verdict)'s status and due time.
    pub fn status(&self, f: &EntryFacts) -> (Status, Option<i64>) {
        let v = self.verdict(f);
        (v.status, v.due)
    }

    /// The status of the token described by `f`, when that answer may change without any
    /// write, and whether an INVALID is for a permanent cause.
    ///
    /// INVALID for every cause that `check` answers with a permanent reason (jti revoked,
    /// subject or tenant cutoff, key revoked or unknown, session revoked or expired, family
    /// revoked); else SUSPENDED for a suspension in force or a suspended tenant; else VALID.
    /// Permanent causes are looked at first: a revoked token of a suspended tenant is INVALID.
    /// INVALID for a session's idle expiry is not lasting; every other INVALID is.
    pub fn verdict(&self, f: &EntryFacts) -> Verdict {
        let (index, tenant, now) = (self.index, self.tenant, self.now);
        let tenant_state = index.tenant(tenant);
        let cutoff = match &f.sub {
            Some(sub) => index.min_iat(tenant, sub),
            None => tenant_state.cutoff,
        };
        // A key the ring does not hold verifies nothing, so its tokens are refused everywhere.
        let key_gone = self
            .keys
            .get(tenant, &f.kid)
            .is_none_or(|k| k.status == KeyStatus::Revoked);
        let family_revoked = f
            .fam
            .as_deref()
            .is_some_and(|fam| index.family_revoked(tenant, fam));
        let session_revoked = f
            .sid
            .as_deref()
            .is_some_and(|sid| index.session_revoked(tenant, sid));
        // No row: never created on this node's store, or purged after its tokens expired.
        // `check` lets such a token through, and so does the list.
        let idle_expiry = f
            .sid
            .as_deref()
            .and_then(|sid| index.session_times(tenant, sid))
            .map(|t| t.expires);
        let jti = index.jti_until(tenant, &f.jti);
        let verdict = |status, due, lasting| Verdict {
            status,
            due,
            lasting,
        };
        if cutoff.is_some_and(|c| f.iat < c)
            || key_gone
            || family_revoked
            || session_revoked
            || jti == Some(None)
        {
            return verdict(Status::Invalid, None, true);
        }
        let session_deadline = match idle_expiry {
            Some(expires) if now >= expires => return verdict(Status::Invalid, None, false),
            other => other,
        };
        match jti {
            // Due at whichever comes first: the suspension lifting, or the session going idle
            // (which turns it INVALID while still suspended).
            Some(Some(until)) if until > now => {
                let due = session_deadline.map_or(until, |d| d.min(until));
                verdict(Status::Suspended, Some(due), false)
            }
            _ if tenant_state.suspended => verdict(Status::Suspended, session_deadline, false),
            _ => verdict(Status::Valid, session_deadline, false),
        }
    }
}

/// Which entries a change to the revocation state can touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affects<'a> {
    Jti(&'a str),
    Subject(&'a str),
    Session(&'a str),
    Key(&'a str),
    Family(&'a str),
    /// Tenant-wide: a tenant cutoff, suspension or resumption, a key reload.
    All,
}

/// Where an entry lives: the list's number in this registry and the index in it.
type Slot = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Field {
    Jti,
    Subject,
    Session,
    Key,
    Family,
}

struct Entry {
    facts: EntryFacts,
    /// When the entry is next due for a re-judgement, if ever (see [`Judge::verdict`]).
    due: Option<i64>,
    /// Its INVALID is for a permanent cause ([`Verdict::lasting`]).
    lasting: bool,
}

/// What a re-judgement may change (module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejudge {
    /// A new entry: it takes the verdict as it is.
    Fresh,
    /// A change to its session: an INVALID that is not lasting may be undone.
    Revive,
    /// Anything else: an INVALID stays.
    Keep,
}

struct List {
    id: String,
    bits: StatusList,
    entries: HashMap<u32, Entry>,
}

/// One tenant's status lists, as this node holds them.
#[derive(Default)]
pub struct TenantStatusLists {
    lists: Vec<List>,
    by_id: HashMap<String, u32>,
    lookup: HashMap<(Field, u64), SmallVec<[Slot; 1]>>,
    schedule: BinaryHeap<Reverse<(i64, Slot)>>,
    hasher: foldhash::quality::RandomState,
}

impl TenantStatusLists {
    /// Adds an empty list of `size` entries; a list already held is left as it is.
    pub fn add_list(&mut self, id: &str, size: usize) -> Result<(), StatusListError> {
        if self.by_id.contains_key(id) {
            return Ok(());
        }
        let bits = StatusList::new(size)?;
        self.push_list(id, bits);
        Ok(())
    }

    fn push_list(&mut self, id: &str, bits: StatusList) {
        let no = u32::try_from(self.lists.len()).unwrap_or(u32::MAX);
        self.lists.push(List {
            id: id.to_owned(),
            bits,
            entries: HashMap::new(),
        });
        self.by_id.insert(id.to_owned(), no);
    }

    /// The ids of the lists held, oldest first.
    pub fn list_ids(&self) -> impl Iterator<Item = &str> {
        self.lists.iter().map(|l| l.id.as_str())
    }

    /// Entries held in all lists.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a token's entry and judges it. An entry already at `idx` is replaced (a replay
    /// of the same allocation carries the same facts).
    pub fn insert(
        &mut self,
        list: &str,
        idx: u32,
        facts: EntryFacts,
        judge: &Judge<'_>,
    ) -> Result<Status, StatusListError> {
        let no = self.list_no(list)?;
        let len = self.lists[no as usize].bits.len();
        if idx as usize >= len {
            return Err(StatusListError::OutOfRange {
                idx: idx as usize,
                len,
            });
        }
        self.remove(list, idx);
        let slot = (no, idx);
        for key in self.keys_of(&facts) {
            self.lookup.entry(key).or_default().push(slot);
        }
        self.lists[no as usize].entries.insert(
            idx,
            Entry {
                facts,
                due: None,
                lasting: false,
            },
        );
        // A fresh entry takes the judgement as it is, INVALID included (a token issued with a
        // key revoked in the meantime).
        self.judge_slot(slot, judge, Rejudge::Fresh);
        self.lists[no as usize].bits.get(idx as usize)
    }

    /// Forgets an entry (its row was purged): its index reads VALID again and may be given to
    /// another token.
    pub fn remove(&mut self, list: &str, idx: u32) {
        let Some(&no) = self.by_id.get(list) else {
            return;
        };
        let l = &mut self.lists[no as usize];
        let Some(entry) = l.entries.remove(&idx) else {
            return;
        };
        // The index is within the list: it was checked when the entry went in.
        let _ = l.bits.set(idx as usize, Status::Valid);
        for key in self.keys_of(&entry.facts) {
            if let Some(slots) = self.lookup.get_mut(&key) {
                slots.retain(|s| *s != (no, idx));
                if slots.is_empty() {
                    self.lookup.remove(&key);
                }
            }
        }
    }

    /// Re-judges the entries a change can touch; returns how many changed status.
    pub fn apply(&mut self, affects: Affects<'_>, judge: &Judge<'_>) -> usize {
        let slots: Vec<Slot> = match affects {
            Affects::All => self
                .lists
                .iter()
                .enumerate()
                .flat_map(|(no, l)| l.entries.keys().map(move |idx| (no as u32, *idx)))
                .collect(),
            Affects::Jti(s) => self.slots_of(Field::Jti, s),
            Affects::Subject(s) => self.slots_of(Field::Subject, s),
            Affects::Session(s) => self.slots_of(Field::Session, s),
            Affects::Key(s) => self.slots_of(Field::Key, s),
            Affects::Family(s) => self.slots_of(Field::Family, s),
        };
        let mode = match affects {
            Affects::Session(_) => Rejudge::Revive,
            _ => Rejudge::Keep,
        };
        slots
            .into_iter()
            .filter(|slot| self.judge_slot(*slot, judge, mode))
            .count()
    }

    /// Re-judges the entries whose scheduled time has come (suspensions lifted, sessions
    /// expired); returns how many changed status. Run it before serving a list.
    pub fn tick(&mut self, judge: &Judge<'_>) -> usize {
        let mut changed = 0;
        while let Some(Reverse((at, slot))) = self.schedule.peek().copied() {
            if at > judge.now {
                break;
            }
            self.schedule.pop();
            let current = self
                .lists
                .get(slot.0 as usize)
                .and_then(|l| l.entries.get(&slot.1))
                .is_some_and(|e| e.due == Some(at));
            if current && self.judge_slot(slot, judge, Rejudge::Keep) {
                changed += 1;
            }
        }
        changed
    }

    /// An entry's status as the list would serve it, if the entry exists.
    pub fn status(&self, list: &str, idx: u32) -> Option<Status> {
        let l = &self.lists[*self.by_id.get(list)? as usize];
        l.entries.get(&idx)?;
        l.bits.get(idx as usize).ok()
    }

    /// The list's `lst` text (only the chunks changed since the last call are recompressed).
    pub fn encode(&mut self, list: &str) -> Result<&str, StatusListError> {
        let no = self.list_no(list)?;
        self.lists[no as usize].bits.encode_lst()
    }

    fn list_no(&self, list: &str) -> Result<u32, StatusListError> {
        self.by_id
            .get(list)
            .copied()
            .ok_or_else(|| StatusListError::UnknownList(list.to_owned()))
    }

    fn hash(&self, field: Field, text: &str) -> (Field, u64) {
        (field, self.hasher.hash_one((field as u8, text)))
    }

    fn keys_of(&self, f: &EntryFacts) -> SmallVec<[(Field, u64); 5]> {
        let mut keys = SmallVec::new();
        keys.push(self.hash(Field::Jti, &f.jti));
        keys.push(self.hash(Field::Key, &f.kid));
        for (field, text) in [
            (Field::Subject, &f.sub),
            (Field::Session, &f.sid),
            (Field::Family, &f.fam),
        ] {
            if let Some(t) = text {
                keys.push(self.hash(field, t));
            }
        }
        keys
    }

    /// The entries whose `field` is `text`: the hash finds candidates, the entry's own string
    /// confirms them.
    fn slots_of(&self, field: Field, text: &str) -> Vec<Slot> {
        let Some(slots) = self.lookup.get(&self.hash(field, text)) else {
            return Vec::new();
        };
        slots
            .iter()
            .copied()
            .filter(|(no, idx)| {
                self.lists[*no as usize]
                    .entries
                    .get(idx)
                    .is_some_and(|e| field_of(&e.facts, field) == Some(text))
            })
            .collect()
    }

    /// Judges one entry and writes its bits; true if they changed. What an INVALID entry may
    /// become depends on `mode` (module comment).
    fn judge_slot(&mut self, (no, idx): Slot, judge: &Judge<'_>, mode: Rejudge) -> bool {
        let Some(l) = self.lists.get_mut(no as usize) else {
            return false;
        };
        let Some(entry) = l.entries.get_mut(&idx) else {
            return false;
        };
        let old = l.bits.get(idx as usize).unwrap_or(Status::Invalid);
        let stays = match mode {
            Rejudge::Fresh => false,
            Rejudge::Revive => entry.lasting,
            Rejudge::Keep => old == Status::Invalid,
        };
        if stays {
            return false;
        }
        let Verdict {
            status,
            due,
            lasting,
        } = judge.verdict(&entry.facts);
        entry.lasting = lasting;
        if due != entry.due {
            entry.due = due;
            if let Some(at) = due {
                self.schedule.push(Reverse((at, (no, idx))));
            }
        }
        l.bits.set(idx as usize, status).unwrap_or(false)
    }
}

fn field_of(f: &EntryFacts, field: Field) -> Option<&str> {
    match field {
        Field::Jti => Some(&f.jti),
        Field::Key => Some(&f.kid),
        Field::Subject => f.sub.as_deref(),
        Field::Session => f.sid.as_deref(),
        Field::Family => f.fam.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Alg;
    use crate::index::SessionTimes;
    use crate::keys::{LoadedKey, MasterKey, generate_signing_key};
    use proptest::prelude::*;
    use time::OffsetDateTime;

    const T: &str = "acme";
    const LIST: &str = "l1";
    const SIZE: usize = 1 << 17;

    struct World {
        index: RevocationIndex,
        keys: KeyRing,
        kid: String,
    }

    fn world() -> World {
        let master = MasterKey::generate();
        let rec = generate_signing_key(T, Alg::ES256, None, &master, OffsetDateTime::UNIX_EPOCH)
            .expect("key");
        let keys = KeyRing::new();
        keys.upsert(LoadedKey::load(&rec, &master).expect("load"));
        World {
            index: RevocationIndex::new(),
            keys,
            kid: rec.kid,
        }
    }

    impl World {
        fn judge(&self, now: i64) -> Judge<'_> {
            Judge {
                index: &self.index,
                keys: &self.keys,
                tenant: T,
                now,
            }
        }

        fn facts(&self, n: u32) -> EntryFacts {
            EntryFacts {
                jti: format!("jti-{n}").into(),
                sub: Some(format!("user-{}", n % 3).into()),
                sid: n.is_multiple_of(2).then(|| format!("sid-{n}").into()),
                kid: self.kid.as_str().into(),
                fam: n.is_multiple_of(5).then(|| format!("fam-{n}").into()),
                iat: 1_000 + i64::from(n),
                exp: 10_000,
            }
        }
    }

    fn lists() -> TenantStatusLists {
        let mut r = TenantStatusLists::default();
        r.add_list(LIST, SIZE).expect("list");
        r
    }

    #[test]
    fn each_revocation_kind_flips_its_entries_and_only_those() {
        let w = world();
        let mut r = lists();
        for n in 0..10 {
            let s = r.insert(LIST, n * 7, w.facts(n), &w.judge(2_000)).unwrap();
            assert_eq!(s, Status::Valid);
        }
        let status = |r: &TenantStatusLists| -> Vec<Status> {
            (0..10).map(|n| r.status(LIST, n * 7).unwrap()).collect()
        };
        use Status::{Invalid as I, Suspended as S, Valid as V};

        // A suspension: SUSPENDED until it lifts, then VALID again by the clock alone.
        w.index.insert_jti(T, "jti-1", Some(3_000));
        assert_eq!(r.apply(Affects::Jti("jti-1"), &w.judge(2_000)), 1);
        assert_eq!(status(&r), [V, S, V, V, V, V, V, V, V, V]);
        assert_eq!(r.tick(&w.judge(2_999)), 0);
        assert_eq!(r.tick(&w.judge(3_000)), 1);
        assert_eq!(status(&r), [V; 10]);

        // A jti revoked for good.
        w.index.insert_jti(T, "jti-3", None);
        r.apply(Affects::Jti("jti-3"), &w.judge(2_000));
        // A subject cut off: user-1 holds jti 1, 4 and 7 (iat 1001, 1004, 1007); only those
        // issued before the cutoff go.
        w.index.raise_subject_cutoff(T, "user-1", 1_005);
        assert_eq!(r.apply(Affects::Subject("user-1"), &w.judge(2_000)), 2);
        // A session revoked (sid-6), a family revoked (fam-5).
        w.index.revoke_session(T, "sid-6");
        r.apply(Affects::Session("sid-6"), &w.judge(2_000));
        w.index.revoke_family(T, "fam-5");
        r.apply(Affects::Family("fam-5"), &w.judge(2_000));
        assert_eq!(status(&r), [V, I, V, I, I, I, I, V, V, V]);

        // The tenant suspended: every entry not INVALID reads SUSPENDED; resumed: VALID again.
        w.index.set_tenant_suspended(T, true);
        r.apply(Affects::All, &w.judge(2_000));
        assert_eq!(status(&r), [S, I, S, I, I, I, I, S, S, S]);
        w.index.set_tenant_suspended(T, false);
        r.apply(Affects::All, &w.judge(2_000));
        assert_eq!(status(&r), [V, I, V, I, I, I, I, V, V, V]);

        // A tenant cutoff takes the rest issued before it.
        w.index.raise_tenant_cutoff(T, 1_009);
        r.apply(Affects::All, &w.judge(2_000));
        assert_eq!(status(&r), [I, I, I, I, I, I, I, I, I, V]);
    }

    #[test]
    fn the_key_revoked_or_gone_makes_its_tokens_invalid() {
        let w = world();
        let mut r = lists();
        r.insert(LIST, 0, w.facts(1), &w.judge(2_000)).unwrap();
        let mut other = w.facts(2);
        other.kid = "not-a-key".into();
        assert_eq!(
            r.insert(LIST, 1, other, &w.judge(2_000)).unwrap(),
            Status::Invalid
        );
        w.keys.upsert(LoadedKey::known_revoked(T, &w.kid));
        assert_eq!(r.apply(Affects::Key(&w.kid), &w.judge(2_000)), 1);
        assert_eq!(r.status(LIST, 0), Some(Status::Invalid));
    }

    #[test]
    fn a_session_that_expires_ends_its_tokens_at_its_idle_expiry() {
        let w = world();
        let mut r = lists();
        let f = w.facts(2); // carries sid-2
        w.index.note_session(
            T,
            "sid-2",
            SessionTimes {
                last_seen: 1_900,
                expires: 2_500,
            },
        );
        r.insert(LIST, 5, f, &w.judge(2_000)).unwrap();
        // Touched before it expires: the old due time passes and nothing changes.
        w.index.note_session(
            T,
            "sid-2",
            SessionTimes {
                last_seen: 2_400,
                expires: 3_000,
            },
        );
        r.apply(Affects::Session("sid-2"), &w.judge(2_400));
        assert_eq!(r.tick(&w.judge(2_600)), 0);
        assert_eq!(r.status(LIST, 5), Some(Status::Valid));
        assert_eq!(r.tick(&w.judge(3_000)), 1);
        assert_eq!(r.status(LIST, 5), Some(Status::Invalid));
    }

    #[test]
    fn invalid_is_final_until_the_entry_is_purged() {
        let w = world();
        let mut r = lists();
        r.insert(LIST, 9, w.facts(1), &w.judge(2_000)).unwrap();
        w.index.insert_jti(T, "jti-1", None);
        r.apply(Affects::Jti("jti-1"), &w.judge(2_000));
        // The purge drops the revocation once the token has expired: the bit stays INVALID.
        w.index.remove_jti(T, "jti-1");
        assert_eq!(r.apply(Affects::Jti("jti-1"), &w.judge(20_000)), 0);
        assert_eq!(r.status(LIST, 9), Some(Status::Invalid));
        // Then the entry's own purge frees the index, which reads VALID for its next token.
        r.remove(LIST, 9);
        assert_eq!(r.status(LIST, 9), None);
        assert_eq!(
            r.insert(LIST, 9, w.facts(4), &w.judge(20_000)).unwrap(),
            Status::Valid
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn unknown_lists_and_indices_out_of_range_are_refused() {
        let w = world();
        let mut r = lists();
        assert!(matches!(
            r.insert("nope", 0, w.facts(1), &w.judge(0)),
            Err(StatusListError::UnknownList(_))
        ));
        assert!(matches!(
            r.insert(LIST, SIZE as u32, w.facts(1), &w.judge(0)),
            Err(StatusListError::OutOfRange { .. })
        ));
        assert!(r.is_empty());
    }

    #[test]
    fn the_encoded_list_carries_the_bits() {
        let w = world();
        let mut r = lists();
        r.insert(LIST, 77, w.facts(1), &w.judge(2_000)).unwrap();
        w.index.insert_jti(T, "jti-1", Some(5_000));
        r.apply(Affects::Jti("jti-1"), &w.judge(2_000));
        let lst = r.encode(LIST).unwrap().to_owned();
        let decoded = StatusList::from_lst(2, &lst, SIZE).unwrap();
        assert_eq!(decoded.get(77).unwrap(), Status::Suspended);
        assert_eq!(decoded.get(76).unwrap(), Status::Valid);
    }

    #[test]
    fn a_session_seen_idle_here_comes_back_when_its_touch_arrives_and_a_revoked_one_never_does() {
        let w = world();
        let mut r = lists();
        let (f0, f2) = (w.facts(0), w.facts(2));
        let times = |expires| SessionTimes {
            last_seen: 0,
            expires,
        };
        w.index.note_session(T, "sid-0", times(2_010));
        w.index.note_session(T, "sid-2", times(2_010));
        r.insert(LIST, 0, f0, &w.judge(2_000)).unwrap();
        r.insert(LIST, 2, f2, &w.judge(2_000)).unwrap();
        // Idle by this node's clock and knowledge: INVALID, when the list is next built.
        assert_eq!(r.tick(&w.judge(2_010)), 2);
        assert_eq!(r.status(LIST, 0), Some(Status::Invalid));
        // Another node had extended sid-0; its touch arrives. sid-2 is revoked instead.
        w.index.note_session(T, "sid-0", times(2_100));
        r.apply(Affects::Session("sid-0"), &w.judge(2_011));
        assert_eq!(r.status(LIST, 0), Some(Status::Valid));
        w.index.revoke_session(T, "sid-2");
        r.apply(Affects::Session("sid-2"), &w.judge(2_011));
        w.index.forget_session(T, "sid-2");
        r.apply(Affects::Session("sid-2"), &w.judge(2_012));
        r.apply(Affects::All, &w.judge(2_012));
        assert_eq!(r.status(LIST, 2), Some(Status::Invalid));
        // And the revived one is scheduled again: idle at its new expiry.
        assert_eq!(r.tick(&w.judge(2_100)), 1);
        assert_eq!(r.status(LIST, 0), Some(Status::Invalid));
    }

    #[test]
    fn a_suspended_token_whose_session_goes_idle_first_turns_invalid_at_the_idle_expiry() {
        let w = world();
        let mut r = lists();
        let f = w.facts(6);
        w.index.insert_jti(T, "jti-6", Some(2_042));
        w.index.note_session(
            T,
            "sid-6",
            SessionTimes {
                last_seen: 0,
                expires: 2_001,
            },
        );
        assert_eq!(
            r.insert(LIST, 0, f, &w.judge(2_000)).unwrap(),
            Status::Suspended
        );
        assert_eq!(
            r.tick(&w.judge(2_001)),
            1,
            "due at the idle expiry, not at until"
        );
        assert_eq!(r.status(LIST, 0), Some(Status::Invalid));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        RevokeJti(u32, Option<i64>),
        CutSubject(u32, i64),
        RevokeSession(u32),
        /// The session's idle expiry is now this (a touch, here or on another node).
        TouchSession(u32, i64),
        RevokeFamily(u32),
        Suspend(bool),
        Tick(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..16, 0u32..40).prop_map(|(i, n)| Op::Insert(i, n)),
            (0u32..16).prop_map(Op::Remove),
            (0u32..40, prop::option::of(2_000i64..2_100)).prop_map(|(n, u)| Op::RevokeJti(n, u)),
            (0u32..3, 1_000i64..1_050).prop_map(|(s, c)| Op::CutSubject(s, c)),
            (0u32..40).prop_map(Op::RevokeSession),
            (0u32..4, 1_990i64..2_060).prop_map(|(n, e)| Op::TouchSession(n * 2, e)),
            (0u32..40).prop_map(Op::RevokeFamily),
            any::<bool>().prop_map(Op::Suspend),
            (0i64..20).prop_map(Op::Tick),
        ]
    }

    proptest! {
        // Reviving needs an insert, an idle expiry and a later touch of the same session in
        // one sequence: rare per case, so more cases than the default (about 1 s).
        #![proptest_config(ProptestConfig::with_cases(2_000))]
        /// After any sequence of changes, each applied through the lookups it names, every
        /// entry reads what judging it from scratch says, except that an INVALID stays: for
        /// good when its cause is permanent, and until its session is touched again when it
        /// is the session's idle expiry.
        #[test]
        fn targeted_rejudging_agrees_with_judging_everything(ops in prop::collection::vec(op(), 1..60)) {
            let w = world();
            let mut r = lists();
            let mut now = 2_000;
            // The model: for each index, its facts, the status it should read, and whether
            // that is a lasting INVALID.
            let mut model: HashMap<u32, (EntryFacts, Status, bool)> = HashMap::new();
            for op in ops {
                // The session whose entries this change may revive.
                let mut touched: Option<String> = None;
                match op {
                    Op::Insert(idx, n) => {
                        let f = w.facts(n);
                        let s = r.insert(LIST, idx, f.clone(), &w.judge(now)).unwrap();
                        let v = w.judge(now).verdict(&f);
                        prop_assert_eq!(s, v.status);
                        model.insert(idx, (f, v.status, v.lasting));
                    }
                    Op::Remove(idx) => {
                        r.remove(LIST, idx);
                        model.remove(&idx);
                    }
                    Op::RevokeJti(n, until) => {
                        w.index.insert_jti(T, &format!("jti-{n}"), until);
                        r.apply(Affects::Jti(&format!("jti-{n}")), &w.judge(now));
                    }
                    Op::CutSubject(s, c) => {
                        w.index.raise_subject_cutoff(T, &format!("user-{s}"), c);
                        r.apply(Affects::Subject(&format!("user-{s}")), &w.judge(now));
                    }
                    Op::RevokeSession(n) => {
                        w.index.revoke_session(T, &format!("sid-{n}"));
                        r.apply(Affects::Session(&format!("sid-{n}")), &w.judge(now));
                        touched = Some(format!("sid-{n}"));
                    }
                    Op::TouchSession(n, expires) => {
                        let sid = format!("sid-{n}");
                        if !w.index.session_revoked(T, &sid) {
                            w.index.note_session(T, &sid, SessionTimes { last_seen: 0, expires });
                        }
                        r.apply(Affects::Session(&sid), &w.judge(now));
                        touched = Some(sid);
                    }
                    Op::RevokeFamily(n) => {
                        w.index.revoke_family(T, &format!("fam-{n}"));
                        r.apply(Affects::Family(&format!("fam-{n}")), &w.judge(now));
                    }
                    Op::Suspend(on) => {
                        w.index.set_tenant_suspended(T, on);
                        r.apply(Affects::All, &w.judge(now));
                    }
                    Op::Tick(dt) => {
                        now += dt;
                        r.tick(&w.judge(now));
                    }
                }
                for (idx, (facts, want, lasting)) in model.iter_mut() {
                    let revivable = touched.is_some() && facts.sid.as_deref() == touched.as_deref();
                    let stays = *lasting || (*want == Status::Invalid && !revivable);
                    if !stays {
                        let v = w.judge(now).verdict(facts);
                        *want = v.status;
                        *lasting = v.lasting;
                    }
                    prop_assert_eq!(r.status(LIST, *idx), Some(*want), "index {}", idx);
                }
                prop_assert_eq!(r.len(), model.len());
            }
        }
    }
}
