//! The revocation index: every piece of revocation state, answered from memory.
//!
//! Step 4 of docs/architecture.md ("Is this token good?": tenant not suspended; not before the
//! tenant's cutoff; not before the subject's cutoff; session not revoked; jti not revoked or
//! suspended) is decided here, without a database query. The store is the source of truth; this
//! index is built from it at start-up and updated after every committed write (through the
//! server's mirror), so it can only ever lag the store, never lead it.
//!
//! # The jti table
//!
//! The budget (docs/architecture.md) is 16 bytes per revoked jti, for 10 million of them. A
//! general-purpose map cannot meet it: hashbrown with a 16-byte key and an 8-byte value took
//! 29–57 bytes. So the jtis live in a table of our own (`index/jtis.rs`), holding per revoked jti
//! only a 64-bit keyed fingerprint of (tenant, jti) and a 32-bit `until`: 12 bytes a slot. Not
//! the jti itself: the verify response reads the full record from the store when it needs it.
//!
//! Layout: open addressing, keys and `until`s in two parallel arrays, so that no slot pays the
//! padding a (u64, u32) pair would (16 bytes) and no control byte is needed (the key array marks
//! empty and deleted slots with two reserved values; a fingerprint equal to one is moved). Keys
//! come in groups of eight, one 64-byte cache line each, and a group's eight `until`s share
//! another line. A probe compares its home group whole and moves on to the next group only when
//! that one is full. In a table of hundreds of MiB a check is one cache miss: the line of keys
//! (for a jti not revoked, nearly every check), read together with the line of `until`s of the
//! same group (for a revoked one, which nearly always sits in its home group), rather than one
//! miss after the other. That miss is most of a check's time at 10 million jtis: a random read
//! from memory took 130–400 ns on the benchmark machine, the rest of a check about 75 ns.
//!
//! `until` in 32 bits: `u32::MAX` is permanent, anything else the unix second the suspension
//! lifts, clamped: an `until` before 1970 is held as 0, lifted (every `now` the index is given is
//! later), and one past 2106-02-07 06:28:14 UTC (`u32::MAX - 1`) is held as that second, so such a
//! suspension lifts then, early: which matters only to a token that has not expired by 2106.
//!
//! Load factor: with 12-byte slots, 16 bytes per jti means at least 3/4 of the slots in use. The
//! table is kept between 25/32 (0.78) and 7/8 full once past its minimum size (32 slots): 15.4
//! bytes per jti right after a growth, 13.7 just before the next. At 7/8 it is rebuilt at 25/32,
//! a growth of 1.12 where the usual doubling would leave it half empty (24 bytes a jti). The
//! number of groups is thus not a power of two: the home group is `fingerprint × groups >> 64`
//! (multiply-shift), which maps onto any size. Removals leave tombstones, unless their group
//! still has an empty slot: such a group ends every probe that reaches it, so no probe path
//! runs through it and the slot can be emptied outright. Tombstones count towards the 7/8: when
//! the live slots alone would fit at 25/32, the rebuild is in place (same size, no allocation)
//! instead of a growth. `insert_many` (start-up loads millions at once) makes room for the whole
//! batch first, so it rebuilds at most once. The table does not shrink: after a mass purge its
//! slots wait for new revocations, and the next start-up sizes it exactly.
//!
//! The pause: a rebuild moves every entry while holding the write lock, so every check waits for
//! it, once per 12% of growth. Homes are monotonic in the fingerprint and entries sit at or just
//! after their home, so the old table is read and the new one written almost sequentially. At 10
//! million jtis a growth took 165–355 ms on the benchmark machine (2 shared cores; the index bench
//! prints it, it is not asserted anywhere). Start-up's load of 10 million into an empty index is
//! one allocation and 10 million inserts under the lock, 1.6–3.9 s with the hashing, which is done
//! before the lock is taken.
//!
//! # Collisions
//!
//! Two different (tenant, jti) pairs may share a 64-bit fingerprint. With n revoked jtis:
//! - a jti never revoked matches one of them with probability n / 2^64 per check, 5.4e-13 at
//!   n = 10 million: that token is rejected as revoked. Fail-closed, and negligible.
//! - some pair of revoked jtis shares one with probability about n² / 2^65, 2.7e-6 at 10 million:
//!   rare, but then lifting or purging one must not re-validate the other (fail-open).
//!
//! So a slot counts its holders. The server applies each change once, and each `Revoked` change
//! is a new row (a repeated revocation writes nothing; a lift or a purge deletes the row), so one
//! [`insert_jti`](RevocationIndex::insert_jti) is one holder and one
//! [`remove_jti`](RevocationIndex::remove_jti) takes one away; the slot goes with its last holder.
//! The count costs no slot anything: only holders beyond the first are kept, in a side map from
//! fingerprint to count that stays empty until a fingerprint is shared. A shared slot answers
//! with the stricter state of its holders (permanent if any was, else the later `until`) and
//! keeps it when a holder leaves, not knowing whose `until` it held: the jti left behind may stay
//! suspended past its own `until`. Fail-closed again.
//!
//! The counts fail closed when an insert is applied twice by mistake as well: the jti then has
//! two holders for one row, so its lift leaves it suspended until its own `until` (a permanent one
//! purged stays until a restart, harmless since its token has expired; `len` counts it once too
//! many meanwhile). The store's "suspension made permanent" is such a second `Revoked` of a jti
//! already held, and ends this way. What counts cannot absorb is a removal of a jti that was never
//! inserted: it takes a holder from a jti sharing its fingerprint, with probability n / 2^64 per
//! such removal (5.4e-13 at 10 million, the odds of a false rejection). The server's mirror does
//! make such removals: from the change feed it applies only the last change of a jti within one
//! read (veto-server's `mirror.rs`), so a revocation and its lift read together arrive as a lone
//! removal.
//!
//! # Hashing
//!
//! Every key is xxh3 of `len(tenant) as u64 LE || tenant || name` (the length prefix keeps
//! ("ab", "c") and ("a", "bc") apart) under a 192-byte secret drawn at random per process: all of
//! xxh3's secret is key material, nobody outside can compute a fingerprint, and so nobody can aim
//! for a collision or line jtis up on one probe path (HashDoS). xxh3 is not a MAC, but nothing here
//! reveals a fingerprint, only, at most, the timing of a check. A check writes the length and the
//! tenant once into a 64-byte stack buffer and hashes each of its names (jti, sub, sid) after them
//! in one call; longer input takes a 256-byte buffer, and past that the streaming hasher (same
//! value). The streaming hasher this replaced derived a 192-byte secret from a seed on every call.
//! The tenant map, which every check reads, hashes tenant ids with xxh3 under a random seed rather
//! than std's SipHash, which was a third of a check's instructions.
//!
//! The subject, session and family maps keep 128-bit keys (xxh3-128 under the same secret), where
//! a collision is n² / 2^129 away. Shared keys there would not fail closed: purging one subject's
//! cutoff, or forgetting one session or family, would drop the other's, and two sessions would
//! share the later expiry. Those maps hold one entry per subject with a cutoff and per session,
//! far fewer than jtis, so counting them is not worth its complexity.
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::RwLock;

use xxhash_rust::xxh3::{Xxh3, xxh3_64_with_secret, xxh3_64_with_seed, xxh3_128_with_secret};

use crate::random;
use crate::reason::Reason;
use crate::secret::debug_fields;
use crate::tenant::TenantState;

mod jtis;

use jtis::{JtiTable, PERMANENT, TOMBSTONE, Until};

/// What the index needs to know about a token whose signature and claims already checked out.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    pub jti: &'a str,
    pub sub: Option<&'a str>,
    pub iat: i64,
    pub sid: Option<&'a str>,
}

/// 128-bit keyed hash of a (tenant, name) pair, for the subject, session and family maps.
type Key = (u64, u64);

/// xxh3's secret size: the whole secret is random key material.
const SECRET_LEN: usize = 192;

/// Hash inputs up to this size are assembled on the stack and hashed in one call.
const STACK_INPUT: usize = 256;
/// Most inputs (a UUID under a short tenant id) fit this.
const SMALL_INPUT: usize = 64;

/// The keys are already uniformly distributed keyed hashes, so re-hashing them with SipHash
/// would only cost time: this hasher passes them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a key type other than `Key` or `u64` were used; fold bytes in so it
        // still works.
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

/// Hashes the tenant map's keys: xxh3 under a random seed. With std's SipHash, the tenant
/// lookup every check makes was a third of its instructions; and the seed is all the keying
/// this map needs: tenant ids are few and made by administrators.
#[derive(Clone)]
struct TenantHashing(u64);

impl Default for TenantHashing {
    fn default() -> Self {
        let mut seed = [0u8; 8];
        random::fill(&mut seed);
        TenantHashing(u64::from_le_bytes(seed))
    }
}

impl BuildHasher for TenantHashing {
    type Hasher = TenantHasher;
    fn build_hasher(&self) -> TenantHasher {
        TenantHasher(self.0)
    }
}

struct TenantHasher(u64);

impl Hasher for TenantHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u8(&mut self, b: u8) {
        // A `str` ends its bytes with 0xff: fold it in without another round of hashing.
        self.0 ^= u64::from(b);
    }
}

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
    jtis: JtiTable,
    subjects: FastMap<i64>,
    revoked_sessions: FastSet,
    /// Every session row the store holds that is not revoked, expired ones included: tokens of
    /// an expired session may outlive it, and must keep failing until the purge (which waits
    /// for them to have expired) removes the row and this entry with it.
    sessions: FastMap<SessionTimes>,
    /// Refresh families revoked (reuse detected, or revoked through RFC 7009): their refresh
    /// tokens and the access tokens minted from them (which carry `fam`) are rejected.
    revoked_families: FastSet,
    tenants: HashMap<String, TenantState, TenantHashing>,
}

pub struct RevocationIndex {
    /// Random per process: the key of every hash below.
    secret: [u8; SECRET_LEN],
    /// Test builds only: the jti fingerprint is masked with this, so that tests can make
    /// different jtis share a fingerprint.
    #[cfg(test)]
    fingerprint_mask: u64,
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

// The secret stays out: knowing it is what would let someone craft colliding keys.
debug_fields!(RevocationIndex { jtis: len() });

/// Hash input under one tenant: `len(tenant) as u64 LE || tenant || name`, for names in turn.
/// The length prefix makes ("ab", "c") and ("a", "bc") distinct inputs. The prefix and tenant
/// are written once per check, into a small stack buffer, and each name after them is hashed
/// in one call. Longer input (past 64 bytes) goes to [`hash_long`].
struct HashInput<'t> {
    tenant: &'t str,
    buf: [u8; SMALL_INPUT],
    /// Where names go in `buf`.
    at: usize,
}

impl<'t> HashInput<'t> {
    #[inline]
    fn new(tenant: &'t str) -> Self {
        let mut buf = [0u8; SMALL_INPUT];
        let at = 8 + tenant.len();
        if at <= SMALL_INPUT {
            buf[..8].copy_from_slice(&(tenant.len() as u64).to_le_bytes());
            buf[8..at].copy_from_slice(tenant.as_bytes());
        }
        HashInput { tenant, buf, at }
    }

    #[inline]
    fn hash<R>(
        &mut self,
        secret: &[u8; SECRET_LEN],
        name: &str,
        one_shot: fn(&[u8], &[u8]) -> R,
        streaming: fn(&Xxh3) -> R,
    ) -> R {
        let len = self.at + name.len();
        if len <= SMALL_INPUT {
            self.buf[self.at..len].copy_from_slice(name.as_bytes());
            one_shot(&self.buf[..len], secret)
        } else {
            hash_long(secret, self.tenant, name, one_shot, streaming)
        }
    }
}

/// [`HashInput::hash`] for input past 64 bytes: the same bytes hashed in one call from a
/// 256-byte buffer when they fit (every identifier within `limits::IDENTIFIER` under any tenant
/// id of reasonable size), else by the streaming hasher, which yields the same value (tested)
/// at the cost of copying the secret into its state. Out of line, so that the common path
/// carries neither buffer.
#[cold]
#[inline(never)]
fn hash_long<R>(
    secret: &[u8; SECRET_LEN],
    tenant: &str,
    name: &str,
    one_shot: fn(&[u8], &[u8]) -> R,
    streaming: fn(&Xxh3) -> R,
) -> R {
    let prefix = (tenant.len() as u64).to_le_bytes();
    let len = prefix.len() + tenant.len() + name.len();
    if len <= STACK_INPUT {
        let mut buf = [0u8; STACK_INPUT];
        buf[..8].copy_from_slice(&prefix);
        buf[8..8 + tenant.len()].copy_from_slice(tenant.as_bytes());
        buf[8 + tenant.len()..len].copy_from_slice(name.as_bytes());
        one_shot(&buf[..len], secret)
    } else {
        let mut h = Xxh3::with_secret(*secret);
        h.update(&prefix);
        h.update(tenant.as_bytes());
        h.update(name.as_bytes());
        streaming(&h)
    }
}

impl RevocationIndex {
    pub fn new() -> Self {
        let mut secret = [0u8; SECRET_LEN];
        random::fill(&mut secret);
        RevocationIndex {
            secret,
            #[cfg(test)]
            fingerprint_mask: u64::MAX,
            state: RwLock::new(State::default()),
        }
    }

    /// An index whose jti fingerprints keep only the bits of `mask`: `0` makes every jti
    /// share one fingerprint.
    #[cfg(test)]
    fn with_fingerprint_mask(mask: u64) -> Self {
        RevocationIndex {
            fingerprint_mask: mask,
            ..Self::new()
        }
    }

    /// The 64-bit keyed fingerprint of a jti: what the jti table holds.
    fn fingerprint(&self, tenant: &str, jti: &str) -> u64 {
        self.fingerprint_in(&mut HashInput::new(tenant), jti)
    }

    #[inline]
    fn fingerprint_in(&self, input: &mut HashInput<'_>, jti: &str) -> u64 {
        let fp = input.hash(&self.secret, jti, xxh3_64_with_secret, Xxh3::digest);
        #[cfg(test)]
        let fp = fp & self.fingerprint_mask;
        // EMPTY and TOMBSTONE mark slots; the two fingerprints equal to them move up by two.
        if fp <= TOMBSTONE { fp + 2 } else { fp }
    }

    /// The 128-bit keyed hash of a subject, session or family.
    fn key(&self, tenant: &str, name: &str) -> Key {
        self.key_in(&mut HashInput::new(tenant), name)
    }

    #[inline]
    fn key_in(&self, input: &mut HashInput<'_>, name: &str) -> Key {
        let v = input.hash(&self.secret, name, xxh3_128_with_secret, Xxh3::digest128);
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
    ///
    /// Each call counts as one more revocation, to be undone by one [`remove_jti`]: the
    /// server applies each new revocation row once. A jti already held (a suspension made
    /// permanent, or another jti sharing its fingerprint) keeps the more conservative state
    /// of the two: permanent, else the later `until` (module comment, "Collisions").
    ///
    /// [`remove_jti`]: Self::remove_jti
    pub fn insert_jti(&self, tenant: &str, jti: &str, until: Option<i64>) {
        let fp = self.fingerprint(tenant, jti);
        self.write().jtis.insert(fp, encode_until(until));
    }

    /// Inserts many revocations under one lock acquisition (start-up, batch revocations),
    /// with room made for all of them first, so the table is rebuilt at most once.
    pub fn insert_many<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a str, Option<i64>)>,
    ) {
        // Hash outside the lock, so checks are not held up by the hashing of a large batch.
        // Two arrays rather than one of pairs: 12 bytes an item rather than 16.
        let items = items.into_iter();
        let mut fps = Vec::with_capacity(items.size_hint().0);
        let mut untils = Vec::with_capacity(items.size_hint().0);
        for (t, j, u) in items {
            fps.push(self.fingerprint(t, j));
            untils.push(encode_until(u));
        }
        let mut state = self.write();
        state.jtis.reserve(fps.len());
        for (fp, u) in fps.into_iter().zip(untils) {
            state.jtis.insert(fp, u);
        }
    }

    /// A jti that was held and is held again with `until` (lifted, then revoked anew, both
    /// seen at once): one holder taken away and one added, under one lock, so that no check
    /// in between finds it absent. The holder count is unchanged.
    pub fn replace_jti(&self, tenant: &str, jti: &str, until: Option<i64>) {
        let fp = self.fingerprint(tenant, jti);
        let mut state = self.write();
        state.jtis.remove(fp);
        state.jtis.insert(fp, encode_until(until));
    }

    /// Undoes one [`insert_jti`](Self::insert_jti) of this jti (its suspension lifted, or its
    /// row purged). Nothing happens for a jti that is not held.
    pub fn remove_jti(&self, tenant: &str, jti: &str) {
        let fp = self.fingerprint(tenant, jti);
        self.write().jtis.remove(fp);
    }

    /// The revocation state of one jti, as the index sees it at `now`.
    pub fn jti_state(&self, tenant: &str, jti: &str, now: i64) -> Option<Reason> {
        let fp = self.fingerprint(tenant, jti);
        self.read().jtis.get(fp).and_then(|u| jti_reason(u, now))
    }

    /// What the index holds for one jti: `None` if it is not revoked, `Some(None)` if it is for
    /// good, `Some(Some(until))` for a suspension that lifts at the unix second `until` (which
    /// may already have passed: the table keeps it until the purge). The status list schedules
    /// its flips back to VALID with it.
    pub fn jti_until(&self, tenant: &str, jti: &str) -> Option<Option<i64>> {
        let fp = self.fingerprint(tenant, jti);
        let until = self.read().jtis.get(fp)?;
        Some((until != PERMANENT).then_some(i64::from(until)))
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
        let mut input = HashInput::new(tenant);
        let jti_fp = self.fingerprint_in(&mut input, facts.jti);
        let state = self.read();
        // The jti table is probed first though its answer comes last: its probe is the one
        // likely to miss the cache (a table of hundreds of MiB), and the processor goes on
        // with the hashing and probes below while that line is on its way.
        let jti = state.jtis.get(jti_fp);
        let sub_key = facts.sub.map(|s| self.key_in(&mut input, s));
        let sid_key = facts.sid.map(|s| self.key_in(&mut input, s));
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
        match jti.and_then(|u| jti_reason(u, now)) {
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

    /// Bytes the jti table occupies (both arrays and the side map of shared fingerprints),
    /// for sizing docs and the memory benchmark.
    pub fn jti_table_bytes(&self) -> usize {
        self.read().jtis.bytes()
    }
}

/// `until` in 32 bits: the unix second a suspension lifts, clamped to `0..=u32::MAX - 1`; an
/// `until` before 1970 has lifted already (no `now` we are given is before it), and one after
/// 2106-02-07 lifts then.
fn encode_until(until: Option<i64>) -> Until {
    match until {
        None => PERMANENT,
        Some(u) => u.clamp(0, i64::from(PERMANENT - 1)) as Until,
    }
}

fn jti_reason(until: Until, now: i64) -> Option<Reason> {
    if until == PERMANENT {
        Some(Reason::Revoked)
    } else if i64::from(until) > now {
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
        // Start-up's way: one insert_many. 200,000 rather than a million keeps this quick in a
        // debug build; the table is past its minimum size long before.
        const N: usize = 200_000;
        let idx = RevocationIndex::new();
        let jtis: Vec<String> = (0..N).map(|i| format!("jti-{i}")).collect();
        idx.insert_many(jtis.iter().map(|j| ("t", j.as_str(), None)));
        assert_eq!(idx.len(), N);
        let per = idx.jti_table_bytes() / idx.len();
        assert!(per <= 16, "{per} bytes per jti");
        // And one at a time, through every growth step: never more than 16 bytes per jti
        // after each of them (checked at the end; the load only rises between growths).
        let idx = RevocationIndex::new();
        let mut worst = 0.0f64;
        let mut bytes = 0;
        for (i, j) in jtis.iter().enumerate() {
            idx.insert_jti("t", j, Some(i as i64));
            if idx.jti_table_bytes() != bytes {
                bytes = idx.jti_table_bytes();
                if i >= 1_000 {
                    worst = worst.max(bytes as f64 / (i + 1) as f64);
                }
            }
        }
        assert!(worst <= 16.0, "{worst} bytes per jti right after a growth");
        idx.read().jtis.check_invariants();
    }

    #[test]
    fn one_shot_and_streaming_hashes_agree() {
        let idx = RevocationIndex::new();
        // Each path: the small buffer, the 256-byte one (from a long name, or a tenant that
        // leaves the small buffer no room), and the streaming hasher.
        let long = "x".repeat(STACK_INPUT);
        let cases = [
            ("acme", "j"),
            ("", ""),
            ("acme", &long[..52]),
            ("acme", &long[..53]),
            ("acme", &long[..100]),
            (&long[..60], "j"),
            ("acme", long.as_str()),
            (long.as_str(), "j"),
        ];
        for (t, n) in cases {
            let mut input = (t.len() as u64).to_le_bytes().to_vec();
            input.extend_from_slice(t.as_bytes());
            input.extend_from_slice(n.as_bytes());
            assert_eq!(
                idx.fingerprint(t, n),
                xxh3_64_with_secret(&input, &idx.secret).max(2)
            );
            let v = xxh3_128_with_secret(&input, &idx.secret);
            assert_eq!(idx.key(t, n), ((v >> 64) as u64, v as u64));
        }
        // End to end, through `check` too, which hashes its names one after another in one
        // buffer: a long name after a short one, a short one after a long one.
        idx.insert_jti("acme", &long, None);
        assert_eq!(idx.jti_state("acme", &long, 0), Some(Reason::Revoked));
        assert_eq!(idx.jti_state("acme", &long[1..], 0), None);
        assert_eq!(
            idx.check("acme", &facts(&long, Some("s"), 0), 0),
            Err(Reason::Revoked)
        );
        for (jti, sub) in [("j", &long[..100]), (&long[..100], "s"), ("jj", "s")] {
            let idx = RevocationIndex::new();
            idx.raise_subject_cutoff("acme", sub, 10);
            assert_eq!(
                idx.check("acme", &facts(jti, Some(sub), 5), 0),
                Err(Reason::SubjectRevoked)
            );
            idx.insert_jti("acme", jti, None);
            assert_eq!(
                idx.check("acme", &facts(jti, Some(sub), 10), 0),
                Err(Reason::Revoked)
            );
        }
    }

    /// Two jtis sharing a fingerprint: lifting or purging one leaves the other revoked, and
    /// the shared slot answers with the stricter of their states.
    #[test]
    fn a_shared_fingerprint_never_revalidates_the_other_jti() {
        let idx = RevocationIndex::with_fingerprint_mask(0);
        assert_eq!(idx.fingerprint("t", "a"), idx.fingerprint("u", "b"));
        idx.insert_jti("t", "a", Some(100));
        idx.insert_jti("u", "b", None);
        assert_eq!(idx.len(), 2);
        // The never-revoked jti "c" shares it too: the price of a collision, fail-closed.
        assert_eq!(idx.jti_state("t", "c", 0), Some(Reason::Revoked));
        // The suspension of "a" is lifted: "b" stays revoked.
        idx.remove_jti("t", "a");
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.jti_state("u", "b", 0), Some(Reason::Revoked));
        // "b" is purged: nothing is left.
        idx.remove_jti("u", "b");
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.jti_state("u", "b", 0), None);

        // The other way round: a permanent one purged leaves the suspension in force, for as
        // long as the later until of the two (the slot cannot know whose until it holds).
        idx.insert_jti("t", "a", None);
        idx.insert_jti("u", "b", Some(100));
        idx.remove_jti("t", "a");
        assert_eq!(idx.jti_state("u", "b", 50), Some(Reason::Revoked));
        idx.remove_jti("u", "b");
        assert!(idx.is_empty());

        // Two suspensions: the later until holds for both until one is lifted.
        idx.insert_jti("t", "a", Some(100));
        idx.insert_jti("u", "b", Some(200));
        assert_eq!(idx.jti_state("t", "a", 150), Some(Reason::Suspended));
        idx.remove_jti("u", "b");
        assert_eq!(idx.jti_state("t", "a", 99), Some(Reason::Suspended));
        idx.remove_jti("t", "a");
        assert_eq!(idx.jti_state("t", "a", 99), None);
        idx.read().jtis.check_invariants();
    }

    /// The mistake the counts make safe: one revocation applied twice. A single lift then
    /// leaves the jti suspended (until its own `until`), never the reverse.
    #[test]
    fn an_insert_applied_twice_fails_closed() {
        let idx = RevocationIndex::new();
        idx.insert_jti("t", "a", Some(100));
        idx.insert_jti("t", "a", Some(100));
        idx.remove_jti("t", "a");
        assert_eq!(idx.jti_state("t", "a", 99), Some(Reason::Suspended));
        assert_eq!(idx.jti_state("t", "a", 100), None);
        // A suspension made permanent (the store's make_permanent) is revoked for good.
        idx.insert_jti("t", "b", Some(100));
        idx.insert_jti("t", "b", None);
        assert_eq!(idx.jti_state("t", "b", 1_000), Some(Reason::Revoked));
    }

    #[test]
    fn until_is_clamped_to_32_bits() {
        let idx = RevocationIndex::new();
        let max = i64::from(u32::MAX);
        idx.insert_jti("t", "far", Some(i64::MAX));
        idx.insert_jti("t", "edge", Some(max - 1));
        idx.insert_jti("t", "u32max", Some(max));
        idx.insert_jti("t", "ancient", Some(i64::MIN));
        // A suspension past 2106 lasts until then, not for ever.
        assert_eq!(idx.jti_state("t", "far", max - 2), Some(Reason::Suspended));
        assert_eq!(idx.jti_state("t", "far", max - 1), None);
        assert_eq!(idx.jti_state("t", "edge", max - 2), Some(Reason::Suspended));
        assert_eq!(idx.jti_state("t", "edge", max - 1), None);
        // u32::MAX as a time is not "permanent".
        assert_eq!(idx.jti_state("t", "u32max", max - 1), None);
        // Before 1970: lifted at any time we are given.
        assert_eq!(idx.jti_state("t", "ancient", 0), None);
        assert_eq!(
            idx.jti_state("t", "ancient", i64::MIN),
            Some(Reason::Suspended)
        );
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

    /// Times around where the 32-bit `until` clamps, besides ordinary small ones.
    fn time() -> impl Strategy<Value = i64> {
        let max = i64::from(u32::MAX);
        prop_oneof![
            4 => -10i64..100,
            1 => prop_oneof![
                Just(i64::MIN),
                Just(-1i64),
                Just(0i64),
                (max - 3)..(max + 3),
                Just(i64::MAX),
            ],
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..20, proptest::option::of(time()))
                .prop_map(|(t, j, u)| Op::Revoke(t, j, u)),
            (0u8..3, 0u8..20).prop_map(|(t, j)| Op::Lift(t, j)),
            (0u8..3, 0u8..20, time()).prop_map(|(t, j, n)| Op::Check(t, j, n)),
        ]
    }

    /// The answer the model expects for a jti revoked `until`, at `now`: `jti_reason` on the
    /// exact time, except where the 32-bit clamp shows (before 1970, after 2106).
    fn expected(until: Option<i64>, now: i64) -> Result<(), Reason> {
        match until {
            None => Err(Reason::Revoked),
            Some(u) if u.clamp(0, i64::from(u32::MAX) - 1) > now => Err(Reason::Suspended),
            Some(_) => Ok(()),
        }
    }

    /// How strict an answer is: a collision may only ever move an answer up this order.
    fn strictness(r: Result<(), Reason>) -> u8 {
        match r {
            Ok(()) => 0,
            Err(Reason::Suspended) => 1,
            Err(_) => 2,
        }
    }

    #[derive(Debug, Clone)]
    enum JtiOp {
        Insert(u8, Option<i64>),
        Remove(u8),
        InsertMany(Vec<(u8, Option<i64>)>),
        Check(u8, i64),
    }

    fn jti_op() -> impl Strategy<Value = JtiOp> {
        let until = || proptest::option::of(time());
        prop_oneof![
            4 => (0u8..60, until()).prop_map(|(j, u)| JtiOp::Insert(j, u)),
            3 => (0u8..60).prop_map(JtiOp::Remove),
            1 => proptest::collection::vec((0u8..60, until()), 0..40).prop_map(JtiOp::InsertMany),
            3 => (0u8..60, time()).prop_map(|(j, n)| JtiOp::Check(j, n)),
        ]
    }

    /// Per jti (or per fingerprint): holders, and the merged until (`None` = permanent).
    type Counts<K> = BTreeMap<K, (usize, Option<i64>)>;

    fn count_insert<K: Ord>(m: &mut Counts<K>, k: K, u: Option<i64>) {
        // Merged like the index merges: permanent wins, else the later until.
        let e = m.entry(k).or_insert((0, u));
        e.0 += 1;
        e.1 = match (e.1, u) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    fn count_remove<K: Ord>(m: &mut Counts<K>, k: &K) {
        if let Some(e) = m.get_mut(k) {
            e.0 -= 1;
            if e.0 == 0 {
                m.remove(k);
            }
        }
    }

    proptest! {
        /// The index answers exactly like a plain ordered map of (tenant, jti) → until, the
        /// simplest possible model of the ledger, whatever the sequence of writes and reads,
        /// fed what the ledger emits: a repeated revocation of a jti writes nothing (the store
        /// inserts ON CONFLICT DO NOTHING), so it is not applied to the index either. A repeat
        /// that makes a suspension permanent is the one exception; it is covered by
        /// `an_insert_applied_twice_fails_closed` and `matches_a_counting_model`.
        #[test]
        fn matches_a_simple_model(ops in proptest::collection::vec(op(), 1..200)) {
            let idx = RevocationIndex::new();
            let mut model: BTreeMap<(String, String), Option<i64>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Revoke(t, j, u) => {
                        let (t, j) = (format!("t{t}"), format!("j{j}"));
                        if !model.contains_key(&(t.clone(), j.clone())) {
                            idx.insert_jti(&t, &j, u);
                            model.insert((t, j), u);
                        }
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
                            Some(u) => expected(*u, now),
                        };
                        prop_assert_eq!(idx.check(&t, &facts(&j, None, 0), now), expected);
                    }
                }
            }
            prop_assert_eq!(idx.len(), model.len());
        }

        /// Any sequence of inserts, removals and batches, repeats included, against two
        /// models: one counting per fingerprint, which the index must match exactly (answers
        /// and `len`), and one counting per jti, the truth, which the index may only ever be
        /// stricter than. With full fingerprints the two are the same; with 3-bit or 0-bit
        /// ones nearly every jti shares its fingerprint with others.
        #[test]
        fn matches_a_counting_model(
            mask in prop_oneof![Just(u64::MAX), Just(7u64), Just(0u64)],
            ops in proptest::collection::vec(jti_op(), 1..300),
        ) {
            let idx = RevocationIndex::with_fingerprint_mask(mask);
            let jti = |j: u8| format!("j{j}");
            let fp = |j: u8| idx.fingerprint("t", &jti(j));
            let mut by_fp: Counts<u64> = BTreeMap::new();
            let mut by_jti: Counts<u8> = BTreeMap::new();
            let answer = |m: Option<&(usize, Option<i64>)>, now| m.map_or(Ok(()), |e| expected(e.1, now));
            for op in ops {
                match op {
                    JtiOp::Insert(j, u) => {
                        idx.insert_jti("t", &jti(j), u);
                        count_insert(&mut by_fp, fp(j), u);
                        count_insert(&mut by_jti, j, u);
                    }
                    JtiOp::Remove(j) => {
                        if by_jti.contains_key(&j) {
                            idx.remove_jti("t", &jti(j));
                            count_remove(&mut by_fp, &fp(j));
                            count_remove(&mut by_jti, &j);
                        } else if mask == u64::MAX {
                            // A jti not held: nothing happens.
                            idx.remove_jti("t", &jti(j));
                        }
                        // Under a shared fingerprint, removing a jti that is not held would
                        // take another jti's holder: the index relies on never being asked to
                        // (module comment), so the test does not ask.
                    }
                    JtiOp::InsertMany(items) => {
                        let names: Vec<String> = items.iter().map(|(j, _)| jti(*j)).collect();
                        idx.insert_many(names.iter().zip(&items).map(|(n, (_, u))| ("t", n.as_str(), *u)));
                        for (j, u) in items {
                            count_insert(&mut by_fp, fp(j), u);
                            count_insert(&mut by_jti, j, u);
                        }
                    }
                    JtiOp::Check(j, now) => {
                        let got = idx.check("t", &facts(&jti(j), None, 0), now);
                        prop_assert_eq!(got, answer(by_fp.get(&fp(j)), now));
                        let truth = answer(by_jti.get(&j), now);
                        prop_assert!(strictness(got) >= strictness(truth), "{:?} for {:?}", got, truth);
                        if mask == u64::MAX {
                            prop_assert_eq!(got, truth);
                        }
                    }
                }
                prop_assert_eq!(idx.len(), by_jti.values().map(|e| e.0).sum::<usize>());
            }
            idx.read().jtis.check_invariants();
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
