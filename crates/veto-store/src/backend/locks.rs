//! Which keys a write changes and which it depends on, said once per write in the generic
//! methods. PostgreSQL takes them as advisory locks before the write's first statement (why, and
//! why in this order: the module comment of `postgres`); SQLite, with one writer, ignores them.
//! They are part of the write, not of the backend, so they are described here, next to the
//! methods that write; only how they are taken stays in `postgres`.
use std::collections::BTreeMap;

/// More distinct keys than this in one write take the whole-store lock instead of one lock
/// per key: PostgreSQL's lock table is shared and small (`max_locks_per_transaction` × connections,
/// 6,400 by default), and a 10,000-row batch would overflow it.
pub(crate) const MAX_KEY_LOCKS: usize = 64;

/// The locks a write transaction takes before its first write.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    /// Lock id → exclusive? Ordered, so every transaction takes its locks in the same order.
    keys: BTreeMap<i32, bool>,
    whole: bool,
}

impl Locks {
    /// The whole store, exclusively: large batches and the purges, whose keys are only known
    /// once they ran.
    pub(crate) fn whole() -> Self {
        Locks {
            keys: BTreeMap::new(),
            whole: true,
        }
    }

    /// Whether this is the whole-store lock (then no key lock is taken).
    pub(crate) fn is_whole(&self) -> bool {
        self.whole
    }

    /// (lock id, exclusive) of every key lock, in the order they must be taken.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (i32, bool)> + '_ {
        self.keys.iter().map(|(&k, &x)| (k, x))
    }

    /// Exclusive on a key this transaction changes.
    pub(crate) fn change(mut self, parts: &[&str]) -> Self {
        self.keys.insert(lock_id(parts), true);
        self
    }

    /// Shared on a key this transaction depends on but does not change.
    pub(crate) fn depend(mut self, parts: &[&str]) -> Self {
        self.keys.entry(lock_id(parts)).or_insert(false);
        self
    }

    /// Shared on the tenant the changed rows belong to: waits for a concurrent create or
    /// suspend of that tenant to commit, so tenant changes sort before the rows that need them.
    pub(crate) fn within(self, tenant: &str) -> Self {
        self.depend(&["t", tenant])
    }

    /// The lock of a revocation (tenant, jti).
    pub(crate) fn revocation(self, tenant: &str, jti: &str) -> Self {
        self.within(tenant).change(&["r", tenant, jti])
    }

    /// The locks of a batch of revocations, given as (tenant, jti).
    pub(crate) fn revocations<'a>(keys: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut locks = Locks::default();
        for (tenant, jti) in keys {
            locks = locks.revocation(tenant, jti);
            if locks.keys.len() > MAX_KEY_LOCKS {
                return Locks::whole();
            }
        }
        locks
    }

    /// A session (tenant, id).
    pub(crate) fn session(self, tenant: &str, id: &str) -> Self {
        self.within(tenant).change(&["s", tenant, id])
    }

    /// A refresh family (tenant, id).
    pub(crate) fn family(self, tenant: &str, id: &str) -> Self {
        self.within(tenant).change(&["f", tenant, id])
    }

    /// A tenant's status lists: shared to take an index in the current list (concurrent takers
    /// of one index are ordered by the entry's primary key), exclusive to create a new list, so
    /// that two writers finding the current list full never both create one.
    pub(crate) fn status_lists(self, tenant: &str, create: bool) -> Self {
        let locks = self.within(tenant);
        if create {
            locks.change(&["l", tenant])
        } else {
            locks.depend(&["l", tenant])
        }
    }
}

/// A stable 32-bit id for a key: FNV-1a over its parts, each followed by a 0 byte so that
/// ("ab", "c") and ("a", "bc") differ. Stable across versions and machines by construction
/// (every node must compute the same id); a collision only makes two keys share a lock.
fn lock_id(parts: &[&str]) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in parts.iter().flat_map(|p| p.bytes().chain([0])) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_are_stable_and_separate_parts() {
        // Fixed values: every node (and every version) must compute the same ids.
        assert_eq!(
            lock_id(&[]),
            i32::from_ne_bytes(0x811c_9dc5_u32.to_ne_bytes())
        );
        assert_ne!(lock_id(&["ab", "c"]), lock_id(&["a", "bc"]));
        assert_eq!(lock_id(&["r", "acme", "j1"]), lock_id(&["r", "acme", "j1"]));
    }

    #[test]
    fn a_changed_key_stays_exclusive_and_large_batches_take_the_whole_store() {
        let locks = Locks::default()
            .revocation("acme", "j1")
            .change(&["t", "acme"]);
        let keys: Vec<(i32, bool)> = locks.keys().collect();
        assert_eq!(keys.len(), 2, "tenant and jti");
        assert!(keys[0].0 < keys[1].0, "key locks in id order");
        assert!(keys.iter().all(|k| k.1), "the tenant became exclusive");
        // A shared dependency does not weaken an exclusive lock taken before.
        let again = Locks::default().change(&["t", "acme"]).within("acme");
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            vec![(lock_id(&["t", "acme"]), true)]
        );

        let jtis: Vec<String> = (0..=MAX_KEY_LOCKS).map(|i| format!("j{i}")).collect();
        let many = jtis.iter().map(|j| ("acme", j.as_str()));
        assert!(Locks::revocations(many).is_whole());
    }
}
