//! The revoked-jti table: open addressing over 64-bit fingerprints, with exact holder counts.
//! Why it is shaped like this is in the parent module's comment; this file is the mechanism.
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::PassThrough;

/// `PERMANENT`, else the unix second a suspension lifts (see `encode_until` in the parent).
pub(super) type Until = u32;
pub(super) const PERMANENT: Until = u32::MAX;

/// Key values no fingerprint takes (`fingerprint` in the parent remaps them).
pub(super) const EMPTY: u64 = 0;
pub(super) const TOMBSTONE: u64 = 1;

const GROUP: usize = 8;
/// The smallest table allocated: 32 slots, 384 bytes.
const MIN_GROUPS: usize = 4;

/// Eight keys, one cache line: a probe reads whole lines, and most probes end in the first.
///
/// A group is kept compact: its empty slots come after all its other slots, so whether it has
/// an empty slot is one comparison (its last slot) rather than eight.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group([u64; GROUP]);

impl Group {
    const EMPTY: Group = Group([EMPTY; GROUP]);

    /// The slot holding `v`.
    #[inline]
    fn position(&self, v: u64) -> Option<usize> {
        self.0.iter().position(|k| *k == v)
    }

    /// Whether the group has an empty slot (it is compact).
    #[inline]
    fn has_empty(&self) -> bool {
        self.0[GROUP - 1] == EMPTY
    }
}

/// The `until`s of one group, 32 bytes aligned so as to sit in one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Untils([Until; GROUP]);

/// Where a fingerprint is, or where it would go.
enum Probe {
    Found(usize),
    /// The first empty or tombstone slot on its probe path.
    Free(usize),
}

#[derive(Default)]
pub(super) struct JtiTable {
    groups: Vec<Group>,
    /// Parallel to the keys: slot `i` is `groups[i / 8].0[i % 8]` and `untils[i / 8].0[i % 8]`.
    untils: Vec<Untils>,
    /// Slots holding a fingerprint.
    live: usize,
    tombstones: usize,
    /// Fingerprint → holders beyond the first, for the fingerprints more than one revocation
    /// shares. Empty unless a collision (or a repeated insert) happened.
    extra: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// Sum of `extra`'s values.
    extra_total: usize,
    /// Rebuilds so far, (in place, grown), for tests.
    #[cfg(test)]
    rebuilds: (usize, usize),
}

/// The home group of `fp` among `n`: multiply-shift, which maps the 64-bit range onto `0..n`
/// for any `n` (the table's size is not a power of two), and is monotonic in `fp`.
#[inline]
fn home(fp: u64, n: usize) -> usize {
    ((u128::from(fp) * n as u128) >> 64) as usize
}

/// Groups for `n` live slots at the target load of 25/32 (0.78).
fn groups_for(n: usize) -> usize {
    n.saturating_mul(4).div_ceil(25).max(MIN_GROUPS)
}

impl JtiTable {
    /// Revocations held: slots plus the extra holders of shared fingerprints.
    pub(super) fn len(&self) -> usize {
        self.live + self.extra_total
    }

    /// The memory the table holds: both arrays, and an estimate of the side map's (hashbrown
    /// buckets of key, value and a control byte; nothing while it is empty).
    pub(super) fn bytes(&self) -> usize {
        let side = if self.extra.capacity() == 0 {
            0
        } else {
            (self.extra.capacity() * 8 / 7).next_power_of_two()
                * (std::mem::size_of::<(u64, u32)>() + 1)
        };
        self.groups.capacity() * std::mem::size_of::<Group>()
            + self.untils.capacity() * std::mem::size_of::<Untils>()
            + side
    }

    /// Fills beyond which an insert into an empty slot rebuilds: 7/8 of the slots.
    fn max_fill(&self) -> usize {
        self.groups.len() * (GROUP - 1)
    }

    #[inline]
    fn key_at(&self, i: usize) -> u64 {
        self.groups[i / GROUP].0[i % GROUP]
    }

    #[inline]
    fn until_at(&self, i: usize) -> Until {
        self.untils[i / GROUP].0[i % GROUP]
    }

    #[inline]
    fn set(&mut self, i: usize, k: u64, u: Until) {
        self.groups[i / GROUP].0[i % GROUP] = k;
        self.untils[i / GROUP].0[i % GROUP] = u;
    }

    /// The slot holding `fp`. Stops at the first group with an empty slot: an insert places a
    /// fingerprint in the first free slot of its path, so it is never beyond such a group.
    #[inline]
    fn find(&self, fp: u64) -> Option<usize> {
        let n = self.groups.len();
        if n == 0 {
            return None;
        }
        self.find_from(fp, home(fp, n))
    }

    /// `find` from the home group `g`.
    #[inline]
    fn find_from(&self, fp: u64, mut g: usize) -> Option<usize> {
        let n = self.groups.len();
        // Ends: at most 7/8 of the slots are filled, so some group has an empty slot.
        loop {
            let group = &self.groups[g];
            if let Some(s) = group.position(fp) {
                return Some(g * GROUP + s);
            }
            if group.has_empty() {
                return None;
            }
            g += 1;
            if g == n {
                g = 0;
            }
        }
    }

    fn probe(&self, fp: u64) -> Probe {
        let n = self.groups.len();
        let mut g = home(fp, n);
        let mut free = None;
        loop {
            let group = &self.groups[g];
            if let Some(s) = group.position(fp) {
                return Probe::Found(g * GROUP + s);
            }
            if free.is_none() {
                // A tombstone, or else the first empty slot (only a full group has tombstones).
                free = group
                    .position(TOMBSTONE)
                    .or_else(|| group.position(EMPTY))
                    .map(|s| g * GROUP + s);
            }
            if group.has_empty() {
                return Probe::Free(free.unwrap_or(g * GROUP + GROUP - 1));
            }
            g += 1;
            if g == n {
                g = 0;
            }
        }
    }

    /// The first empty slot on `fp`'s path, in a table without tombstones (while rebuilding:
    /// groups may have holes then, so this looks at every slot).
    fn first_empty(&self, fp: u64) -> usize {
        let n = self.groups.len();
        let mut g = home(fp, n);
        loop {
            if let Some(s) = self.groups[g].position(EMPTY) {
                return g * GROUP + s;
            }
            g += 1;
            if g == n {
                g = 0;
            }
        }
    }

    pub(super) fn get(&self, fp: u64) -> Option<Until> {
        let n = self.groups.len();
        if n == 0 {
            return None;
        }
        let g = home(fp, n);
        // The home group's `until`s are read along with its keys rather than after them: a
        // revoked jti nearly always sits in its home group, so its check waits for one memory
        // round trip instead of two (in a table of hundreds of MiB, each is a cache miss).
        // `black_box` keeps the compiler from moving the read to where its value is used;
        // were it to, the answers would be the same, only slower.
        let near = std::hint::black_box(self.untils[g]);
        let i = self.find_from(fp, g)?;
        Some(if i / GROUP == g {
            near.0[i % GROUP]
        } else {
            self.until_at(i)
        })
    }

    /// One more revocation under `fp`. A fingerprint already held gains a holder, and keeps
    /// the more conservative `until` of the two (the larger: `PERMANENT` is `u32::MAX`).
    pub(super) fn insert(&mut self, fp: u64, until: Until) {
        debug_assert!(fp > TOMBSTONE);
        if self.groups.is_empty() {
            self.rebuild(1);
        }
        let i = match self.probe(fp) {
            Probe::Found(i) => {
                let merged = self.until_at(i).max(until);
                self.untils[i / GROUP].0[i % GROUP] = merged;
                *self.extra.entry(fp).or_insert(0) += 1;
                self.extra_total += 1;
                return;
            }
            Probe::Free(i) if self.key_at(i) == TOMBSTONE => {
                self.tombstones -= 1;
                i
            }
            Probe::Free(i) if self.live + self.tombstones < self.max_fill() => i,
            Probe::Free(_) => {
                self.rebuild(self.live + 1);
                self.first_empty(fp)
            }
        };
        self.set(i, fp, until);
        self.live += 1;
    }

    /// One revocation under `fp` fewer: a holder of a shared fingerprint goes (the slot stays,
    /// with its merged `until`), or the slot does.
    pub(super) fn remove(&mut self, fp: u64) {
        let Some(i) = self.find(fp) else {
            return;
        };
        if let Some(c) = self.extra.get_mut(&fp) {
            *c -= 1;
            if *c == 0 {
                self.extra.remove(&fp);
            }
            self.extra_total -= 1;
            return;
        }
        // A group that still has an empty slot ends every probe that reaches it, so no path
        // runs through it: the slot is emptied outright, the group's last entry moved into it
        // to keep the group compact (such a group has no tombstones). In a full group, a
        // tombstone keeps the paths through it intact.
        let g = i / GROUP;
        if self.groups[g].has_empty() {
            let last = g * GROUP + self.groups[g].position(EMPTY).unwrap_or(GROUP) - 1;
            let (k, u) = (self.key_at(last), self.until_at(last));
            self.set(i, k, u);
            self.set(last, EMPTY, 0);
        } else {
            self.set(i, TOMBSTONE, 0);
            self.tombstones += 1;
        }
        self.live -= 1;
    }

    /// Makes room for `additional` inserts without a rebuild among them.
    pub(super) fn reserve(&mut self, additional: usize) {
        if additional > 0 && self.live + self.tombstones + additional > self.max_fill() {
            self.rebuild(self.live + additional);
        }
    }

    /// Brings the fill (live slots and tombstones) down to at most `needed` slots at the
    /// target load: in place when the table is large enough once its tombstones are dropped,
    /// else into a larger one.
    fn rebuild(&mut self, needed: usize) {
        let target = groups_for(needed);
        #[cfg(test)]
        {
            let (in_place, grown) = &mut self.rebuilds;
            *if target <= self.groups.len() {
                in_place
            } else {
                grown
            } += 1;
        }
        if target <= self.groups.len() {
            self.rehash_in_place();
        } else {
            self.grow(target);
        }
    }

    fn grow(&mut self, groups: usize) {
        let old_groups = std::mem::replace(&mut self.groups, vec![Group::EMPTY; groups]);
        let old_untils = std::mem::replace(&mut self.untils, vec![Untils([0; GROUP]); groups]);
        self.tombstones = 0;
        // Old slot order is close to fingerprint order (homes are monotonic in the fingerprint
        // and slots sit at or just after their home), so the new table fills almost in order.
        for (g, group) in old_groups.iter().enumerate() {
            for (s, &k) in group.0.iter().enumerate() {
                if k > TOMBSTONE {
                    let i = self.first_empty(k);
                    self.set(i, k, old_untils[g].0[s]);
                }
            }
        }
    }

    /// Drops every tombstone without another allocation. Tombstones become empty slots, which
    /// cuts the paths of fingerprints placed beyond them, so every fingerprint is then moved to
    /// the first empty slot of its path: that is never past where it sits. The sweep starts
    /// just after a group that had an empty slot before: no path runs through that group, so
    /// in sweep order every path runs forward, and moving a fingerprint only empties slots
    /// ahead of the sweep, off the paths of those already placed. It takes the slots of each
    /// group in order, so every group it has passed is compact again.
    fn rehash_in_place(&mut self) {
        let n = self.groups.len();
        let Some(start) = self.groups.iter().position(Group::has_empty) else {
            // Cannot happen (the fill stays at or under 7/8); growing is right anyway.
            return self.grow(n + 1);
        };
        for group in &mut self.groups {
            for k in &mut group.0 {
                if *k == TOMBSTONE {
                    *k = EMPTY;
                }
            }
        }
        self.tombstones = 0;
        for step in 1..=n {
            let g = (start + step) % n;
            for s in 0..GROUP {
                let k = self.groups[g].0[s];
                if k <= TOMBSTONE {
                    continue;
                }
                let i = g * GROUP + s;
                let u = self.until_at(i);
                self.set(i, EMPTY, 0);
                let j = self.first_empty(k);
                self.set(j, k, u);
            }
        }
    }

    /// Checks the table's own invariants: every fingerprint reachable from its home, groups
    /// compact, tombstones only in full groups, counts right, and the fill under its ceiling.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let (mut live, mut tomb) = (0, 0);
        for (g, group) in self.groups.iter().enumerate() {
            let used = group.position(EMPTY).unwrap_or(GROUP);
            assert!(
                group.0[used..].iter().all(|k| *k == EMPTY),
                "group {g} not compact"
            );
            assert!(!group.has_empty() || group.position(TOMBSTONE).is_none());
            for s in 0..used {
                match group.0[s] {
                    TOMBSTONE => tomb += 1,
                    k => {
                        live += 1;
                        let i = g * GROUP + s;
                        assert_eq!(self.find(k), Some(i), "fingerprint {k:#x} unreachable");
                    }
                }
            }
        }
        assert_eq!((live, tomb), (self.live, self.tombstones));
        assert!(live + tomb <= self.max_fill() || self.groups.is_empty());
        assert_eq!(
            self.extra.values().map(|c| *c as usize).sum::<usize>(),
            self.extra_total
        );
        assert!(self.extra.keys().all(|fp| self.find(*fp).is_some()));
    }

    #[cfg(test)]
    pub(super) fn load(&self) -> (usize, usize, usize) {
        (self.live, self.tombstones, self.groups.len() * GROUP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn growth_keeps_the_load_between_the_target_and_seven_eighths() {
        let mut t = JtiTable::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 1..=50_000usize {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t.insert(x | 2, PERMANENT);
            let (live, tomb, slots) = t.load();
            assert_eq!(live + tomb, n);
            assert!(live * 8 <= slots * 7);
            if slots > MIN_GROUPS * GROUP {
                // Past the minimum, a table is never emptier than the target load 25/32.
                assert!(live * 32 >= slots * 25 - 32 * 8, "{live} in {slots}");
            }
        }
        t.check_invariants();
        assert!(t.bytes() / t.len() <= 16);
    }

    #[test]
    fn reserve_rebuilds_once() {
        let mut t = JtiTable::default();
        t.reserve(100_000);
        let slots = t.load().2;
        for k in 0..100_000u64 {
            t.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 2, 5);
        }
        assert_eq!(t.load().2, slots);
        assert_eq!(t.rebuilds, (0, 1), "one rebuild, the reserve's");
        assert_eq!(t.len(), 100_000);
        t.check_invariants();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, Until),
        Remove(u64),
        Reserve(usize),
    }

    /// Few distinct fingerprints, so that inserts repeat and removals find them; skewed to a
    /// narrow range, so that one region of the table fills up, tombstones pile up in full
    /// groups and in-place rehashes run.
    fn op() -> impl Strategy<Value = Op> {
        let fp = prop_oneof![2u64..40, (0u64..200).prop_map(|k| (k << 56) | 2)];
        prop_oneof![
            4 => (fp.clone(), prop_oneof![Just(PERMANENT), 0u32..100])
                .prop_map(|(k, u)| Op::Insert(k, u)),
            3 => fp.prop_map(Op::Remove),
            1 => (0usize..100).prop_map(Op::Reserve),
        ]
    }

    proptest! {
        /// The table answers like a map of fingerprint → (holders, merged until), and keeps its
        /// invariants through growth, tombstones and in-place rehashes.
        #[test]
        fn matches_a_counting_model(ops in proptest::collection::vec(op(), 1..600)) {
            let mut t = JtiTable::default();
            let mut model: BTreeMap<u64, (usize, Until)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, u) => {
                        t.insert(k, u);
                        let e = model.entry(k).or_insert((0, u));
                        *e = (e.0 + 1, e.1.max(u));
                    }
                    Op::Remove(k) => {
                        t.remove(k);
                        if let Some(e) = model.get_mut(&k) {
                            e.0 -= 1;
                            if e.0 == 0 {
                                model.remove(&k);
                            }
                        }
                    }
                    Op::Reserve(n) => t.reserve(n),
                }
                t.check_invariants();
            }
            for k in (2u64..40).chain((0u64..200).map(|k| (k << 56) | 2)) {
                prop_assert_eq!(t.get(k), model.get(&k).map(|e| e.1));
            }
            prop_assert_eq!(t.len(), model.values().map(|e| e.0).sum::<usize>());
        }
    }

    proptest! {
        /// In-place rehashes of random layouts: a table filled to its ceiling (with shared
        /// fingerprints among its keys), a random part removed, then a reserve and the inserts
        /// it made room for. Whatever the rebuild was, the answers and counts hold.
        #[test]
        fn rebuilds_keep_every_answer(
            seed in any::<u64>(),
            base in 0usize..300,
            removed_percent in 0u64..100,
            more in 0usize..400,
        ) {
            let mut t = JtiTable::default();
            t.reserve(base);
            let mut x = seed;
            let mut next = || {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                // A quarter of them in a narrow range (long probe paths), some repeated.
                let k = if x >> 62 == 0 { (x >> 40) % 64 } else { x >> 1 };
                k.max(2)
            };
            let mut model: BTreeMap<u64, (usize, Until)> = BTreeMap::new();
            fn add(t: &mut JtiTable, m: &mut BTreeMap<u64, (usize, Until)>, k: u64, u: Until) {
                t.insert(k, u);
                let e = m.entry(k).or_insert((0, u));
                *e = (e.0 + 1, e.1.max(u));
            }
            while t.live + t.tombstones < t.max_fill() {
                let k = next();
                add(&mut t, &mut model, k, (k % 97) as Until);
            }
            let keys: Vec<u64> = model.keys().copied().collect();
            for k in keys {
                if k % 100 < removed_percent {
                    let e = model.get_mut(&k).map(|e| {
                        e.0 -= 1;
                        e.0
                    });
                    if e == Some(0) {
                        model.remove(&k);
                    }
                    t.remove(k);
                }
            }
            t.reserve(more);
            let after_reserve = t.rebuilds;
            for _ in 0..more {
                let k = next();
                add(&mut t, &mut model, k, PERMANENT);
            }
            prop_assert_eq!(t.rebuilds, after_reserve);
            t.check_invariants();
            for (k, e) in &model {
                prop_assert_eq!(t.get(*k), Some(e.1));
            }
            prop_assert_eq!(t.len(), model.values().map(|e| e.0).sum::<usize>());
            prop_assert_eq!(t.live, model.len());
        }
    }

    #[test]
    fn in_place_rehash_drops_tombstones() {
        // Fill a table to its ceiling and remove most of it: the removals in full groups leave
        // tombstones. A reserve that the fill cannot take but the live slots can then rebuilds
        // in place: same size, no tombstones, everything still found.
        let mut t = JtiTable::default();
        t.reserve(1_000);
        let slots = t.load().2;
        let key = |k: u64| k.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 2;
        let mut next = 0;
        while t.load().0 + t.load().1 < t.max_fill() {
            t.insert(key(next), 7);
            next += 1;
        }
        let kept = next - 100..next;
        for k in 0..kept.start {
            t.remove(key(k));
        }
        t.check_invariants();
        let (live, tombstones, _) = t.load();
        assert!(tombstones > 100, "{tombstones} tombstones");
        let more = t.max_fill() - live - tombstones + 1;
        t.reserve(more);
        assert_eq!(
            t.rebuilds,
            (1, 1),
            "the first reserve grew, this one rehashed in place"
        );
        assert_eq!(t.load(), (live, 0, slots));
        t.check_invariants();
        for _ in 0..more {
            t.insert(key(next), 8);
            next += 1;
        }
        assert_eq!(t.rebuilds, (1, 1), "the reserve made room for all of them");
        t.check_invariants();
        for k in kept.clone() {
            assert_eq!(t.get(key(k)), Some(7));
        }
        for k in kept.end..next {
            assert_eq!(t.get(key(k)), Some(8));
        }
        for k in 0..kept.start {
            assert_eq!(t.get(key(k)), None);
        }
        assert_eq!(t.len(), (next - kept.start) as usize);
    }
}
