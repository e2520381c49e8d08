//! The embedded store: one SQLite file.
//!
//! Durability: WAL journal with `synchronous=FULL`. In WAL mode `NORMAL` is the usual choice, but
//! it only promises that the database stays consistent: the last transactions before a power cut
//! may be rolled back. veto acknowledges a revocation only once it is durable
//! (`docs/architecture.md`, "Writes"), so every commit fsyncs the WAL (`FULL`), and an
//! acknowledged revocation survives power loss, not only a process crash. The price (one fsync
//! per commit) is why batches exist.
//!
//! Connections: two pools over the same file. One connection for writes, several for reads.
//! SQLite allows one writer at a time anyway; funnelling writes through one connection makes
//! them queue in the pool instead of racing for the file lock. Write transactions begin with
//! `BEGIN IMMEDIATE`, which takes the write lock up front and so waits (`busy_timeout`) for
//! another process (e.g. `veto purge` next to a running server) rather than failing: a deferred
//! transaction that reads first and upgrades to a write later gets `SQLITE_BUSY` at once when
//! another writer got in between. WAL lets readers proceed while the writer commits.
//!
//! Times are INTEGER unix seconds (UTC). Every time veto stores has second precision, and integers
//! compare and index cheaply; records read back carry whole seconds in UTC.
//!
//! The change log: every write that alters what a node holds in memory (revocations, lifts,
//! cutoffs, tenant and key state, API keys) appends a `changes` row in the same transaction.
//! With a single writer, `AUTOINCREMENT` positions commit in increasing order, so a reader that
//! has seen position N has seen every change up to N (the out-of-order commit problem of the
//! change feed, `docs/architecture.md`, exists only for the multi-writer PostgreSQL backend).
//!
//! The single writer is also what PostgreSQL's key locks are (`Locks`, ignored here): every
//! write transaction holds the write lock from its first statement, so writes run strictly one
//! after another, and the atomicity `SessionStore` promises (a pre-login consume, a refresh
//! rotation) follows: the second of two concurrent calls finds the row gone or the generation
//! moved. What is this backend's own is how it reaches the file (below), its multi-row
//! statements (`BATCH_CHUNK` rows each), and the group commit of single revocations.
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::migrate::MigrateError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, Transaction};
use tokio::sync::oneshot;
use veto_core::audit::AuditEvent;
use veto_core::revocation::Revocation;

use crate::backend::{Backend, Locks, insert_new_revocations};
use crate::change::ChangeKind;
use crate::rows::{
    AUDIT_COLUMNS, REVOCATION_COLUMNS, SLOW, as_stored, audit_conflict, batch_insert_error, now_ts,
    ts, unavailable,
};
use crate::sql;
use crate::{Change, FeedCursor, Result, RevokeOutcome, StoreError, Unavailable, Written};

/// Migrations are embedded at compile time from `migrations/sqlite` (`sqlx::migrate!`, which
/// needs sqlx's `macros` feature; `build.rs` makes cargo rebuild when a migration is added). The
/// binary therefore carries its schema, and sqlx records a checksum per applied migration, so
/// an edited migration is refused instead of silently diverging.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Rows per multi-row statement: SQLite limits how many values one statement binds. (PostgreSQL
/// binds whole arrays and writes a batch in one statement, however large; the HTTP layer bounds
/// a batch.)
const BATCH_CHUNK: usize = 500;

pub struct SqliteStore {
    /// Exactly one connection: see the module comment.
    writer: SqlitePool,
    reader: SqlitePool,
    /// The newest change position this process saw committed (see `Writing`).
    last_position: LastPosition,
    /// Single revocations waiting to be committed together (see `GroupCommit`).
    group: GroupCommit,
    /// Whether the last write failed and the writer connection must be replaced.
    health: Arc<WriterHealth>,
}

/// Group commit for single revocations, the hot write path.
///
/// With `synchronous=FULL` every commit waits for an fsync (about 0.7 ms on the reference
/// machine), so one transaction per revocation caps a node at roughly a thousand acknowledged
/// revocations a second however many clients send them, below the budget in
/// `docs/architecture.md` ("Performance budgets"). Instead, each caller queues its revocation
/// and then takes its turn at `turn`; whoever holds the turn commits everything queued so far in
/// one transaction and hands every waiter its own outcome. Alone, a caller commits its own
/// revocation at once (no added latency); under load, callers that arrive during one fsync share
/// the next.
///
/// Every item is durable before its caller is answered and each is idempotent on its own; one
/// failing item (an unknown tenant) fails only itself (see `insert_group`). Measured on the
/// 2-core machine (debug build, SQLite file on the local disk): ~1,300/s from one caller at a
/// time, ~5,000/s from 8 concurrent callers, ~10,000/s from 32.
#[derive(Default)]
struct GroupCommit {
    queue: std::sync::Mutex<Vec<PendingRevocation>>,
    turn: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

struct PendingRevocation {
    id: u64,
    item: (Revocation, AuditEvent),
    done: oneshot::Sender<Result<Written<RevokeOutcome>>>,
}

impl GroupCommit {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<PendingRevocation>> {
        // A panic while holding this lock cannot leave the Vec half-changed: keep going.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<PendingRevocation> {
        std::mem::take(&mut *self.queue())
    }

    /// Queues a revocation; the guard withdraws it again if the caller goes away before a
    /// turn took it, so that an abandoned request is not written later by someone else's turn.
    fn push(&self, item: (Revocation, AuditEvent)) -> (Withdraw<'_>, PendingAnswer) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        self.queue().push(PendingRevocation { id, item, done });
        (Withdraw { group: self, id }, answer)
    }
}

type PendingAnswer = oneshot::Receiver<Result<Written<RevokeOutcome>>>;

struct Withdraw<'a> {
    group: &'a GroupCommit,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        // No-op once a turn took the item (then it is written, and its answer may go unread).
        self.group.queue().retain(|p| p.id != self.id);
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

// ---- statements shared by several methods ----------------------------------------------------

type Tx = Transaction<'static, Sqlite>;

/// A write transaction, and a change position committed before it began. SQLite has one writer
/// at a time and this transaction holds the write lock from its first statement, so the changes
/// it appends are among the rows after that position: `commit` reads them back for the writer to
/// apply to its memory.
///
/// The position comes from `LastPosition`, this process's memory of the newest position it saw
/// committed, rather than a query per transaction (the hot path, group-committed revocations,
/// measured the query). Another process writing the same file (`veto purge`) makes it lag; the
/// read-back then also returns that process's changes, which are committed and in feed order,
/// so applying them early is as correct as the feed applying them a moment later.
pub(crate) struct Writing {
    tx: Tx,
    since: i64,
    last: LastPosition,
    guard: FailedWrite,
}

/// Marks the writer as failed when a write transaction ends without committing (dropped).
struct FailedWrite {
    health: Arc<WriterHealth>,
    committed: bool,
}

/// What the last write did to the one writer connection.
///
/// A write that fails (most of all a `COMMIT` on a full disk, which SQLite may answer by rolling
/// the transaction back itself) can leave the connection out of step with sqlx's own record of
/// its transaction depth: every later `BEGIN` then failed ("begin_with at non-zero transaction
/// depth") until a restart, even after space was freed. So a write transaction that ends without
/// committing marks the connection to be replaced, and the pool's `before_acquire` hook opens a
/// fresh one for the next write. It also marks the store as failing to write, which readiness
/// checks with a real write (`probe_write`) until one succeeds.
#[derive(Default)]
struct WriterHealth {
    replace_connection: AtomicBool,
    failing: AtomicBool,
}

impl WriterHealth {
    fn failed(&self) {
        self.replace_connection.store(true, Ordering::Release);
        self.failing.store(true, Ordering::Release);
    }
}

impl Drop for FailedWrite {
    fn drop(&mut self) {
        if !self.committed {
            self.health.failed();
        }
    }
}

/// See `Writing`. `UNKNOWN` until `migrate` has run (the table may not exist before).
#[derive(Clone)]
struct LastPosition(Arc<AtomicI64>);

impl LastPosition {
    const UNKNOWN: i64 = i64::MIN;

    async fn read(&self, conn: &mut sqlx::SqliteConnection) -> Result<i64> {
        let known = self.0.load(Ordering::Acquire);
        if known != Self::UNKNOWN {
            return Ok(known);
        }
        let max: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM changes")
            .fetch_one(conn)
            .await
            .map_err(unavailable)?;
        self.0.fetch_max(max, Ordering::AcqRel);
        Ok(max)
    }
}

impl Writing {
    async fn begin(
        writer: &SqlitePool,
        last: &LastPosition,
        health: &Arc<WriterHealth>,
    ) -> Result<Writing> {
        let guard = FailedWrite {
            health: health.clone(),
            committed: false,
        };
        let mut tx = writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let since = last.read(&mut tx).await?;
        Ok(Writing {
            tx,
            since,
            last: last.clone(),
            guard,
        })
    }

    /// Commits, returning the changes this transaction appended, in feed order.
    async fn commit(mut self) -> Result<Vec<Change>> {
        let changes = select_changes(&mut self.tx, self.since, None).await?;
        let last = self.last.clone();
        self.finish().await?;
        if let Some(newest) = changes.last() {
            last.0.fetch_max(newest.cursor.position, Ordering::AcqRel);
        }
        Ok(changes)
    }

    /// `COMMIT`. A failure leaves the guard uncommitted, so the connection is replaced; a
    /// success says the store writes (again).
    async fn finish(self) -> Result<()> {
        let Writing { tx, mut guard, .. } = self;
        tx.commit().await.map_err(unavailable)?;
        guard.committed = true;
        guard.health.failing.store(false, Ordering::Release);
        Ok(())
    }
}

impl sql::WriteTx for Writing {
    fn commit_changes(self) -> impl Future<Output = Result<Vec<Change>>> + Send {
        self.commit()
    }

    // Nothing appended, so nothing to read back: `LastPosition` only lags (see `Writing`).
    async fn commit_plain(self) -> Result<()> {
        self.finish().await
    }
}

impl std::ops::Deref for Writing {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for Writing {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Change rows after `position`, in order, at most `limit`. With one writer a row with a lower
/// position never commits after one with a higher position, so every row read is final.
///
/// The rows come back as one JSON array in one result row. sqlx's SQLite driver hands every
/// result row from its worker thread to the async side on its own (a channel send and a copy of
/// each value), which made reading back the 10,000 changes of a batch cost more than writing
/// them; one row of JSON costs one hand-over and a parse.
async fn select_changes(
    conn: &mut sqlx::SqliteConnection,
    position: i64,
    limit: Option<u32>,
) -> Result<Vec<Change>> {
    let json: Option<String> = sqlx::query_scalar(
        "SELECT json_group_array(json_array(position, tenant, kind, key, value, at)) \
         FROM (SELECT position, tenant, kind, key, value, at FROM changes \
               WHERE position > ? ORDER BY position LIMIT ?)",
    )
    .bind(position)
    .bind(limit.map_or(-1, i64::from))
    .fetch_one(conn)
    .await
    .map_err(unavailable)?;
    let mut rows: Vec<(i64, String, String, String, Option<i64>, i64)> =
        serde_json::from_str(json.as_deref().unwrap_or("[]"))
            .map_err(|e| Unavailable::new(format!("reading the change log: {e}")))?;
    // The aggregate's input order is the subquery's in practice, but SQL does not promise it.
    rows.sort_unstable_by_key(|r| r.0);
    Ok(rows
        .into_iter()
        .map(|(position, tenant, kind, key, value, at)| {
            let cursor = FeedCursor { xid: 0, position };
            Change::from_row(cursor, tenant, (kind, key, value), at)
        })
        .collect())
}

/// `DELETE … WHERE rowid IN (SELECT rowid … LIMIT n)`, for both purges (`sql::BoundedDelete`):
/// SQLite has no `DELETE … LIMIT` unless compiled with an option the bundled build lacks, and a
/// bounded batch keeps each write transaction (during which every other writer, i.e. every
/// revocation, waits) short. The subselect finds the victims through the expiry indexes.
fn bounded_delete_sql(table: &str, condition: &str, returning: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE rowid IN \
           (SELECT rowid FROM {table} WHERE {condition} LIMIT $2) {returning}"
    )
}

/// Commits queued single revocations in one transaction and answers each caller (see
/// `GroupCommit`). If the commit fails, every caller of the group gets that error.
async fn commit_group(
    writer: &SqlitePool,
    last: &LastPosition,
    health: &Arc<WriterHealth>,
    pending: Vec<PendingRevocation>,
) {
    let started = Instant::now();
    let (items, waiters): (Vec<_>, Vec<_>) = pending.into_iter().map(|p| (p.item, p.done)).unzip();
    let outcome = async {
        let mut tx = Writing::begin(writer, last, health).await?;
        let outcomes = insert_group(&mut tx.tx, &items).await?;
        let changes = tx.commit().await?;
        Ok::<_, StoreError>((outcomes, changes))
    }
    .await;
    match outcome {
        Ok((outcomes, changes)) => {
            // Each caller applies the change of its own revocation, and only that. A jti may
            // have two in one group (a suspension, then a permanent revocation making it
            // permanent): in item order, as they were written.
            let mut by_jti: HashMap<(String, String), std::collections::VecDeque<Change>> =
                HashMap::new();
            for c in changes {
                if let ChangeKind::Revoked { jti, .. } = &c.kind {
                    let key = (c.tenant.clone(), jti.clone());
                    by_jti.entry(key).or_default().push_back(c);
                }
            }
            for (done, o) in waiters.into_iter().zip(outcomes) {
                let o = o.map(|o| {
                    let mine = if o.created || o.made_permanent {
                        by_jti
                            .get_mut(&(o.record.tenant.clone(), o.record.jti.clone()))
                            .and_then(std::collections::VecDeque::pop_front)
                    } else {
                        None
                    };
                    Written::new(o, mine.into_iter().collect())
                });
                // A caller that went away no longer needs its answer; its write stands.
                let _ = done.send(o);
            }
        }
        Err(e) => {
            // Every caller of the group gets the error (the same one, source included).
            let e = match e {
                StoreError::Unavailable(d) => d,
                other => Unavailable::new(other.to_string()),
            };
            for done in waiters {
                let _ = done.send(Err(e.clone().into()));
            }
        }
    }
    let elapsed = started.elapsed();
    if elapsed > SLOW {
        tracing::warn!(
            revocations = items.len(),
            elapsed_ms = elapsed.as_millis() as u64,
            "slow revocation commit"
        );
    }
}

/// The writes of one group, inside `tx`: one outcome per item, in order.
///
/// Fast path: the whole group as multi-row inserts (a handful of statements, however many
/// items), inside a savepoint. If that fails (in practice: an item names an unknown tenant),
/// the savepoint is rolled back and the items are written one by one, each in its own
/// savepoint, so that the failing item fails alone and the others still commit.
async fn insert_group(
    tx: &mut Tx,
    items: &[(Revocation, AuditEvent)],
) -> Result<Vec<Result<RevokeOutcome>>> {
    let mut savepoint = sqlx::Connection::begin(&mut **tx)
        .await
        .map_err(unavailable)?;
    let fast = insert_new_revocations::<SqliteStore>(&mut savepoint, items).await;
    if let Ok(new) = fast {
        savepoint.commit().await.map_err(unavailable)?;
        let mut created = vec![false; items.len()];
        new.into_iter().for_each(|i| created[i] = true);
        let mut outcomes = Vec::with_capacity(items.len());
        for ((rec, audit), created) in items.iter().zip(created) {
            outcomes.push(if created {
                Ok(RevokeOutcome {
                    record: as_stored(rec),
                    created: true,
                    made_permanent: false,
                })
            } else {
                // A repeat (of an earlier revocation, or of an item earlier in this group):
                // the stored original, or a suspension made permanent.
                sql::repeated_revocation(&mut **tx, rec, audit).await
            });
        }
        return Ok(outcomes);
    }
    savepoint.rollback().await.map_err(unavailable)?;
    let mut outcomes = Vec::with_capacity(items.len());
    for (rec, audit) in items {
        let mut savepoint = sqlx::Connection::begin(&mut **tx)
            .await
            .map_err(unavailable)?;
        let result = sql::insert_revocation(&mut *savepoint, rec, audit).await;
        if result.is_ok() {
            savepoint.commit().await.map_err(unavailable)?;
        } else {
            savepoint.rollback().await.map_err(unavailable)?;
        }
        outcomes.push(result);
    }
    Ok(outcomes)
}

// ---- the store ------------------------------------------------------------------------------

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`. Call `migrate` before use.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Another process holding the write lock (a CLI purge, a second server by mistake)
            // makes us wait up to this long before the write fails as Unavailable.
            .busy_timeout(Duration::from_secs(5));
        // The writer connects first: switching a new file to WAL needs an exclusive lock, which
        // must not race with the readers' first connections.
        let health = Arc::new(WriterHealth::default());
        let hook = health.clone();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            // `false` closes the connection and the pool opens a fresh one (see `WriterHealth`).
            .before_acquire(move |_, _| {
                let keep = !hook.replace_connection.swap(false, Ordering::AcqRel);
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(opts.clone())
            .await
            .map_err(unavailable)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore {
            writer,
            reader,
            group: GroupCommit::default(),
            last_position: LastPosition(Arc::new(AtomicI64::new(LastPosition::UNKNOWN))),
            health,
        })
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;
    type Write = Writing;

    /// A write transaction holding SQLite's write lock from its first statement (see the module
    /// comment for why `IMMEDIATE`). The one writer is what key locks are elsewhere: no other
    /// write runs until this one ends.
    async fn write(&self, _locks: Locks) -> Result<Writing> {
        Writing::begin(&self.writer, &self.last_position, &self.health).await
    }

    /// While writes are failing (a full disk), a real write: ready again only once the store
    /// can write again, not merely read.
    async fn ping(&self) -> Result<()> {
        if !self.health.failing.load(Ordering::Acquire) {
            return crate::backend::ping_readers(self).await;
        }
        let probe = async {
            let mut tx = self.write(Locks::default()).await?;
            sqlx::query(
                "INSERT INTO store_probe (id, at) VALUES (1, ?) \
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .bind(crate::rows::now_ts())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            sql::WriteTx::commit_plain(tx).await
        };
        probe.await.map_err(|e| {
            crate::Unavailable::new(format!("the store cannot write ({e}); free disk space")).into()
        })
    }

    /// Group commit (see `GroupCommit`).
    async fn insert_revocation(
        &self,
        rec: &Revocation,
        audit: &AuditEvent,
    ) -> Result<Written<RevokeOutcome>> {
        let (_withdraw, mut outcome) = self.group.push((rec.clone(), audit.clone()));
        loop {
            tokio::select! {
                // Outcome first: a caller whose revocation another caller already committed
                // returns at once instead of queueing for a turn it does not need (callers
                // that each took a turn would form a convoy of one-item groups).
                biased;
                answer = &mut outcome => {
                    return answer.map_err(|_| {
                        Unavailable::new("the revocation write was abandoned; retry it")
                    })?;
                }
                _turn = self.group.turn.lock() => {
                    // Everything queued so far, ours included unless a previous turn took it.
                    let items = self.group.take();
                    if !items.is_empty() {
                        // Spawned, so that a caller that goes away (a client disconnecting)
                        // cannot abandon a transaction carrying other callers' revocations.
                        let writer = self.writer.clone();
                        let last = self.last_position.clone();
                        let health = self.health.clone();
                        let task =
                            tokio::spawn(async move {
                                commit_group(&writer, &last, &health, items).await
                            });
                        if let Err(e) = task.await {
                            tracing::error!(error = %e, "revocation group commit task failed");
                        }
                    }
                }
            }
        }
    }

    /// The single writer: no other write, so no new session of the actor, until this commits.
    async fn write_actor_sessions(&self, _tenant: &str, _type: &str, _id: &str) -> Result<Writing> {
        self.write(Locks::default()).await
    }

    fn readers(&self) -> &SqlitePool {
        &self.reader
    }

    /// A read transaction: in WAL mode every statement in it reads the same snapshot.
    async fn snapshot(&self) -> Result<Tx> {
        self.reader.begin().await.map_err(unavailable)
    }

    async fn snapshot_cursor(conn: &mut SqliteConnection) -> Result<FeedCursor> {
        // With one writer, positions commit in order (module comment): the highest one in this
        // snapshot is a cursor every later change sorts after.
        let position: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM changes")
            .fetch_one(conn)
            .await
            .map_err(unavailable)?;
        Ok(FeedCursor { xid: 0, position })
    }

    async fn included_after(
        _conn: &mut SqliteConnection,
        _tenant: Option<&str>,
        _cursor: FeedCursor,
    ) -> Result<Vec<Change>> {
        // One writer, positions committed in order: the snapshot's cursor is its newest change.
        Ok(Vec::new())
    }

    const BOUNDED_DELETE: sql::BoundedDelete = bounded_delete_sql;

    // Each of these writes `BATCH_CHUNK` rows per statement (SQLite limits how many values one
    // statement binds). Only full chunks get a cached prepared statement: the SQL text depends
    // on the row count, and caching every odd-sized tail would evict the statements that are
    // reused.

    async fn insert_revocations_returning(
        conn: &mut SqliteConnection,
        items: &[(Revocation, AuditEvent)],
    ) -> Result<Vec<(String, String)>> {
        let mut inserted = Vec::new();
        for chunk in items.chunks(BATCH_CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO revocations ({REVOCATION_COLUMNS}) "
            ));
            qb.push_values(chunk, |mut b, (r, _)| {
                b.push_bind(&r.tenant)
                    .push_bind(&r.jti)
                    .push_bind(&r.sub)
                    .push_bind(ts(r.expires_at))
                    .push_bind(ts(r.revoked_at))
                    .push_bind(&r.reason)
                    .push_bind(&r.revoked_by)
                    .push_bind(r.metadata.to_string())
                    .push_bind(r.until.map(ts));
            });
            // DO NOTHING + RETURNING: only rows actually inserted come back, which is exactly
            // the set whose audit events must be written.
            qb.push(" ON CONFLICT (tenant, jti) DO NOTHING RETURNING tenant, jti");
            let rows: Vec<(String, String)> = qb
                .build_query_as()
                .persistent(chunk.len() == BATCH_CHUNK)
                .fetch_all(&mut *conn)
                .await
                .map_err(batch_insert_error)?;
            inserted.extend(rows);
        }
        Ok(inserted)
    }

    async fn insert_audits(conn: &mut SqliteConnection, events: &[&AuditEvent]) -> Result<()> {
        for chunk in events.chunks(BATCH_CHUNK) {
            let mut qb =
                QueryBuilder::<Sqlite>::new(format!("INSERT INTO audit_events ({AUDIT_COLUMNS}) "));
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(&e.id)
                    .push_bind(&e.tenant)
                    .push_bind(ts(e.at))
                    .push_bind(&e.actor)
                    .push_bind(&e.action)
                    .push_bind(&e.target)
                    .push_bind(&e.reason)
                    .push_bind(e.metadata.to_string());
            });
            qb.build()
                .persistent(chunk.len() == BATCH_CHUNK)
                .execute(&mut *conn)
                .await
                .map_err(audit_conflict)?;
        }
        Ok(())
    }

    async fn insert_changes(
        conn: &mut SqliteConnection,
        kind: &str,
        rows: &[(&str, &str, Option<i64>)],
    ) -> Result<()> {
        let now = now_ts();
        for chunk in rows.chunks(BATCH_CHUNK) {
            let mut qb =
                QueryBuilder::<Sqlite>::new("INSERT INTO changes (tenant, kind, key, value, at) ");
            qb.push_values(chunk, |mut b, &(tenant, key, value)| {
                b.push_bind(tenant)
                    .push_bind(kind)
                    .push_bind(key)
                    .push_bind(value)
                    .push_bind(now);
            });
            qb.build()
                .persistent(chunk.len() == BATCH_CHUNK)
                .execute(&mut *conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn oldest_change(&self) -> Result<Option<FeedCursor>> {
        let mut conn = crate::backend::read(self).await?;
        let position: Option<i64> = sqlx::query_scalar("SELECT min(position) FROM changes")
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(position.map(|position| FeedCursor { xid: 0, position }))
    }

    async fn changes_after(&self, after: FeedCursor, limit: u32) -> Result<Vec<Change>> {
        // Every SQLite change has xid 0: a cursor with a higher xid (not one this store issued)
        // is past all of them, one with a lower xid before all of them.
        let after_position = match after.xid.cmp(&0) {
            std::cmp::Ordering::Less => i64::MIN,
            std::cmp::Ordering::Equal => after.position,
            std::cmp::Ordering::Greater => return Ok(Vec::new()),
        };
        // Committed rows only: the reader sees the last committed WAL snapshot.
        let mut conn = crate::backend::read(self).await?;
        select_changes(&mut conn, after_position, Some(limit)).await
    }

    async fn migrate(&self) -> std::result::Result<(), MigrateError> {
        MIGRATOR.run(&self.writer).await
    }

    const NAME: &'static str = "the embedded store";
}
