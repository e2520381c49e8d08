//! The shared store: PostgreSQL, for many veto nodes on one database.
//!
//! # Connections
//!
//! One pool per node (`PgStore::connect(url, max_connections)`). A request holds a connection
//! only for its own statement or transaction, and transactions here are short (no network or
//! crypto work inside them), so a small pool serves many concurrent requests: about twice the
//! node's cores is plenty. Size it against the server, not the load: the sum over all nodes
//! (plus one `LISTEN` connection per node, `listen_changes`, which is not from the pool) must
//! stay below PostgreSQL's `max_connections` minus its reserved slots. Waiting longer than
//! `ACQUIRE_TIMEOUT` for a connection fails the request as `Unavailable` rather than queueing it
//! without bound.
//!
//! Every connection runs with `synchronous_commit` at least `on` (a server configured with `off`
//! is overridden for our sessions; `remote_apply` and the like are kept): veto acknowledges a
//! write only once it is durable (`docs/architecture.md`, "Writes"), and `off` would acknowledge
//! writes a crash can lose. `idle_in_transaction_session_timeout` bounds how long a transaction
//! left open by a stuck client can hold the change feed back (see below).
//!
//! # Isolation
//!
//! Writes run in READ COMMITTED (PostgreSQL's default): every statement sees what committed
//! before it started, and conflicts are resolved by constraints (`ON CONFLICT DO NOTHING …
//! RETURNING` and a re-read for idempotent revocations, upserts that keep the larger value
//! (`CASE`) for max-wins cutoffs) and by the key locks below, not by retrying serialization
//! failures.
//! `load_state` and `revocation_stats` read several tables in one REPEATABLE READ, READ ONLY
//! transaction, so that what they return is one consistent snapshot. Single reads are single
//! statements. Serialization failures, deadlocks and lost connections surface as
//! `Unavailable` (retryable).
//!
//! # Key locks: per key, feed order is commit order
//!
//! Every write transaction first takes transaction-scoped advisory locks, in one statement and
//! in a fixed order (so they cannot deadlock among themselves): exclusive on the keys it changes
//! (a revocation's (tenant, jti), a tenant, a tenant's signing keys, an API key id, a cutoff)
//! and shared on the tenant its rows belong to. Why: the feed is ordered by transaction id (see
//! the next section), and PostgreSQL assigns a transaction its id at its first write. Without
//! the locks a transaction can get its id, then wait for another one to commit a change to the
//! same row and write after it (a batch that re-revokes a jti while a lift of it commits, or a
//! suspend racing a resume): the later change would sort *before* the earlier one, and a node
//! replaying the feed would end up with the first state while the database holds the second
//! (for a re-revoked token: accepted, i.e. fail-open). Advisory locks assign no transaction id,
//! and are taken before any write, so a transaction that touches a key another open transaction
//! touched gets its id only after that one finished: per key, changes sort in commit order.
//! Transactions with more than `MAX_KEY_LOCKS` keys (large batches) and the purge (whose keys are
//! only known once it runs) take one whole-store lock exclusively instead; every other writer
//! holds it shared. The cost: one more statement per write, and large batches and purge passes
//! run alone (each is bounded, see `purge_batch`).
//!
//! # The change feed and out-of-order commits
//!
//! Every write that changes what nodes hold in memory appends `changes` rows in its own
//! transaction. `position` comes from a sequence, and sequence values commit out of order: tx A
//! takes position 7, tx B takes 8, B commits first; a reader that saw 8 and continued from there
//! would never see 7. So each row also records its transaction's id (`xid`, the 64-bit
//! `pg_current_xact_id()`), and readers go by `(xid, position)`:
//!
//! `changes_after(after)` returns rows with `(xid, position) > after` and
//! `xid < xmin(current snapshot)`, in `(xid, position)` order. *Proof that nothing is skipped:*
//! every transaction with an id below the snapshot's xmin has finished (committed or aborted) when
//! the snapshot is taken, so the rows of those transactions that will ever exist are exactly the
//! ones the snapshot sees: they are final. A row that becomes visible later belongs to a
//! transaction that was still running (id >= xmin) or had no id yet (it will get one >= the
//! snapshot's xmax >= xmin), so it sorts after every row already returned, whose ids are all
//! < xmin. A reader that continues from the last cursor it got therefore sees every committed
//! change exactly once, in `(xid, position)` order.
//!
//! `load_state` reads, as the first statement of its REPEATABLE READ transaction,
//! `xmin(transaction snapshot)` and returns the cursor `(xmin, -1)`: every change of a
//! transaction below xmin is in the snapshot, and `changes_after((xmin, -1))` returns everything
//! else. Rows of transactions >= xmin that committed before the snapshot are both in the snapshot
//! and replayed; replaying is harmless because appliers are idempotent, and per key the replay
//! is in commit order (key locks), so it ends in the state the snapshot already had.
//!
//! *The cost:* xmin is cluster-wide. Any transaction that holds a transaction id on the whole
//! PostgreSQL server (another database too, a prepared transaction, a migration or a manual
//! `BEGIN; UPDATE …` left open) holds xmin, and with it every node's feed, back until it ends.
//! Read-only transactions (no id) do not. While held back, nodes receive no changes, their index
//! ages past the staleness bound, and they fail closed (answer inactive / 503) by design, rather
//! than serve a state that may be missing a revocation. Operators see it as feed lag; the cure is
//! to end the long transaction (veto's own sessions are bounded by
//! `idle_in_transaction_session_timeout`).
//!
//! After writing changes, each transaction runs `pg_notify(PG_NOTIFY_CHANNEL, '')` before
//! committing. PostgreSQL delivers notifications at commit (never for a rolled-back transaction)
//! and folds identical ones within a transaction. The notification is only a wake-up: nodes
//! catch up through `changes_after`, so a missed one (a dropped `LISTEN` connection) only
//! delays. Its price: to queue notifications in commit order, PostgreSQL holds one cluster-wide
//! lock from the start of a notifying transaction's commit until it has committed
//! (`PreCommit_Notify` in its async.c), so notifying commits, WAL flush included, run one at a
//! time. That bounds concurrent write throughput at roughly one commit per flush; measure on the
//! production disk before promising higher write rates (sending the notification after the
//! commit, outside the transaction, would lift that bound at the price of a lost wake-up on a
//! crash in between).
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};
use veto_core::audit::AuditEvent;
use veto_core::revocation::Revocation;

use crate::backend::{Backend, Locks};
use crate::rows::{
    REVOCATION_COLUMNS, audit_conflict, batch_insert_error, now_ts, ts, unavailable,
};
use crate::sql;
use crate::{Change, FeedCursor, Result, Unavailable};

/// The `LISTEN`/`NOTIFY` channel every committed change is announced on (empty payload).
pub const PG_NOTIFY_CHANNEL: &str = "veto_changes";

/// Embedded like the SQLite migrations (see `sqlite/mod.rs`). sqlx's PostgreSQL migrator holds
/// an advisory lock while it runs, so nodes starting together migrate one at a time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a request waits for a pooled connection before failing as `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// See the module comment: a veto transaction left open this long is ended by the server.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: u32 = 30_000;

/// Advisory-lock namespaces (the first key of the two-key form): "veto" for keys, "vetw" for the
/// whole store. Other applications sharing the database are unlikely to use the same numbers; if
/// one did, the cost would be needless waiting, never a wrong result.
const KEY_LOCK_CLASS: i32 = 0x7665_746f;
const WHOLE_LOCK_CLASS: i32 = 0x7665_7477;

type Tx = Transaction<'static, Postgres>;

/// The locks `SessionStore::revoke_actor_sessions` needs; a child module so that it shares the
/// pool and the key locks.
mod sessions;

pub struct PgStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

// ---- key locks -------------------------------------------------------------------------------

/// (class, id, exclusive) of `locks` in the order they must be taken: the whole-store lock
/// first, shared unless the write takes the whole store, then the key locks in id order.
fn ordered(locks: &Locks) -> (Vec<i32>, Vec<i32>, Vec<bool>) {
    let mut class = vec![WHOLE_LOCK_CLASS];
    let mut id = vec![0];
    let mut exclusive = vec![locks.is_whole()];
    if !locks.is_whole() {
        for (k, x) in locks.keys() {
            class.push(KEY_LOCK_CLASS);
            id.push(k);
            exclusive.push(x);
        }
    }
    (class, id, exclusive)
}

/// The change rows of `(xid, position)` tuples as read from `changes`.
type ChangeRow = (i64, i64, String, String, String, Option<i64>, i64);

fn to_change((xid, position, tenant, kind, key, value, at): ChangeRow) -> Change {
    Change::from_row(FeedCursor { xid, position }, tenant, (kind, key, value), at)
}

/// Reads back the changes this transaction appended (the writer applies exactly these), announces
/// them, then commits: the notification goes out at commit. The read uses the feed's own index
/// (`xid` is this transaction's id).
async fn commit_changes(mut tx: Transaction<'_, Postgres>) -> Result<Vec<Change>> {
    let rows: Vec<ChangeRow> = sqlx::query_as(
        "SELECT xid, position, tenant, kind, key, value, at FROM changes \
         WHERE xid = pg_current_xact_id_if_assigned()::text::bigint ORDER BY position",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(unavailable)?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(PG_NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    Ok(rows.into_iter().map(to_change).collect())
}

impl sql::WriteTx for Transaction<'_, Postgres> {
    fn commit_changes(self) -> impl Future<Output = Result<Vec<Change>>> + Send {
        commit_changes(self)
    }

    async fn commit_plain(self) -> Result<()> {
        self.commit().await.map_err(unavailable)
    }
}

/// `DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … LIMIT n))`, for both purges
/// (`sql::BoundedDelete`): PostgreSQL has no `DELETE … LIMIT`; the subselect finds at most `n`
/// victims through the table's indexes, and the outer delete reaches them by physical address (a
/// TID scan). Safe here because purges run under the whole-store lock: no writer moves a row
/// between the two.
fn bounded_delete_sql(table: &str, condition: &str, returning: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(\
           SELECT ctid FROM {table} WHERE {condition} LIMIT $2)) {returning}"
    )
}

// ---- the store -------------------------------------------------------------------------------

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url` (`postgres://…`). Call `migrate`
    /// before use.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| Unavailable::caused_by("bad PostgreSQL URL", e))?
            .application_name("veto")
            .options([(
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT_MS.to_string(),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Raise `off` to `on` only: stronger settings (remote_apply, …) are kept.
                    sqlx::query(
                        "SELECT set_config('synchronous_commit', 'on', false) \
                         WHERE current_setting('synchronous_commit') = 'off'",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(unavailable)?;
        Ok(PgStore { pool })
    }

    /// A connection `LISTEN`ing on [`PG_NOTIFY_CHANNEL`]: every committed change is followed by
    /// a notification (empty payload). Use it only as a wake-up to call `changes_after`: a
    /// notification is lost when the connection drops (sqlx reconnects on the next `recv`), so
    /// also catch up after a reconnect and on a timer.
    pub async fn listen_changes(&self) -> Result<PgListener> {
        listen(&self.pool).await
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.map_err(unavailable)?;
    listener
        .listen(PG_NOTIFY_CHANNEL)
        .await
        .map_err(unavailable)?;
    Ok(listener)
}

impl crate::Database for PgStore {
    /// Wakes on every notification. After a lost connection it listens again a second later;
    /// notifications sent meanwhile are lost, which only delays those changes until the
    /// follower's next timed read.
    fn change_signals(&self, wake: crate::Wake) -> Option<crate::SignalTask> {
        let pool = self.pool.clone();
        Some(Box::pin(async move {
            loop {
                match listen(&pool).await {
                    Ok(mut listener) => loop {
                        match listener.recv().await {
                            Ok(_) => wake(),
                            Err(e) => {
                                tracing::warn!(error = %e, "PostgreSQL notifications interrupted; listening again");
                                break;
                            }
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for PostgreSQL notifications; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}

impl Backend for PgStore {
    type Db = Postgres;
    type Write = Tx;

    /// A write transaction holding `locks` (module comment), taken before anything else.
    async fn write(&self, locks: Locks) -> Result<Tx> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let (class, id, exclusive) = ordered(&locks);
        // One round trip; the lateral subquery runs once per row in array order, which is the
        // order every transaction takes its locks in.
        sqlx::query(
            "SELECT count(*) FROM unnest($1::int4[], $2::int4[], $3::bool[]) AS l(c, k, x), \
             LATERAL (SELECT CASE WHEN l.x THEN pg_advisory_xact_lock(l.c, l.k) \
                                  ELSE pg_advisory_xact_lock_shared(l.c, l.k) END) AS taken",
        )
        .bind(class)
        .bind(id)
        .bind(exclusive)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        Ok(tx)
    }

    async fn write_actor_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
    ) -> Result<Tx> {
        self.lock_actor_sessions(tenant, actor_type, actor_id).await
    }

    fn readers(&self) -> &PgPool {
        &self.pool
    }

    /// One REPEATABLE READ, READ ONLY transaction: every statement reads the same snapshot.
    async fn snapshot(&self) -> Result<Tx> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(unavailable)
    }

    async fn snapshot_cursor(conn: &mut PgConnection) -> Result<FeedCursor> {
        // The FIRST statement: in REPEATABLE READ it fixes the transaction's snapshot, so this
        // xmin is that snapshot's, and every change of a transaction below it is in the
        // snapshot (module comment, "The change feed").
        let xmin: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(conn)
                .await
                .map_err(unavailable)?;
        Ok(FeedCursor {
            xid: xmin,
            position: -1,
        })
    }

    async fn included_after(
        conn: &mut PgConnection,
        tenant: Option<&str>,
        cursor: FeedCursor,
    ) -> Result<Vec<Change>> {
        // The snapshot's xmin is its oldest open transaction: transactions with a higher xid
        // that had committed are visible, and their changes sort after the cursor. Few rows:
        // the writes of the moments that transaction was open.
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT xid, position, tenant, kind, key, value, at FROM changes \
             WHERE (xid, position) > ($1, $2) AND ($3::text IS NULL OR tenant = $3) \
             ORDER BY xid, position",
        )
        .bind(cursor.xid)
        .bind(cursor.position)
        .bind(tenant)
        .fetch_all(conn)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(to_change).collect())
    }

    const BOUNDED_DELETE: sql::BoundedDelete = bounded_delete_sql;

    /// One statement, arrays, whatever their number.
    async fn insert_revocations_returning(
        conn: &mut PgConnection,
        items: &[(Revocation, AuditEvent)],
    ) -> Result<Vec<(String, String)>> {
        let text =
            |f: fn(&Revocation) -> String| items.iter().map(|(r, _)| f(r)).collect::<Vec<_>>();
        let opt_text = |f: fn(&Revocation) -> Option<String>| {
            items.iter().map(|(r, _)| f(r)).collect::<Vec<_>>()
        };
        // DO NOTHING + RETURNING: only rows actually inserted come back. unnest keeps the order of
        // `items`, so of a jti repeated in the batch the first occurrence is the one inserted.
        let inserted: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO revocations ({REVOCATION_COLUMNS}) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], \
                                  $6::text[], $7::text[], $8::text[], $9::int8[]) \
             ON CONFLICT (tenant, jti) DO NOTHING RETURNING tenant, jti"
        )))
        .bind(text(|r| r.tenant.clone()))
        .bind(text(|r| r.jti.clone()))
        .bind(opt_text(|r| r.sub.clone()))
        .bind(
            items
                .iter()
                .map(|(r, _)| ts(r.expires_at))
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(r, _)| ts(r.revoked_at))
                .collect::<Vec<_>>(),
        )
        .bind(opt_text(|r| r.reason.clone()))
        .bind(text(|r| r.revoked_by.clone()))
        .bind(text(|r| r.metadata.to_string()))
        .bind(
            items
                .iter()
                .map(|(r, _)| r.until.map(ts))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(batch_insert_error)?;
        Ok(inserted)
    }

    /// One statement, arrays, whatever their number.
    async fn insert_audits(conn: &mut PgConnection, events: &[&AuditEvent]) -> Result<()> {
        let col = |f: fn(&AuditEvent) -> String| events.iter().map(|e| f(e)).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO audit_events (id, tenant, at, actor, action, target, reason, metadata) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], \
                                  $6::text[], $7::text[], $8::text[])",
        )
        .bind(col(|e| e.id.clone()))
        .bind(col(|e| e.tenant.clone()))
        .bind(events.iter().map(|e| ts(e.at)).collect::<Vec<_>>())
        .bind(col(|e| e.actor.clone()))
        .bind(col(|e| e.action.clone()))
        .bind(col(|e| e.target.clone()))
        .bind(events.iter().map(|e| e.reason.clone()).collect::<Vec<_>>())
        .bind(col(|e| e.metadata.to_string()))
        .execute(conn)
        .await
        .map_err(audit_conflict)?;
        Ok(())
    }

    /// One statement, positions in order.
    /// `xid` is the column default: this transaction's id.
    async fn insert_changes(
        conn: &mut PgConnection,
        kind: &str,
        rows: &[(&str, &str, Option<i64>)],
    ) -> Result<()> {
        let (mut tenants, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for &(t, k, v) in rows {
            tenants.push(t);
            keys.push(k);
            values.push(v);
        }
        sqlx::query(
            "INSERT INTO changes (tenant, kind, key, value, at) \
             SELECT t, $2, k, v, $5 FROM unnest($1::text[], $3::text[], $4::int8[]) AS u(t, k, v)",
        )
        .bind(tenants)
        .bind(kind)
        .bind(keys)
        .bind(values)
        .bind(now_ts())
        .execute(conn)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn changes_after(&self, after: FeedCursor, limit: u32) -> Result<Vec<Change>> {
        // Final rows only (module comment): the xmin comes from the statement's own snapshot,
        // computed once (an uncorrelated subquery), and bounds the index range on (xid, position).
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT xid, position, tenant, kind, key, value, at FROM changes \
             WHERE (xid, position) > ($1, $2) \
               AND xid < (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint) \
             ORDER BY xid, position LIMIT $3",
        )
        .bind(after.xid)
        .bind(after.position)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(to_change).collect())
    }

    async fn oldest_change(&self) -> Result<Option<FeedCursor>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT xid, position FROM changes ORDER BY xid, position LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(row.map(|(xid, position)| FeedCursor { xid, position }))
    }

    async fn feed_pending_since(&self, after: FeedCursor) -> Result<Option<i64>> {
        // Committed (visible to this statement) but not final: rows of transactions at or above
        // the snapshot's xmin, which `changes_after` holds back. `at` has whole seconds, so the
        // instant is rounded down: a node counts itself a little staler, never fresher.
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(at) FROM changes \
             WHERE (xid, position) > ($1, $2) \
               AND xid >= (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint)",
        )
        .bind(after.xid)
        .bind(after.position)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(oldest.map(|secs| secs.saturating_mul(1_000)))
    }

    async fn migrate(&self) -> std::result::Result<(), MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    const NAME: &'static str = "PostgreSQL";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MAX_KEY_LOCKS;

    #[test]
    fn locks_are_ordered_whole_first_and_large_sets_take_the_whole_store() {
        let locks = Locks::default()
            .revocation("acme", "j1")
            .change(&["t", "acme"]);
        let (class, ids, exclusive) = ordered(&locks);
        assert_eq!(class[0], WHOLE_LOCK_CLASS);
        assert!(
            !exclusive[0],
            "ordinary writers hold the whole-store lock shared"
        );
        assert_eq!(class.len(), 3, "tenant and jti");
        assert!(ids[1] < ids[2], "key locks in id order");
        assert!(
            exclusive[1..].iter().all(|x| *x),
            "the tenant became exclusive"
        );

        let jtis: Vec<String> = (0..=MAX_KEY_LOCKS).map(|i| format!("j{i}")).collect();
        let many = jtis.iter().map(|j| ("acme", j.as_str()));
        let (class, _, exclusive) = ordered(&Locks::revocations(many));
        assert_eq!((class.len(), exclusive[0]), (1, true));
    }
}
