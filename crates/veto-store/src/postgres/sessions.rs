//! What `SessionStore` needs of PostgreSQL beyond `Store`'s key locks: the locks of
//! `revoke_actor_sessions` (`PgStore::lock_actor_sessions`). The methods themselves are written
//! once for both backends (`backend/sessions.rs`), the statements in `sql::sessions`.
//!
//! # Key locks
//!
//! The rule of the module comment of `postgres` holds here too: a write that appends changes
//! first takes exclusive advisory locks on the keys it changes, so that per key the feed sorts
//! in commit order. Sessions (`s`, tenant, id), refresh families (`f`, tenant, id) and a
//! tenant's session keys (`sk`, tenant: one lock for all of them, since a rotation changes
//! several and "insert only if none is active" must see the previous insert) are keys.
//! Revoking all sessions of an actor changes sessions it only finds by reading, so it locks
//! the actor (`sa`, tenant, actor type, actor id) exclusively and the sessions it read, then
//! reads again: creating a session takes the actor lock shared, so once the actor lock is held
//! no session of the actor can appear, and if one appeared between the read and the locks the
//! transaction starts over with it locked too (after [`ACTOR_LOCK_ATTEMPTS`], or with more than
//! `MAX_KEY_LOCKS` sessions, under the whole-store lock instead).
//!
//! Pre-login records and refresh rotations append no changes, so their order in the feed is not
//! at stake: they take the whole-store lock shared only, as every writer does (the purge's
//! `ctid` deletes rely on it). Their atomicity comes from PostgreSQL itself, in one statement
//! each: a consume is `DELETE … RETURNING`, and a concurrent consume of the same row waits for
//! the deleting transaction and then finds nothing; a rotation is `UPDATE … WHERE current_gen =
//! $from AND revoked_at IS NULL`, and a concurrent one waits for the row and re-evaluates its
//! condition against the committed row (READ COMMITTED's re-check), which no longer matches.
//! Neither serialises on an advisory lock, so the conformance races exercise exactly that.
//!
//! Every write that appends changes announces them (`commit_changes`); a write that turned out
//! to change nothing (a repeated revocation, a touch of an unknown session) is rolled back.
use super::{PgStore, Tx};
use crate::Result;
use crate::backend::{Backend, Locks, MAX_KEY_LOCKS, read};
use crate::sql::sessions as sql;

/// How often `revoke_actor_sessions` starts over with per-session locks before it takes the
/// whole-store lock (module comment).
const ACTOR_LOCK_ATTEMPTS: usize = 2;

impl Locks {
    /// The actor's sessions and the actor, exclusively (`revoke_actor_sessions`); the whole
    /// store when there are too many.
    fn actor_sessions(tenant: &str, actor: &[&str; 2], ids: &[String]) -> Self {
        if ids.len() >= MAX_KEY_LOCKS {
            return Locks::whole();
        }
        let actor = Locks::default()
            .within(tenant)
            .change(&["sa", tenant, actor[0], actor[1]]);
        ids.iter().fold(actor, |l, id| l.session(tenant, id))
    }
}

impl PgStore {
    /// A write transaction under which no session of the actor can appear or be revoked by
    /// anybody else until it commits (module comment).
    pub(super) async fn lock_actor_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
    ) -> Result<Tx> {
        let actor = [actor_type, actor_id];
        // Which sessions to lock: read before the transaction (a read takes no transaction id).
        let mut ids =
            sql::unrevoked_session_ids(&mut *read(self).await?, tenant, actor_type, actor_id)
                .await?;
        let mut attempt = 1;
        loop {
            let locks = if attempt > ACTOR_LOCK_ATTEMPTS {
                Locks::whole()
            } else {
                Locks::actor_sessions(tenant, &actor, &ids)
            };
            let whole = locks.is_whole();
            let mut tx = self.write(locks).await?;
            // Under the actor lock (or the whole store) no session of the actor can appear or
            // be revoked by anybody else until this commits: this read is what the update finds.
            let now = sql::unrevoked_session_ids(&mut *tx, tenant, actor_type, actor_id).await?;
            if whole || now.iter().all(|id| ids.contains(id)) {
                return Ok(tx);
            }
            // A session was created between the first read and the locks: start over with it
            // locked too (dropping `tx` rolls back a transaction that wrote nothing).
            ids = now;
            attempt += 1;
        }
    }
}
