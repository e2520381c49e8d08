//! What differs between the two backends, as one narrow trait ([`Backend`]), and the `Store` and
//! `SessionStore` methods written once over it (`store.rs`, `sessions.rs`).
//!
//! A method of the public traits is the same in both backends: which keys it locks, which
//! statements of `sql` it runs in which transaction, whether it commits its changes, what it
//! returns. What a backend brings is only how: how a read connection, a snapshot and a write
//! transaction are had (SQLite's reader pool and single `BEGIN IMMEDIATE` writer; PostgreSQL's
//! pool and advisory key locks), how a write's changes are read back at commit (and announced),
//! and the statements whose text differs by dialect (multi-row inserts, bounded deletes, the
//! feed). A write describes the keys it touches ([`Locks`]) whatever the backend, since that is
//! part of the write: PostgreSQL locks them, SQLite's single writer has no use for them.
//!
//! A trait rather than an enum of backends, so that each backend keeps its own types (its
//! connection, its write transaction) and the shared statements stay generic over `sql::Conn`
//! as they are. It is crate-private: the public traits stay object-safe (`dyn Database`), and a
//! blanket impl makes every `Backend` a `Store` and a `SessionStore`.
use std::future::Future;
use std::ops::DerefMut;

use sqlx::migrate::MigrateError;
use sqlx::pool::PoolConnection;
use sqlx::{Pool, Transaction};
use veto_core::audit::AuditEvent;
use veto_core::revocation::Revocation;

use crate::change::names;
use crate::rows::{self, ts, unavailable};
use crate::sql::{self, BoundedDelete, Conn, WriteTx, commit_if};
use crate::{Change, FeedCursor, Result, RevokeOutcome, Written};

mod locks;
mod sessions;
mod store;

pub(crate) use locks::{Locks, MAX_KEY_LOCKS};

/// One backend: a database veto keeps its state in, and how it is reached.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The sqlx database: its connections run the shared statements.
    type Db: sqlx::Database<Connection: Conn>;
    /// A write transaction, holding whatever keeps other writers off what it writes.
    type Write: WriteTx + DerefMut<Target = Connection<Self>>;

    // ---- writing ----

    /// A write transaction that holds `locks` (PostgreSQL) or the single writer (SQLite) from
    /// before its first write.
    fn write(&self, locks: Locks) -> impl Future<Output = Result<Self::Write>> + Send;

    /// `Store::insert_revocation`: one write transaction per revocation, unless the backend
    /// commits them in groups (SQLite, whose commits are one fsync each and one at a time).
    fn insert_revocation(
        &self,
        rec: &Revocation,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<Written<RevokeOutcome>>> + Send {
        async move {
            let locks = Locks::default().revocation(&rec.tenant, &rec.jti);
            let mut tx = self.write(locks).await?;
            // A concurrent identical request waits for this one's key lock (or the writer),
            // then finds the row (ON CONFLICT DO NOTHING) and reads it back: one record, one
            // audit event, one change.
            let outcome = sql::insert_revocation(&mut *tx, rec, audit).await?;
            commit_if(tx, outcome, |o| o.created || o.made_permanent).await
        }
    }

    /// A write transaction in which no session of the actor can appear or be revoked by another
    /// writer until it commits (`SessionStore::revoke_actor_sessions`).
    fn write_actor_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
    ) -> impl Future<Output = Result<Self::Write>> + Send;

    // ---- reading ----

    /// The pool for reads: single reads and keyset pages.
    fn readers(&self) -> &Pool<Self::Db>;

    /// A read-only transaction whose statements all read one snapshot.
    fn snapshot(&self) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;

    /// The feed cursor a snapshot is consistent with (see `StateSnapshot::cursor`). Run as the
    /// first statement of a `snapshot`: PostgreSQL fixes the snapshot with it.
    fn snapshot_cursor(
        conn: &mut Connection<Self>,
    ) -> impl Future<Output = Result<FeedCursor>> + Send;

    /// The changes after `cursor` (of `tenant`, or of every tenant) that a `snapshot` already
    /// sees (committed before it was taken, though after a transaction the cursor still waits
    /// for), in log order. Run in the same snapshot, after `snapshot_cursor`.
    fn included_after(
        conn: &mut Connection<Self>,
        tenant: Option<&str>,
        cursor: FeedCursor,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;

    // ---- statements the dialects write differently ----

    /// How a delete of at most n rows is written, for both purges.
    const BOUNDED_DELETE: BoundedDelete;

    /// Inserts the revocations of `items` whose (tenant, jti) is not stored yet, in as few
    /// statements as the dialect allows, and returns the (tenant, jti) of the rows inserted.
    fn insert_revocations_returning(
        conn: &mut Connection<Self>,
        items: &[(Revocation, AuditEvent)],
    ) -> impl Future<Output = Result<Vec<(String, String)>>> + Send;

    /// Inserts audit events in bulk.
    fn insert_audits(
        conn: &mut Connection<Self>,
        events: &[&AuditEvent],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Appends one change row of `kind` per (tenant, key, value), in bulk.
    fn insert_changes(
        conn: &mut Connection<Self>,
        kind: &str,
        rows: &[(&str, &str, Option<i64>)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// `Store::changes_after`: only final changes.
    fn changes_after(
        &self,
        after: FeedCursor,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;

    /// `Store::oldest_change`.
    fn oldest_change(&self) -> impl Future<Output = Result<Option<FeedCursor>>> + Send;

    /// `Store::feed_pending_since`: nothing held back unless positions can commit out of order.
    fn feed_pending_since(
        &self,
        _after: FeedCursor,
    ) -> impl Future<Output = Result<Option<i64>>> + Send {
        async { Ok(None) }
    }

    /// Whether the store answers: by default a read on the reader pool.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send {
        ping_readers(self)
    }

    // ---- the schema ----

    /// Applies this dialect's pending migrations.
    fn migrate(&self) -> impl Future<Output = std::result::Result<(), MigrateError>> + Send;

    /// How the start-up logs name the backend.
    const NAME: &'static str;
}

/// Inserts the revocations of `items` that are new, with their audit events and change rows, in
/// bulk; returns the indexes in `items` of the new ones (of a jti repeated in `items`, the first
/// occurrence, the one the database inserted).
/// `SELECT 1` on a reader connection.
pub(crate) async fn ping_readers<B: Backend + ?Sized>(b: &B) -> Result<()> {
    let mut conn = b.readers().acquire().await.map_err(unavailable)?;
    conn.exec("SELECT 1", Vec::new())
        .await
        .map_err(unavailable)?;
    Ok(())
}

pub(crate) async fn insert_new_revocations<B: Backend>(
    conn: &mut Connection<B>,
    items: &[(Revocation, AuditEvent)],
) -> Result<Vec<usize>> {
    let inserted = B::insert_revocations_returning(conn, items).await?;
    let created = rows::first_occurrences(items, inserted);
    if created.is_empty() {
        return Ok(created);
    }
    let audits: Vec<&AuditEvent> = created.iter().map(|&i| &items[i].1).collect();
    B::insert_audits(conn, &audits).await?;
    let changes: Vec<_> = created
        .iter()
        .map(|&i| {
            let r = &items[i].0;
            (r.tenant.as_str(), r.jti.as_str(), r.until.map(ts))
        })
        .collect();
    B::insert_changes(conn, names::REVOCATION, &changes).await?;
    Ok(created)
}

/// A backend's connection: what `sql` runs on.
pub(crate) type Connection<B> = <<B as Backend>::Db as sqlx::Database>::Connection;

/// A pooled reader connection, for single reads through `sql`.
pub(crate) async fn read<B: Backend>(backend: &B) -> Result<PoolConnection<B::Db>> {
    backend.readers().acquire().await.map_err(unavailable)
}

/// Commits a write whose changes may be none: the changes when `wrote`, else a plain commit (no
/// read-back, no announcement), because the write may still have changed rows no node keeps
/// in memory.
async fn commit_changes_if<W: WriteTx>(tx: W, wrote: bool) -> Result<Vec<Change>> {
    if wrote {
        tx.commit_changes().await
    } else {
        tx.commit_plain().await?;
        Ok(Vec::new())
    }
}
