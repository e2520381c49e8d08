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
//! That age is measured on the monotonic clock (`Instant`), never the wall clock: a wall clock
//! stepped forward (an NTP correction) would make a current node fail closed, and one stepped
//! back would make a node that stopped reading the feed look fresh for as long as the step.
//! The wall clock is for token and record times (`exp`, `iat`, cutoffs, suspensions), which are
//! wall-clock times by definition; here it only converts the age of a held-back change (whose
//! time is a record time) and takes part in the retention check below.
//!
//! Retention: change rows are deleted a day after they were written (`CHANGE_RETENTION_SECS`).
//! A node that has not been fresh for nearly that long (cut off from the database for a day, a
//! suspended VM) may find changes gone from the log that it never applied, so catching up
//! could make it fresh while missing a revocation. Such a node never becomes fresh again: it
//! stays failed closed, `/readyz` says why, and a restart (which loads the whole state) mends it.
//! The purge deletes by wall-clock time, and a paused VM's monotonic clock may not count the
//! pause, so here either clock saying "nearly a day" is enough (failing closed on a wall clock
//! stepped a day ahead costs little: every token looks expired to such a node anyway).
//!
//! Applying is the mirror's (`mirror.rs`): the changes a node wrote itself come back through the
//! feed and are skipped there (the entity already reflects them), the first read after start-up
//! may repeat changes already in the snapshot, and a change older than what an entity reflects
//! is never applied, so memory never moves backwards.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Whether a node last fresh `since` ago (`None`: never) can no longer catch up from the log.
/// Either clock is enough (see the module comment): the monotonic one ignores a wall clock
/// stepped back, the wall clock counts a pause the monotonic one may not.
fn outlived_retention(since: Option<Since>) -> bool {
    since.is_some_and(|s| {
        s.monotonic > Duration::from_millis(OUTLIVED_AFTER_MS as u64)
            || s.wall_ms > OUTLIVED_AFTER_MS
    })
}

/// An instant on both clocks, read together: the monotonic one measures ages, the wall clock
/// only what must be compared with record times.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: Instant,
    /// Unix milliseconds.
    wall_ms: i64,
}

impl Stamp {
    fn now() -> Stamp {
        Stamp {
            at: Instant::now(),
            wall_ms: wall_now_ms(),
        }
    }
}

/// How long ago a node was last fresh, on each clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Since {
    monotonic: Duration,
    wall_ms: i64,
}

/// `fresh_as_of` before the first catch-up.
const NEVER: i64 = i64::MIN;

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
    /// Origin of `fresh_as_of` on the monotonic clock.
    epoch: Instant,
    /// Every change committed before this instant has been applied: nanoseconds after `epoch`
    /// on the monotonic clock (negative: before it, for a change held back since before the
    /// node started). `NEVER` = not yet caught up since start-up.
    fresh_as_of: AtomicI64,
    /// The same instant on the wall clock (unix milliseconds), for the retention check only.
    fresh_as_of_wall_ms: AtomicI64,
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
            epoch: Instant::now(),
            fresh_as_of: AtomicI64::new(NEVER),
            fresh_as_of_wall_ms: AtomicI64::new(NEVER),
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
        self.lag_at(Instant::now())
    }

    /// [`lag`](Self::lag) at `now`, on the monotonic clock.
    fn lag_at(&self, now: Instant) -> Option<Duration> {
        let fresh = self.fresh_as_of.load(Ordering::Acquire);
        if fresh == NEVER {
            return None;
        }
        let age = self.nanos_after_epoch(now).saturating_sub(fresh).max(0);
        Some(Duration::from_nanos(age as u64))
    }

    /// How long ago the node was last fresh, on each clock, at `now`; `None` before the first
    /// catch-up.
    fn since_fresh(&self, now: Stamp) -> Option<Since> {
        let wall = self.fresh_as_of_wall_ms.load(Ordering::Acquire);
        let monotonic = self.lag_at(now.at)?;
        Some(Since {
            monotonic,
            wall_ms: now.wall_ms.saturating_sub(wall),
        })
    }

    fn nanos_after_epoch(&self, at: Instant) -> i64 {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match at.checked_duration_since(self.epoch) {
            Some(after) => nanos(after),
            None => -nanos(self.epoch.duration_since(at)),
        }
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

    /// Every change committed before `held_back` ahead of `started` is applied.
    fn mark_fresh(&self, started: Stamp, held_back: Duration) {
        // An outlived node keeps reading (its lag stays visible) but `is_fresh` ignores it.
        let back = i64::try_from(held_back.as_nanos()).unwrap_or(i64::MAX);
        let at = self.nanos_after_epoch(started.at).saturating_sub(back);
        // Never backwards: a change held back now may have been written before an earlier
        // read began and committed after it, which does not undo what that read proved.
        let before = self.fresh_as_of.fetch_max(at, Ordering::AcqRel);
        if at > before {
            // Catch-ups take turns (`running`), so the two stay the same instant. Stored, not
            // maxed: after a wall clock stepped back, the wall-clock age counts from the new
            // reading, not from one that now lies in the future.
            let back_ms = i64::try_from(held_back.as_millis()).unwrap_or(i64::MAX);
            let wall = started.wall_ms.saturating_sub(back_ms);
            self.fresh_as_of_wall_ms.store(wall, Ordering::Release);
        }
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

/// The wall clock in unix milliseconds (not rounded down to the second, as record times are:
/// a change held back since a record time then counts as a little older, never younger).
fn wall_now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
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
        let started = Stamp::now();
        if !self.outlived() && outlived_retention(self.since_fresh(started)) {
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
                // Record times, so the wall clock, in whole seconds like them.
                let now = timeutil::now().unix_timestamp();
                for c in &changes {
                    // Propagation delay, measured on changes written by other nodes as well as
                    // ours (ours come back after a poll interval at most, theirs after a
                    // notification). `at` has whole seconds: this histogram shows seconds of
                    // lag, not milliseconds; scripts/bench/propagation.py measures the latter.
                    metrics::feed_delay(now.saturating_sub(c.at) as f64);
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
        // state is fresh only up to the oldest of them. Its time is a record time (wall clock),
        // so how long it is held back is measured on the wall clock, once, here.
        let held_back = match store.feed_pending_since(self.cursor()).await? {
            Some(pending_ms) => started.wall_ms.saturating_sub(pending_ms).max(0),
            None => 0,
        };
        self.mark_fresh(started, Duration::from_millis(held_back as u64));
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
    const HOUR: Duration = Duration::from_secs(3_600);

    fn since(monotonic: Duration, wall_ms: i64) -> Option<Since> {
        Some(Since { monotonic, wall_ms })
    }

    #[test]
    fn a_node_outlives_the_log_an_hour_before_its_retention_on_either_clock() {
        let ms = Duration::from_millis;
        assert!(
            !outlived_retention(None),
            "never fresh: start-up, not outlived"
        );
        assert!(!outlived_retention(since(ms(5_000), 5_000)));
        assert!(!outlived_retention(since(23 * HOUR, 23 * HOUR_MS)));
        assert!(outlived_retention(since(23 * HOUR + ms(1), 23 * HOUR_MS)));
        assert!(outlived_retention(since(23 * HOUR, 23 * HOUR_MS + 1)));
        assert!(outlived_retention(since(48 * HOUR, 48 * HOUR_MS)));
        // A wall clock stepped back an hour during a day's outage: the monotonic clock counts.
        assert!(outlived_retention(since(24 * HOUR, -HOUR_MS)));
        // A paused VM whose monotonic clock did not count the pause: the wall clock does.
        assert!(outlived_retention(since(ms(5), 25 * HOUR_MS)));
    }

    #[test]
    fn the_lag_is_measured_on_the_monotonic_clock_whatever_the_wall_clock_says() {
        let d = Duration::from_secs(5);
        let feed = Feed::new(d, StalePolicy::FailClosed, d);
        let t0 = Instant::now();
        assert_eq!(feed.lag_at(t0), None, "not caught up yet");
        // A read that started at t0, while the wall clock was an hour ahead of the real time.
        let ahead = Stamp {
            at: t0,
            wall_ms: wall_now_ms() + HOUR_MS,
        };
        feed.mark_fresh(ahead, Duration::ZERO);
        let two = Duration::from_secs(2);
        assert_eq!(feed.lag_at(t0 + two), Some(two));
        // The wall clock stepped back by two hours before the next read, which started a
        // second later: the state is a second fresher, not an hour older nor "in the future".
        let behind = Stamp {
            at: t0 + Duration::from_secs(1),
            wall_ms: ahead.wall_ms - 2 * HOUR_MS,
        };
        feed.mark_fresh(behind, Duration::ZERO);
        assert_eq!(feed.lag_at(t0 + two), Some(Duration::from_secs(1)));
        // The retention check's wall-clock age counts from that read's own wall-clock reading.
        let a_second_on = Stamp {
            at: t0 + two,
            wall_ms: behind.wall_ms + 1_000,
        };
        assert_eq!(
            feed.since_fresh(a_second_on),
            Some(Since {
                monotonic: Duration::from_secs(1),
                wall_ms: 1_000
            })
        );
        // A node that stops reading ages with the monotonic clock, whatever the steps.
        assert_eq!(
            feed.lag_at(t0 + 10 * d),
            Some(10 * d - Duration::from_secs(1))
        );
        // Measured from when the read started, less what the store held back.
        let later = Stamp {
            at: t0 + 4 * two,
            wall_ms: behind.wall_ms,
        };
        feed.mark_fresh(later, two);
        assert_eq!(feed.lag_at(t0 + 4 * two), Some(two));
        // A held-back change older than the node itself is still as old as it is.
        let feed = Feed::new(d, StalePolicy::FailClosed, d);
        feed.mark_fresh(Stamp::now(), 1_000 * HOUR);
        assert!(feed.lag().is_some_and(|l| l >= 1_000 * HOUR));
    }

    #[test]
    fn an_outlived_node_is_never_fresh_nor_answers_even_failing_open() {
        let d = Duration::from_secs(5);
        for policy in [StalePolicy::FailClosed, StalePolicy::FailOpen] {
            let feed = Feed::new(d, policy, d);
            feed.mark_fresh(Stamp::now(), Duration::ZERO);
            assert!(feed.is_fresh() && feed.may_answer());
            feed.outlived.store(true, Ordering::Release);
            feed.mark_fresh(Stamp::now(), Duration::ZERO);
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
        feed.mark_fresh(Stamp::now(), Duration::from_secs(60));
        match feed.readiness(&store).await {
            Err(NotReady::Stale { lag, bound: b }) => {
                assert!(lag >= Duration::from_secs(60));
                assert_eq!(b, bound);
            }
            other => panic!("{other:?}"),
        }
        feed.mark_fresh(Stamp::now(), Duration::ZERO);
        let ready = feed.readiness(&store).await.expect("ready");
        assert_eq!(ready.position, feed.cursor().position);
        assert!(ready.lag <= bound);
        feed.outlived.store(true, Ordering::Release);
        assert_eq!(feed.readiness(&store).await, Err(NotReady::Outlived));
    }
}
