//! The revocation index: every piece of revocation state, answered from memory.
//!
//! Step 4 of docs/architecture.md ("Is this token good?": tenant not suspended; not before the
//! tenant's cutoff; not before the subject's cutoff; session not revoked; jti not revoked or
//! suspended) is decided here, without a database query. The store is the source of truth; this
//! index is built from it at start-up and updated after every committed write (through the
//! server's mirror), so it can only ever lag the store, never lead it.
//!
//! Memory: the budget (docs/architecture.md) is 16 bytes per revoked jti, which this layout does
//! not meet yet (docs/benchmarks.md). A jti entry is a 128-bit keyed hash of (tenant, jti) plus
//! an 8-byte `until`, a 24-byte slot; with hashbrown's control byte and a load factor between
//! 7/16 and 7/8, that is 29–57 bytes per entry. We do not keep the jti string: the verify
//! response reads the full record from the store when it needs it.
//!
//! Hash collisions: two different (tenant, jti) pairs sharing a 128-bit hash would make the second
//! look revoked. That can only *reject* a token, never accept one (fail closed), and the hash is
//! keyed with a per-process random seed so nobody can aim for a collision or for a degenerate
//! bucket distribution (HashDoS).
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

use crate::random;
use crate::reason::Reason;
use crate::secret::debug_fields;
use crate::tenant::TenantState;

/// What the index needs to know about a token whose signature and claims already checked out.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub jti: &'a str,
    pub sub: Option<&'a str>,
    pub iat: i64,
    pub sid: Option<&'a str>,
}

/// 128-bit keyed hash of a (tenant, name) pair. Two u64 halves rather than a u128 keep the
/// alignment at 8, so a (key, until) slot is 24 bytes, not 32.
type Key = (u64, u64);

/// A revoked jti: `PERMANENT`, else the unix second its suspension lifts. An i64 costs nothing
/// over a u32 here (the slot is padded to 24 bytes by the key's alignment either way) and keeps
/// every `until` exact, including ones already in the past.
type Until = i64;
const PERMANENT: Until = i64::MIN;

/// The keys are already uniformly distributed keyed hashes, so re-hashing them with SipHash
/// would only cost time: this hasher passes the low half through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a key type other than `Key` were used; fold bytes in so it still works.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // A tuple key writes both halves; xor keeps whichever bits the table uses well mixed.
        self.0 ^= n;
    }
}

type FastMap<V> = HashMap<Key, V, BuildHasherDefault<PassThrough>>;
type FastSet = HashSet<Key, BuildHasherDefault<PassThrough>>;

/// What the index knows of a server-side session that is not revoked: enough to reject the
/// tokens carrying its `sid` once it has expired, and to slide its idle expiry on this node
/// between two (coalesced) write-backs to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    /// Unix seconds of the latest activity seen.
    pub last_seen: i64,
    /// Unix seconds, exclusive: the session's idle expiry. It never passes the absolute expiry
    /// (`SessionRecord::touch` clamps it), so it alone says when the session ends.
    pub expires: i64,
}

#[derive(Default)]
struct State {
    jtis: FastMap<Until>,
    subjects: FastMap<i64>,
    revoked_sessions: FastSet,
    /// Every session row the store holds that is not revoked, expired ones included: tokens of
    /// an expired session may outlive it, and must keep failing until the purge (which waits
    /// for them to have expired) removes the row and this entry with it.
    sessions: FastMap<SessionTimes>,
    /// Refresh families revoked (reuse detected, or revoked through RFC 7009): their refresh
    /// tokens and the access tokens minted from them (which carry `fam`) are rejected.
    revoked_families: FastSet,
    tenants: HashMap<String, TenantState>,
}

pub struct RevocationIndex {
    seed: u64,
    // One RwLock over all maps: a check takes the read lock once (uncontended, tens of ns) and sees
    // a consistent state across maps. Writes are rare next to checks and short (a batch of 10,000
    // inserts holds the lock for about a millisecond), so a sharded or lock-free map would add
    // complexity without moving the median.
    state: RwLock<State>,
}

impl Default for RevocationIndex {
    fn default() -> Self {
        Self::new()
    }
}

// The seed stays out: knowing it is what would let someone craft colliding keys.
debug_fields!(RevocationIndex { jtis: len() });

impl RevocationIndex {
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        random::fill(&mut seed);
        RevocationIndex {
            seed: u64::from_le_bytes(seed),
            state: RwLock::new(State::default()),
        }
    }

    fn key(&self, tenant: &str, name: &str) -> Key {
        // The length prefix makes ("ab", "c") and ("a", "bc") distinct inputs.
        let mut h = xxhash_rust::xxh3::Xxh3::with_seed(self.seed);
        h.update(&(tenant.len() as u64).to_le_bytes());
        h.update(tenant.as_bytes());
        h.update(name.as_bytes());
        let v = h.digest128();
        ((v >> 64) as u64, v as u64)
    }

    // A poisoned lock means a writer panicked mid-update. Every write below is a single map
    // operation that cannot leave the maps inconsistent, so the data is still sound: keep serving
    // it rather than turning one bug into a permanent outage of every check.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a revoked jti; `until` makes it a suspension that lifts at that unix second.
    /// Re-inserting replaces the previous state for that jti.
    pub fn insert_jti(&self, tenant: &str, jti: &str, until: Option<i64>) {
        let key = self.key(tenant, jti);
        self.write().jtis.insert(key, encode_until(until));
    }

    /// Inserts many revocations under one lock acquisition (start-up, batch revocations).
    pub fn insert_many<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a str, Option<i64>)>,
    ) {
        // Hash outside the lock, so checks are not held up by the hashing of a large batch.
        let keyed: Vec<(Key, Until)> = items
            .into_iter()
            .map(|(t, j, u)| (self.key(t, j), encode_until(u)))
            .collect();
        let mut state = self.write();
        state.jtis.reserve(keyed.len());
        state.jtis.extend(keyed);
    }

    pub fn remove_jti(&self, tenant: &str, jti: &str) {
        let key = self.key(tenant, jti);
        self.write().jtis.remove(&key);
    }

    /// The revocation state of one jti, as the index sees it at `now`.
    pub fn jti_state(&self, tenant: &str, jti: &str, now: i64) -> Option<Reason> {
        let key = self.key(tenant, jti);
        self.read().jtis.get(&key).and_then(|u| jti_reason(*u, now))
    }

    pub fn set_tenant(&self, tenant: &str, state: TenantState) {
        self.write().tenants.insert(tenant.to_owned(), state);
    }

    pub fn tenant(&self, tenant: &str) -> TenantState {
        self.read().tenants.get(tenant).copied().unwrap_or_default()
    }

    pub fn set_tenant_suspended(&self, tenant: &str, suspended: bool) {
        self.write()
            .tenants
            .entry(tenant.to_owned())
            .or_default()
            .suspended = suspended;
    }

    /// Raises the tenant cutoff: tokens with `iat < not_before_iat` are rejected. Never lowers it.
    pub fn raise_tenant_cutoff(&self, tenant: &str, not_before_iat: i64) {
        let mut state = self.write();
        let entry = state.tenants.entry(tenant.to_owned()).or_default();
        entry.cutoff = Some(
            entry
                .cutoff
                .map_or(not_before_iat, |c| c.max(not_before_iat)),
        );
    }

    /// Raises a subject cutoff (logout everywhere). Never lowers it.
    pub fn raise_subject_cutoff(&self, tenant: &str, sub: &str, not_before_iat: i64) {
        let key = self.key(tenant, sub);
        let mut state = self.write();
        let c = state.subjects.entry(key).or_insert(not_before_iat);
        *c = (*c).max(not_before_iat);
    }

    /// Forgets the tenant-wide cutoff (purged: every token it could reject has expired).
    pub fn remove_tenant_cutoff(&self, tenant: &str) {
        if let Some(t) = self.write().tenants.get_mut(tenant) {
            t.cutoff = None;
        }
    }

    pub fn remove_subject_cutoff(&self, tenant: &str, sub: &str) {
        let key = self.key(tenant, sub);
        self.write().subjects.remove(&key);
    }

    /// The `iat` a token issued now must carry at least, so that no cutoff made in this same
    /// second rejects it (see `revocation::Cutoff`).
    pub fn min_iat(&self, tenant: &str, sub: &str) -> Option<i64> {
        let key = self.key(tenant, sub);
        let state = self.read();
        let t = state.tenants.get(tenant).and_then(|t| t.cutoff);
        let s = state.subjects.get(&key).copied();
        t.max(s)
    }

    pub fn revoke_session(&self, tenant: &str, sid: &str) {
        let key = self.key(tenant, sid);
        let mut state = self.write();
        state.sessions.remove(&key);
        state.revoked_sessions.insert(key);
    }

    /// Records a session's activity and expiry (at creation, on a touch, or from the store).
    /// Both times only ever rise, so a late or replayed update never shortens what a newer one
    /// extended. A revoked session stays revoked: this does not bring it back.
    pub fn note_session(&self, tenant: &str, sid: &str, times: SessionTimes) {
        let key = self.key(tenant, sid);
        let mut state = self.write();
        if state.revoked_sessions.contains(&key) {
            return;
        }
        let entry = state.sessions.entry(key).or_insert(times);
        entry.last_seen = entry.last_seen.max(times.last_seen);
        entry.expires = entry.expires.max(times.expires);
    }

    /// What the index holds for a session that is not revoked.
    pub fn session_times(&self, tenant: &str, sid: &str) -> Option<SessionTimes> {
        let key = self.key(tenant, sid);
        self.read().sessions.get(&key).copied()
    }

    pub fn session_revoked(&self, tenant: &str, sid: &str) -> bool {
        let key = self.key(tenant, sid);
        self.read().revoked_sessions.contains(&key)
    }

    /// Drops every trace of a session whose row the purge deleted.
    pub fn forget_session(&self, tenant: &str, sid: &str) {
        let key = self.key(tenant, sid);
        let mut state = self.write();
        state.sessions.remove(&key);
        state.revoked_sessions.remove(&key);
    }

    /// Sessions held (revoked or not), for metrics.
    pub fn sessions_len(&self) -> usize {
        let state = self.read();
        state.sessions.len() + state.revoked_sessions.len()
    }

    pub fn revoke_family(&self, tenant: &str, fam: &str) {
        let key = self.key(tenant, fam);
        self.write().revoked_families.insert(key);
    }

    pub fn forget_family(&self, tenant: &str, fam: &str) {
        let key = self.key(tenant, fam);
        self.write().revoked_families.remove(&key);
    }

    /// Whether a token carrying `fam` belongs to a revoked refresh family. Separate from
    /// [`check`](Self::check) because only refresh tokens and the access tokens minted from
    /// them carry a family: every other token skips the probe.
    pub fn family_revoked(&self, tenant: &str, fam: &str) -> bool {
        let key = self.key(tenant, fam);
        self.read().revoked_families.contains(&key)
    }

    /// The whole of step 4 (docs/architecture.md), under one read lock, cheapest and broadest first.
    pub fn check(&self, tenant: &str, facts: &TokenFacts<'_>, now: i64) -> Result<(), Reason> {
        // Hash before taking the lock: the lock is then held only for the map probes.
        let jti_key = self.key(tenant, facts.jti);
        let sub_key = facts.sub.map(|s| self.key(tenant, s));
        let sid_key = facts.sid.map(|s| self.key(tenant, s));
        let state = self.read();
        if let Some(t) = state.tenants.get(tenant) {
            if t.suspended {
                return Err(Reason::TenantSuspended);
            }
            if t.cutoff.is_some_and(|c| facts.iat < c) {
                return Err(Reason::TenantRevoked);
            }
        }
        if let Some(k) = sub_key
            && state.subjects.get(&k).is_some_and(|c| facts.iat < *c)
        {
            return Err(Reason::SubjectRevoked);
        }
        // A session that has expired rejects its tokens like a revoked one: the contract has
        // the one reason for both ("revoked or expired").
        if let Some(k) = sid_key
            && (state.revoked_sessions.contains(&k)
                || state.sessions.get(&k).is_some_and(|t| now >= t.expires))
        {
            return Err(Reason::SessionRevoked);
        }
        match state.jtis.get(&jti_key).and_then(|u| jti_reason(*u, now)) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    /// Number of revoked jtis held (permanent and suspended), for the index-size metric.
    pub fn len(&self) -> usize {
        self.read().jtis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the jti table occupies (buckets × slot size + control bytes), for sizing docs and
    /// the memory benchmark.
    pub fn jti_table_bytes(&self) -> usize {
        let cap = self.read().jtis.capacity();
        // hashbrown allocates a power of two of buckets ≥ cap * 8/7, each a slot plus a control
        // byte (and a group's worth of trailing control bytes, negligible here).
        let buckets = (cap.saturating_mul(8) / 7).next_power_of_two().max(1);
        buckets * (std::mem::size_of::<(Key, Until)>() + 1)
    }
}

fn encode_until(until: Option<i64>) -> Until {
    match until {
        None => PERMANENT,
        // i64::MIN + 1 is still "long past", so a suspension is never mistaken for permanent.
        Some(u) => u.max(PERMANENT + 1),
    }
}

fn jti_reason(until: Until, now: i64) -> Option<Reason> {
    if until == PERMANENT {
        Some(Reason::Revoked)
    } else if until > now {
        Some(Reason::Suspended)
    } else {
        // The suspension has lifted by itself.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn facts<'a>(jti: &'a str, sub: Option<&'a str>, iat: i64) -> TokenFacts<'a> {
        TokenFacts {
            jti,
            sub,
            iat,
            sid: None,
        }
    }

    #[test]
    fn permanent_and_suspended_jtis() {
        let idx = RevocationIndex::new();
        idx.insert_jti("acme", "a", None);
        idx.insert_jti("acme", "b", Some(2_000));
        assert_eq!(
            idx.check("acme", &facts("a", None, 0), 1_000),
            Err(Reason::Revoked)
        );
        assert_eq!(
            idx.check("acme", &facts("b", None, 0), 1_999),
            Err(Reason::Suspended)
        );
        assert_eq!(idx.check("acme", &facts("b", None, 0), 2_000), Ok(()));
        assert_eq!(idx.check("acme", &facts("c", None, 0), 1_000), Ok(()));
        idx.remove_jti("acme", "b");
        assert_eq!(idx.check("acme", &facts("b", None, 0), 1_000), Ok(()));
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn tenants_are_isolated() {
        let idx = RevocationIndex::new();
        idx.insert_jti("acme", "x", None);
        idx.raise_subject_cutoff("acme", "alice", 100);
        idx.set_tenant_suspended("acme", true);
        assert_eq!(
            idx.check("globex", &facts("x", Some("alice"), 50), 0),
            Ok(())
        );
        // Length-prefixing keeps ("ac", "mex") from meeting ("acme", "x").
        assert_eq!(idx.check("ac", &facts("mex", None, 0), 0), Ok(()));
    }

    #[test]
    fn order_of_checks_reports_the_broadest_reason() {
        let idx = RevocationIndex::new();
        idx.insert_jti("t", "j", None);
        idx.raise_subject_cutoff("t", "s", 10);
        idx.raise_tenant_cutoff("t", 10);
        idx.revoke_session("t", "ses-1");
        let mut f = facts("j", Some("s"), 5);
        f.sid = Some("ses-1");
        assert_eq!(idx.check("t", &f, 0), Err(Reason::TenantRevoked));
        idx.set_tenant_suspended("t", true);
        assert_eq!(idx.check("t", &f, 0), Err(Reason::TenantSuspended));
        idx.set_tenant_suspended("t", false);
        f.iat = 10;
        assert_eq!(idx.check("t", &f, 0), Err(Reason::SessionRevoked));
        f.sid = None;
        assert_eq!(idx.check("t", &f, 0), Err(Reason::Revoked));
    }

    #[test]
    fn cutoffs_only_rise_and_are_exclusive() {
        let idx = RevocationIndex::new();
        idx.raise_subject_cutoff("t", "s", 100);
        idx.raise_subject_cutoff("t", "s", 50);
        assert_eq!(
            idx.check("t", &facts("j", Some("s"), 99), 0),
            Err(Reason::SubjectRevoked)
        );
        assert_eq!(idx.check("t", &facts("j", Some("s"), 100), 0), Ok(()));
        assert_eq!(idx.check("t", &facts("j", Some("other"), 1), 0), Ok(()));
        idx.raise_tenant_cutoff("t", 200);
        idx.raise_tenant_cutoff("t", 150);
        assert_eq!(idx.min_iat("t", "s"), Some(200));
        assert_eq!(idx.min_iat("t", "nobody"), Some(200));
        assert_eq!(idx.min_iat("u", "s"), None);
    }

    #[test]
    fn suspension_in_the_past_is_not_permanent() {
        let idx = RevocationIndex::new();
        idx.insert_jti("t", "j", Some(-5));
        assert_eq!(idx.check("t", &facts("j", None, 0), 0), Ok(()));
    }

    #[test]
    fn memory_per_jti_stays_under_budget() {
        let idx = RevocationIndex::new();
        let jtis: Vec<String> = (0..100_000).map(|i| format!("jti-{i}")).collect();
        idx.insert_many(jtis.iter().map(|j| ("t", j.as_str(), None)));
        assert_eq!(idx.len(), 100_000);
        let per = idx.jti_table_bytes() / idx.len();
        assert!(per <= 64, "{per} bytes per jti");
    }

    fn with_sid<'a>(jti: &'a str, sid: &'a str) -> TokenFacts<'a> {
        TokenFacts {
            sid: Some(sid),
            ..facts(jti, None, 0)
        }
    }

    fn times(last_seen: i64, expires: i64) -> SessionTimes {
        SessionTimes { last_seen, expires }
    }

    #[test]
    fn expired_and_revoked_sessions_reject_their_tokens() {
        let idx = RevocationIndex::new();
        idx.note_session("t", "ses-a", times(0, 100));
        assert_eq!(idx.check("t", &with_sid("j", "ses-a"), 99), Ok(()));
        // Exclusive, like `exp`.
        assert_eq!(
            idx.check("t", &with_sid("j", "ses-a"), 100),
            Err(Reason::SessionRevoked)
        );
        // A touch slides it; a late, older update does not shorten it again.
        idx.note_session("t", "ses-a", times(90, 150));
        idx.note_session("t", "ses-a", times(50, 110));
        assert_eq!(idx.session_times("t", "ses-a"), Some(times(90, 150)));
        assert_eq!(idx.check("t", &with_sid("j", "ses-a"), 120), Ok(()));
        // Revoked: rejected at once, and a replayed touch does not revive it.
        idx.revoke_session("t", "ses-a");
        idx.note_session("t", "ses-a", times(95, 500));
        assert!(idx.session_revoked("t", "ses-a"));
        assert_eq!(idx.session_times("t", "ses-a"), None);
        assert_eq!(
            idx.check("t", &with_sid("j", "ses-a"), 120),
            Err(Reason::SessionRevoked)
        );
        // Another tenant's session of the same id, and an unknown sid, are unaffected.
        assert_eq!(idx.check("u", &with_sid("j", "ses-a"), 120), Ok(()));
        assert_eq!(idx.check("t", &with_sid("j", "ses-b"), 120), Ok(()));
        idx.forget_session("t", "ses-a");
        assert_eq!(idx.sessions_len(), 0);
    }

    #[test]
    fn revoked_families() {
        let idx = RevocationIndex::new();
        idx.revoke_family("t", "rf-1");
        assert!(idx.family_revoked("t", "rf-1"));
        assert!(!idx.family_revoked("u", "rf-1"));
        assert!(!idx.family_revoked("t", "rf-2"));
        idx.forget_family("t", "rf-1");
        assert!(!idx.family_revoked("t", "rf-1"));
    }

    #[derive(Debug, Clone)]
    enum SessionOp {
        Note(u8, i64, i64),
        Revoke(u8),
        Forget(u8),
        Check(u8, i64),
    }

    fn session_op() -> impl Strategy<Value = SessionOp> {
        prop_oneof![
            (0u8..6, 0i64..100, 0i64..100).prop_map(|(s, l, e)| SessionOp::Note(s, l, e)),
            (0u8..6).prop_map(SessionOp::Revoke),
            (0u8..6).prop_map(SessionOp::Forget),
            (0u8..6, 0i64..100).prop_map(|(s, n)| SessionOp::Check(s, n)),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Revoke(u8, u8, Option<i64>),
        Lift(u8, u8),
        Check(u8, u8, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..20, proptest::option::of(-10i64..100))
                .prop_map(|(t, j, u)| Op::Revoke(t, j, u)),
            (0u8..3, 0u8..20).prop_map(|(t, j)| Op::Lift(t, j)),
            (0u8..3, 0u8..20, 0i64..100).prop_map(|(t, j, n)| Op::Check(t, j, n)),
        ]
    }

    proptest! {
        /// The index answers exactly like a plain ordered map of (tenant, jti) → until, the
        /// simplest possible model of the ledger, whatever the sequence of writes and reads.
        #[test]
        fn matches_a_simple_model(ops in proptest::collection::vec(op(), 1..200)) {
            let idx = RevocationIndex::new();
            let mut model: BTreeMap<(String, String), Option<i64>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Revoke(t, j, u) => {
                        let (t, j) = (format!("t{t}"), format!("j{j}"));
                        idx.insert_jti(&t, &j, u);
                        model.insert((t, j), u);
                    }
                    Op::Lift(t, j) => {
                        let (t, j) = (format!("t{t}"), format!("j{j}"));
                        idx.remove_jti(&t, &j);
                        model.remove(&(t, j));
                    }
                    Op::Check(t, j, now) => {
                        let (t, j) = (format!("t{t}"), format!("j{j}"));
                        let expected = match model.get(&(t.clone(), j.clone())) {
                            None => Ok(()),
                            Some(None) => Err(Reason::Revoked),
                            Some(Some(u)) if *u > now => Err(Reason::Suspended),
                            Some(Some(_)) => Ok(()),
                        };
                        prop_assert_eq!(idx.check(&t, &facts(&j, None, 0), now), expected);
                    }
                }
            }
            prop_assert_eq!(idx.len(), model.len());
        }

        /// Session state answers like the simplest model: a revoked set and a map of maxima,
        /// where revoking drops the times and forgetting drops both.
        #[test]
        fn sessions_match_a_simple_model(ops in proptest::collection::vec(session_op(), 1..200)) {
            let idx = RevocationIndex::new();
            let mut revoked: BTreeMap<u8, ()> = BTreeMap::new();
            let mut model: BTreeMap<u8, (i64, i64)> = BTreeMap::new();
            for op in ops {
                match op {
                    SessionOp::Note(s, l, e) => {
                        idx.note_session("t", &format!("s{s}"), SessionTimes { last_seen: l, expires: e });
                        if !revoked.contains_key(&s) {
                            let m = model.entry(s).or_insert((l, e));
                            *m = (m.0.max(l), m.1.max(e));
                        }
                    }
                    SessionOp::Revoke(s) => {
                        idx.revoke_session("t", &format!("s{s}"));
                        model.remove(&s);
                        revoked.insert(s, ());
                    }
                    SessionOp::Forget(s) => {
                        idx.forget_session("t", &format!("s{s}"));
                        model.remove(&s);
                        revoked.remove(&s);
                    }
                    SessionOp::Check(s, now) => {
                        let sid = format!("s{s}");
                        let dead = revoked.contains_key(&s)
                            || model.get(&s).is_some_and(|(_, e)| now >= *e);
                        let expected = if dead { Err(Reason::SessionRevoked) } else { Ok(()) };
                        prop_assert_eq!(idx.check("t", &with_sid("j", &sid), now), expected);
                        prop_assert_eq!(
                            idx.session_times("t", &sid).map(|t| (t.last_seen, t.expires)),
                            model.get(&s).copied()
                        );
                    }
                }
            }
            prop_assert_eq!(idx.sessions_len(), model.len() + revoked.len());
        }

        /// A subject cutoff rejects exactly the tokens issued before it, for any interleaving.
        #[test]
        fn subject_cutoff_is_max_of_raises(raises in proptest::collection::vec(0i64..1000, 1..20), iat in 0i64..1000) {
            let idx = RevocationIndex::new();
            for r in &raises {
                idx.raise_subject_cutoff("t", "s", *r);
            }
            let max = raises.iter().copied().max().unwrap_or(0);
            let got = idx.check("t", &facts("j", Some("s"), iat), 0);
            prop_assert_eq!(got.is_err(), iat < max);
        }
    }
}
