//! The change feed follower: how a node learns the writes of every other node, and how it knows
//! whether it may still answer checks.
//!
//! Every write that changes what a node holds in memory appends a change row in the same
//! transaction (see `veto_store::change`). Each node follows that log from the cursor of its
//! start-up snapshot: it wakes on a notification (PostgreSQL `LISTEN/NOTIFY`, Redis pub/sub) or
//! on a timer, reads every final change after its cursor, applies it, and moves the cursor. A
//! lost notification therefore only delays a change until the next tick; it is never lost,
//! because the cursor, not the notification, says what has been read. The store decides what
//! is final (the PostgreSQL backend never returns a change that could still be overtaken by an
//! earlier position committing late).
//!
//! Freshness: after a read that found everything final, the node knows it holds every change
//! committed before the read started (`fresh_as_of`). A write of this node is applied before it
//! is acknowledged, so read-your-writes holds regardless. When `fresh_as_of` falls further
//! behind than `max_staleness` (the store is down, the feed is held back), the node fails closed:
//! every check answers inactive with `index_stale` and `/readyz` answers 503. Failing open is
//! possible only through an explicit setting, because it means accepting tokens that another
//! node may already have revoked.
//!
//! Retention: change rows are deleted a day after they were written (`CHANGE_RETENTION_SECS`).
//! A node that has not been fresh for nearly that long (cut off from the database for a day, a
//! suspended VM) may find changes gone from the log that it never applied, so catching up
//! could make it fresh while missing a revocation. Such a node never becomes fresh again: it
//! stays failed closed, `/readyz` says why, and a restart (which loads the whole state) mends it.
//!
//! Applying is the mirror's (`mirror.rs`): the changes a node wrote itself come back through the
//! feed and are skipped there (the entity already reflects them), the first read after start-up
//! may repeat changes already in the snapshot, and a change older than what an entity reflects
//! is never applied, so memory never moves backwards.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use veto_core::timeutil;
use veto_store::{Change, FeedCursor};

use crate::config::StalePolicy;
use crate::metrics;
use crate::mirror::{Mirror, Origin};

/// How long a node may go without being fresh before it can no longer trust the change log to
/// hold everything it missed: the log's retention, less an hour for clocks that disagree between
/// the node that purges and this one.
const OUTLIVED_AFTER_MS: i64 = (veto_store::CHANGE_RETENTION_SECS - 3_600) * 1_000;

/// Whether a node last fresh at `fresh_as_of_ms` (0: never) can still catch up from the log at
/// `now_ms`.
fn outlived_retention(fresh_as_of_ms: i64, now_ms: i64) -> bool {
    fresh_as_of_ms != 0 && now_ms.saturating_sub(fresh_as_of_ms) > OUTLIVED_AFTER_MS
}

/// Changes per read. Large enough that a burst (a batch of 10,000 revocations) takes one or two
/// reads; small enough that one read never holds a huge result in memory.
const READ_LIMIT: u32 = 5_000;

/// How many reads of the feed a stream subscriber may fall behind before it is dropped (it then
/// resumes from its last event id): the bound on what a slow subscriber makes the node hold.
/// One read is up to `READ_LIMIT` changes, shared by every subscriber (an `Arc`), not copied.
const PUBLISHED_READS: usize = 64;

/// The node's position in the change log and how fresh its in-memory state is.
pub struct Feed {
    /// Only the follower moves it (one catch-up at a time, see `catch_up`); a watch channel, so
    /// that requests with a `min_position` wait for it without polling.
    cursor: watch::Sender<FeedCursor>,
    /// Every read of the feed, in order, for the revocation streams (`stream.rs`) of this node.
    published: broadcast::Sender<Arc<[Change]>>,
    /// Requests waiting for the cursor to reach a `min_position`.
    waiting: AtomicUsize,
    /// Set once the server is shutting down: streams end instead of holding the drain up.
    closing: watch::Sender<bool>,
    /// Unix milliseconds: every change committed before this instant has been applied.
    /// 0 = not yet caught up since start-up.
    fresh_as_of_ms: AtomicI64,
    /// Set once the node has been stale for longer than the change log keeps changes: it then
    /// never becomes fresh again (see the module comment).
    outlived: AtomicBool,
    /// Serialises catch-ups: the timer and a notification may fire together.
    running: tokio::sync::Mutex<()>,
    wake: Notify,
    max_staleness: Duration,
    policy: StalePolicy,
    poll_interval: Duration,
}

impl Feed {
    pub fn new(max_staleness: Duration, policy: StalePolicy, poll_interval: Duration) -> Feed {
        Feed {
            cursor: watch::Sender::new(FeedCursor::default()),
            published: broadcast::Sender::new(PUBLISHED_READS),
            waiting: AtomicUsize::new(0),
            closing: watch::Sender::new(false),
            fresh_as_of_ms: AtomicI64::new(0),
            outlived: AtomicBool::new(false),
            running: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            max_staleness,
            policy,
            poll_interval,
        }
    }

    pub(crate) fn set_cursor(&self, c: FeedCursor) {
        self.cursor.send_replace(c);
    }

    pub fn cursor(&self) -> FeedCursor {
        *self.cursor.borrow()
    }

    /// Asks the follower to read the log now (a notification arrived).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// After a local write: asks the follower to read the log now only when someone waits for
    /// what it reads (a stream subscriber of this node, a request with a `min_position`).
    /// Otherwise the write is already in memory and the next poll is soon enough; waking on
    /// every write would add a feed read per write to the hot path.
    pub fn wake_if_followed(&self) {
        if self.published.receiver_count() > 0 || self.waiting.load(Ordering::Acquire) > 0 {
            self.wake();
        }
    }

    /// Waits up to `bound` until every change up to `min` is applied; whether it was.
    pub async fn wait_for(&self, min: FeedCursor, bound: Duration) -> bool {
        let mut rx = self.cursor.subscribe();
        if *rx.borrow_and_update() >= min {
            return true;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        // The write may be this node's own, applied to memory but not yet read back from the
        // log: read it now rather than at the next poll.
        self.wake();
        let reached = tokio::time::timeout(bound, rx.wait_for(|c| *c >= min)).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        matches!(reached, Ok(Ok(_)))
    }

    /// Every read of the feed from now on, in order (`stream.rs`). A receiver that falls more
    /// than `PUBLISHED_READS` reads behind gets `Lagged` and must start over.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[Change]>> {
        self.published.subscribe()
    }

    /// The server is shutting down.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once `close` was called.
    pub async fn closed(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    /// Age of the in-memory state: how long ago the newest instant before which every change
    /// is known to be applied. `None` before the first catch-up.
    pub fn lag(&self) -> Option<Duration> {
        let fresh = self.fresh_as_of_ms.load(Ordering::Acquire);
        if fresh == 0 {
            return None;
        }
        let now = now_ms();
        Some(Duration::from_millis(
            now.saturating_sub(fresh).max(0) as u64
        ))
    }

    /// Within the staleness bound.
    pub fn is_fresh(&self) -> bool {
        !self.outlived() && self.lag().is_some_and(|l| l <= self.max_staleness)
    }

    /// Stale for longer than the change log's retention: only a restart makes it fresh again.
    pub fn outlived(&self) -> bool {
        self.outlived.load(Ordering::Acquire)
    }

    /// Whether checks may be answered from memory right now. Not once the node has outlived
    /// the change log, whatever the policy: its state may then lack changes for good, not
    /// just for a while.
    pub fn may_answer(&self) -> bool {
        !self.outlived() && (self.policy == StalePolicy::FailOpen || self.is_fresh())
    }

    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    fn mark_fresh(&self, as_of_ms: i64) {
        // An outlived node keeps reading (its lag stays visible) but `is_fresh` ignores it.
        self.fresh_as_of_ms.fetch_max(as_of_ms, Ordering::AcqRel);
    }
}

/// A node that may be sent traffic: what `/readyz` reports of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub position: i64,
    pub lag: Duration,
}

/// Why a node may not be sent traffic. `Display` is the sentence `/readyz` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The store does not answer, or cannot write (its error says which).
    Store(String),
    /// Stale for longer than the change log keeps changes: only a restart mends it.
    Outlived,
    /// Not caught up with the feed once since start-up.
    CatchingUp,
    /// Caught up once, but longer ago than the staleness bound.
    Stale { lag: Duration, bound: Duration },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Store(why) => write!(f, "the store is not usable: {why}"),
            NotReady::Outlived => f.write_str(
                "this node was cut off from the change feed for about as long as the feed keeps changes (a day); some it missed may be gone: restart it to reload the state",
            ),
            NotReady::CatchingUp => {
                f.write_str("the revocation state has not caught up with the change feed yet")
            }
            NotReady::Stale { lag, bound } => write!(
                f,
                "the revocation state is {:.1} s old, beyond the staleness bound of {} s",
                lag.as_secs_f64(),
                bound.as_secs_f64()
            ),
        }
    }
}

impl Feed {
    /// Ready means checks are answered from current state: a node that has not caught up with
    /// the change feed (just started, or cut off for longer than the staleness bound) is not,
    /// whatever the stale policy, and neither is one whose store does not answer.
    pub async fn readiness(&self, store: &dyn veto_store::Store) -> Result<Ready, NotReady> {
        if let Err(e) = store.ping().await {
            tracing::warn!(error = %e, "readiness: the store is not usable");
            return Err(NotReady::Store(e.to_string()));
        }
        if self.outlived() {
            return Err(NotReady::Outlived);
        }
        // One sample of the lag for both the decision and the report (`is_fresh` takes its own).
        match self.lag() {
            None => Err(NotReady::CatchingUp),
            Some(lag) if lag > self.max_staleness => Err(NotReady::Stale {
                lag,
                bound: self.max_staleness,
            }),
            Some(lag) => Ok(Ready {
                position: self.cursor().position,
                lag,
            }),
        }
    }
}

fn now_ms() -> i64 {
    (timeutil::now().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Feed {
    /// Reads every final change after the cursor from `store` and has `mirror` apply it.
    /// Returns how many were read. On a store error the state stays as it was and `fresh_as_of`
    /// does not move: past the staleness bound the node fails closed until a later catch-up
    /// succeeds.
    pub async fn catch_up(
        &self,
        store: &dyn veto_store::Store,
        mirror: &Mirror,
    ) -> Result<usize, veto_store::StoreError> {
        let _one_at_a_time = self.running.lock().await;
        // Taken before the first read: everything committed before this instant is final by
        // the end of the loop (unless the store says some of it is held back, below).
        let started = now_ms();
        if !self.outlived()
            && outlived_retention(self.fresh_as_of_ms.load(Ordering::Acquire), started)
        {
            self.outlived.store(true, Ordering::Release);
            metrics::feed_outlived();
            tracing::error!(
                retention_hours = veto_store::CHANGE_RETENTION_SECS / 3_600,
                "this node has not read the change feed for about as long as the feed keeps changes: some it missed may be gone, so it will not answer checks again; restart it to reload the state"
            );
        }
        let mut applied = 0;
        loop {
            let after = self.cursor();
            let changes = store.changes_after(after, READ_LIMIT).await?;
            let n = changes.len();
            if let Some(last) = changes.last() {
                let last = last.cursor;
                let now = now_ms();
                for c in &changes {
                    // Propagation delay, measured on changes written by other nodes as well as
                    // ours (ours come back after a poll interval at most, theirs after a
                    // notification). `at` has whole seconds: this histogram shows seconds of
                    // lag, not milliseconds; scripts/bench/propagation.py measures the latter.
                    metrics::feed_delay(
                        now.saturating_sub(c.at.saturating_mul(1000)) as f64 / 1000.0,
                    );
                }
                mirror.apply(&changes, Origin::Feed).await?;
                // For this node's streams (`stream.rs`), when it has any.
                if self.published.receiver_count() > 0 {
                    let _ = self.published.send(Arc::from(changes));
                }
                self.set_cursor(last);
                mirror.forget_applied_before(last).await;
                metrics::feed_position(last.position);
                applied += n;
            }
            if n < READ_LIMIT as usize {
                break;
            }
        }
        // Committed changes the store holds back (an older transaction is still open): the
        // state is fresh only up to the oldest of them.
        let fresh = match store.feed_pending_since(self.cursor()).await? {
            Some(pending_ms) => started.min(pending_ms),
            None => started,
        };
        self.mark_fresh(fresh);
        if let Some(lag) = self.lag() {
            metrics::feed_lag(lag);
        }
        Ok(applied)
    }

    /// The follower: catches up on every notification and at least every poll interval, for
    /// as long as the process runs. Errors are logged (and show as growing lag); it never
    /// stops on its own.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn veto_store::Database>,
        mirror: Arc<Mirror>,
    ) {
        let mut tick = tokio::time::interval(self.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            match self.catch_up(store.as_ref(), &mirror).await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("change feed readable again; state caught up");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "cannot read the change feed; checks fail closed once the state is older than the staleness bound");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn a_node_outlives_the_log_an_hour_before_its_retention() {
        let now = 1_800_000_000_000;
        assert!(
            !outlived_retention(0, now),
            "never fresh: start-up, not outlived"
        );
        assert!(!outlived_retention(now - 5_000, now));
        assert!(!outlived_retention(now - 23 * HOUR_MS, now));
        assert!(outlived_retention(now - 23 * HOUR_MS - 1, now));
        assert!(outlived_retention(now - 48 * HOUR_MS, now));
        // A clock that went backwards is not an outage.
        assert!(!outlived_retention(now + HOUR_MS, now));
    }

    #[test]
    fn an_outlived_node_is_never_fresh_nor_answers_even_failing_open() {
        let d = Duration::from_secs(5);
        for policy in [StalePolicy::FailClosed, StalePolicy::FailOpen] {
            let feed = Feed::new(d, policy, d);
            feed.mark_fresh(now_ms());
            assert!(feed.is_fresh() && feed.may_answer());
            feed.outlived.store(true, Ordering::Release);
            feed.mark_fresh(now_ms());
            assert!(!feed.is_fresh(), "{policy:?}");
            assert!(!feed.may_answer(), "{policy:?}");
        }
    }

    #[tokio::test]
    async fn readiness_says_why_not_until_fresh_and_never_once_outlived() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = veto_store::SqliteStore::open(&dir.path().join("veto.db"))
            .await
            .expect("open");
        let bound = Duration::from_secs(5);
        let feed = Feed::new(bound, StalePolicy::FailClosed, bound);
        assert_eq!(feed.readiness(&store).await, Err(NotReady::CatchingUp));
        feed.mark_fresh(now_ms() - 60_000);
        match feed.readiness(&store).await {
            Err(NotReady::Stale { lag, bound: b }) => {
                assert!(lag >= Duration::from_secs(60));
                assert_eq!(b, bound);
            }
            other => panic!("{other:?}"),
        }
        feed.mark_fresh(now_ms());
        let ready = feed.readiness(&store).await.expect("ready");
        assert_eq!(ready.position, feed.cursor().position);
        assert!(ready.lag <= bound);
        feed.outlived.store(true, Ordering::Release);
        assert_eq!(feed.readiness(&store).await, Err(NotReady::Outlived));
    }
}
