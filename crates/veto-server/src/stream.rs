//! The revocation stream of one tenant (docs/stream.md): a snapshot or a resume from the log,
//! then every change this node's feed reads, and heartbeats while the node is fresh.
//!
//! A stream follows the node's change feed, not its own writes, so every node serves the same
//! events in the same (log) order, and a stream never shows a change before the node could read
//! it back from the log. Each subscriber has a task that feeds a small channel the response body
//! reads; the channel's bound and the feed's broadcast bound (`Feed::subscribe`) are what a slow
//! subscriber can make the node hold. One that falls behind is dropped and resumes by its last
//! event id.
//!
//! No gap between the catch-up and the follow: the task subscribes to the feed's reads *before*
//! it reads the log, so every read published from then on reaches it; whatever was published
//! before is in the log, which it reads next (only final changes, as the feed does). Changes it
//! then gets twice (read from the log and published) are skipped by cursor.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use veto_store::{Change, ChangeKind, Database, FeedCursor, TenantRevocationState};

use crate::auth::ApiKeys;
use crate::feed::Feed;
use crate::metrics;

/// Entries (all arrays together) per snapshot event.
const SNAPSHOT_PART: usize = 5_000;

/// Changes per read of the log while catching up.
const CATCH_UP_READ: u32 = 5_000;

/// Events queued per subscriber between its task and its response body.
const QUEUE: usize = 16;

/// What a stream needs from the node.
#[derive(Clone)]
pub struct Streams {
    pub store: Arc<dyn Database>,
    pub feed: Arc<Feed>,
    pub heartbeat: Duration,
    /// To end a stream whose API key was deleted (checked at every heartbeat).
    pub api_keys: ApiKeys,
}

/// Why a resume position is refused before the stream starts.
#[derive(Debug)]
pub enum OpenError {
    Store(veto_store::StoreError),
}

impl Streams {
    /// Where the stream starts: after `resume` when the log still holds everything after it
    /// and this node's feed has read that far, else (`None`) with a snapshot. A position just
    /// written (on this node or another) is waited for, as a `min_position` is; one the feed
    /// does not reach in that time never came from this log, and starting after it could skip
    /// changes, so it is treated as unknown.
    async fn start_after(
        &self,
        resume: Option<FeedCursor>,
    ) -> Result<Option<FeedCursor>, OpenError> {
        let Some(resume) = resume else {
            return Ok(None);
        };
        let oldest = self.store.oldest_change().await.map_err(OpenError::Store)?;
        if oldest.is_none_or(|o| o > resume) {
            return Ok(None);
        }
        let reached = self
            .feed
            .wait_for(resume, crate::position::MIN_POSITION_WAIT)
            .await;
        Ok(reached.then_some(resume))
    }

    /// The event stream of `tenant` for the API key whose hash is `key`, resuming after
    /// `resume` when possible. It ends once that key is deleted: taking a key back takes its
    /// streams with it.
    pub async fn open(
        &self,
        tenant: String,
        key: [u8; 32],
        resume: Option<FeedCursor>,
    ) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>, OpenError> {
        // Subscribed before anything is read: see the module comment.
        let published = self.feed.subscribe();
        let start = self.start_after(resume).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let me = self.clone();
        tokio::spawn(async move {
            metrics::stream_subscribers(1.0);
            let ended = me.run(&tenant, &key, start, published, &tx).await;
            metrics::stream_subscribers(-1.0);
            if let Err(why) = ended {
                metrics::stream_ended(why.label());
                tracing::debug!(tenant, why = why.label(), "revocation stream ended");
            }
        });
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|e| (Ok(e), rx))
        }))
    }

    async fn run(
        &self,
        tenant: &str,
        key: &[u8; 32],
        start: Option<FeedCursor>,
        mut published: broadcast::Receiver<Arc<[Change]>>,
        tx: &mpsc::Sender<Event>,
    ) -> Result<(), End> {
        let mut last = match start {
            Some(after) => after,
            None => self.snapshot(tenant, tx).await?,
        };
        loop {
            let changes = self
                .store
                .changes_after(last, CATCH_UP_READ)
                .await
                .map_err(|_| End::Store)?;
            send_changes(tenant, &changes, &mut last, tx).await?;
            if changes.len() < CATCH_UP_READ as usize {
                break;
            }
        }
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.feed.closed() => return Ok(()),
                () = tx.closed() => return Err(End::Gone),
                read = published.recv() => {
                    let changes = read.map_err(End::from)?;
                    send_changes(tenant, &changes, &mut last, tx).await?;
                }
                _ = beat.tick() => {
                    if self.api_keys.by_hash(key).is_none() {
                        return Err(End::KeyDeleted);
                    }
                    self.heartbeat(tenant, &mut published, &mut last, tx).await?;
                }
            }
        }
    }

    /// A heartbeat, only while the node is fresh. Its age is sampled *before* the reads already
    /// published are sent: every change that age vouches for was published before the sample
    /// (the feed marks itself fresh after publishing), so it goes out before the heartbeat.
    async fn heartbeat(
        &self,
        tenant: &str,
        published: &mut broadcast::Receiver<Arc<[Change]>>,
        last: &mut FeedCursor,
        tx: &mpsc::Sender<Event>,
    ) -> Result<(), End> {
        let fresh = self.feed.is_fresh();
        let lag = self.feed.lag();
        loop {
            match published.try_recv() {
                Ok(changes) => send_changes(tenant, &changes, last, tx).await?,
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(_)) => return Err(End::Lagged),
                Err(broadcast::error::TryRecvError::Closed) => return Err(End::Gone),
            }
        }
        let (true, Some(lag)) = (fresh, lag) else {
            return Ok(());
        };
        let position = last.to_string();
        let data =
            json!({"kind": "heartbeat", "position": position, "age_ms": lag.as_millis() as u64});
        send(tx, event("heartbeat", &position, &data)).await
    }

    /// Sends the tenant's state in parts; returns the cursor it is consistent with.
    async fn snapshot(&self, tenant: &str, tx: &mpsc::Sender<Event>) -> Result<FeedCursor, End> {
        let now = veto_core::timeutil::now();
        let mut state = self
            .store
            .tenant_revocation_state(tenant, now)
            .await
            .map_err(|_| End::Store)?
            .ok_or(End::NoTenant)?;
        self.make_exact(tenant, &mut state, now.unix_timestamp())
            .await?;
        let position = state.cursor.to_string();
        let parts = snapshot_parts(&state);
        let count = parts.len();
        for (i, mut part) in parts.into_iter().enumerate() {
            if let Some(o) = part.as_object_mut() {
                o.insert("kind".into(), "snapshot".into());
                o.insert("position".into(), position.clone().into());
                o.insert("part".into(), i.into());
                o.insert("last".into(), (i + 1 == count).into());
            }
            send(tx, event("snapshot", &position, &part)).await?;
        }
        Ok(state.cursor)
    }
}

impl Streams {
    /// Brings a snapshot that already holds changes after its cursor (on PostgreSQL, those that
    /// committed while an older transaction was still open) to the cursor of the last of them,
    /// folding in the changes of that stretch it did not hold. Without this the snapshot's
    /// position would precede changes it contains, and a subscriber would receive them again
    /// after it, or again after resuming from it: a client counting revocations (veto-verify's
    /// index counts holders of a fingerprint) must see each change exactly once.
    async fn make_exact(
        &self,
        tenant: &str,
        state: &mut TenantRevocationState,
        now: i64,
    ) -> Result<(), End> {
        let Some(&to) = state.included_after.last() else {
            return Ok(());
        };
        // Once the feed has read `to`, every transaction below it has ended, so the log holds
        // every change up to `to` that will ever exist.
        if !self
            .feed
            .wait_for(to, crate::position::MIN_POSITION_WAIT)
            .await
        {
            return Err(End::Behind);
        }
        let mut after = state.cursor;
        let mut stretch = Vec::new();
        loop {
            let read = self
                .store
                .changes_after(after, CATCH_UP_READ)
                .await
                .map_err(|_| End::Store)?;
            let Some(last) = read.last().map(|c| c.cursor) else {
                break;
            };
            stretch.extend(read.into_iter().filter(|c| c.cursor <= to));
            if last >= to {
                break;
            }
            after = last;
        }
        state.fold(tenant, &stretch, to, now);
        Ok(())
    }
}

/// Why a stream ended other than by shutdown.
#[derive(Debug)]
enum End {
    /// The subscriber went away.
    Gone,
    /// It fell more than the broadcast bound behind (it resumes by its last event id).
    Lagged,
    /// The store failed (the subscriber reconnects and resumes).
    Store,
    /// The tenant vanished between the request and the snapshot.
    NoTenant,
    /// The subscriber's API key was deleted.
    KeyDeleted,
    /// The node's feed did not reach a snapshot's position in time (the subscriber retries).
    Behind,
}

impl End {
    fn label(&self) -> &'static str {
        match self {
            End::Gone => "gone",
            End::Lagged => "lagged",
            End::Store => "store",
            End::NoTenant => "no_tenant",
            End::KeyDeleted => "key_deleted",
            End::Behind => "behind",
        }
    }
}

impl From<broadcast::error::RecvError> for End {
    fn from(e: broadcast::error::RecvError) -> End {
        match e {
            broadcast::error::RecvError::Lagged(_) => End::Lagged,
            broadcast::error::RecvError::Closed => End::Gone,
        }
    }
}

async fn send(tx: &mpsc::Sender<Event>, e: Event) -> Result<(), End> {
    tx.send(e).await.map_err(|_| End::Gone)
}

/// The tenant's changes among `changes` that come after `last`, sent in order; `last` moves
/// past every change read, the other tenants' too.
async fn send_changes(
    tenant: &str,
    changes: &[Change],
    last: &mut FeedCursor,
    tx: &mpsc::Sender<Event>,
) -> Result<(), End> {
    for c in changes {
        if c.cursor <= *last {
            continue;
        }
        *last = c.cursor;
        if c.tenant != tenant {
            continue;
        }
        if let Some(data) = change_data(c) {
            let position = c.cursor.to_string();
            send(tx, event("change", &position, &data)).await?;
        }
    }
    Ok(())
}

fn event(name: &str, id: &str, data: &Value) -> Event {
    Event::default().event(name).id(id).data(data.to_string())
}

/// A change as a stream event's data, or `None` for kinds that revoke nothing a verifier
/// checks (tenant creation, API keys, session cookie keys) and rows this version cannot read
/// (the mirror reports those; a restart loads what they describe).
fn change_data(c: &Change) -> Option<Value> {
    use ChangeKind::*;
    let members = match &c.kind {
        TenantCreated | ApiKeyInserted { .. } | ApiKeyDeleted { .. } => return None,
        SessionKeyInserted { .. } | Unreadable { .. } => return None,
        // Status list bookkeeping revokes nothing: a verifier on the stream judges tokens by
        // the revocations themselves, which the stream carries.
        StatusListCreated { .. } | StatusEntryAllocated { .. } | StatusEntryPurged { .. } => {
            return None;
        }
        TenantStatusList { .. } => return None,
        TenantSuspended | TenantResumed => json!({}),
        TenantCutoff { not_before_iat } => json!({"not_before_iat": not_before_iat}),
        SubjectCutoff {
            sub,
            not_before_iat,
        } => json!({"sub": sub, "not_before_iat": not_before_iat}),
        Revoked { jti, until } => json!({"jti": jti, "until": until}),
        Lifted { jti } | RevocationPurged { jti } => json!({"jti": jti}),
        CutoffPurged { sub } => json!({"sub": (!sub.is_empty()).then_some(sub)}),
        SigningKeyInserted { kid } | SigningKeyRetired { kid } | SigningKeyRevoked { kid } => {
            json!({"kid": kid})
        }
        SessionCreated {
            id,
            idle_expires_at,
        }
        | SessionTouched {
            id,
            idle_expires_at,
        } => json!({"session": id, "expires": idle_expires_at}),
        SessionRevoked { id } | SessionPurged { id } => json!({"session": id}),
        RefreshFamilyRevoked { family } | RefreshFamilyPurged { family } => {
            json!({"family": family})
        }
    };
    let mut data = members;
    if let Some(o) = data.as_object_mut() {
        o.insert("kind".into(), c.kind.name().into());
        o.insert("position".into(), c.cursor.to_string().into());
        o.insert("at".into(), c.at.into());
    }
    Some(data)
}

/// The state as snapshot parts of at most `SNAPSHOT_PART` entries each (part 0 also carries
/// the tenant's own state); always at least one part.
fn snapshot_parts(s: &TenantRevocationState) -> Vec<Value> {
    let entries = s
        .subject_cutoffs
        .iter()
        .map(|(sub, nbf)| {
            (
                "subject_cutoffs",
                json!({"sub": sub, "not_before_iat": nbf}),
            )
        })
        .chain(
            s.revocations
                .iter()
                .map(|(jti, until)| ("revocations", json!({"jti": jti, "until": until}))),
        )
        .chain(s.revoked_keys.iter().map(|k| ("revoked_keys", json!(k))))
        .chain(
            s.sessions
                .iter()
                .map(|(id, exp)| ("sessions", json!({"session": id, "expires": exp}))),
        )
        .chain(
            s.revoked_sessions
                .iter()
                .map(|id| ("revoked_sessions", json!(id))),
        )
        .chain(
            s.revoked_families
                .iter()
                .map(|f| ("revoked_families", json!(f))),
        );
    let mut parts = vec![json!({
        "tenant_suspended": s.suspended,
        "tenant_cutoff": s.tenant_cutoff,
    })];
    let mut in_part = 0;
    for (array, entry) in entries {
        if in_part == SNAPSHOT_PART {
            parts.push(json!({}));
            in_part = 0;
        }
        if let Some(o) = parts.last_mut().and_then(Value::as_object_mut) {
            let list = o.entry(array).or_insert_with(|| Value::Array(Vec::new()));
            if let Some(list) = list.as_array_mut() {
                list.push(entry);
            }
        }
        in_part += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_state_goes_out_in_bounded_parts_with_every_entry_once() {
        let state = TenantRevocationState {
            suspended: true,
            tenant_cutoff: Some(7),
            revocations: (0..12_001).map(|i| (format!("j{i}"), None)).collect(),
            revoked_sessions: vec!["s1".into()],
            ..Default::default()
        };
        let parts = snapshot_parts(&state);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0]["tenant_suspended"], true);
        assert_eq!(parts[0]["tenant_cutoff"], 7);
        let count = |p: &Value| {
            p.as_object()
                .into_iter()
                .flatten()
                .filter_map(|(_, v)| v.as_array().map(Vec::len))
                .sum::<usize>()
        };
        assert!(parts.iter().all(|p| count(p) <= SNAPSHOT_PART));
        assert_eq!(parts.iter().map(count).sum::<usize>(), 12_002);
        assert_eq!(parts[2]["revoked_sessions"], json!(["s1"]));
        let empty = snapshot_parts(&TenantRevocationState::default());
        assert_eq!(empty.len(), 1, "an empty state is still one (last) part");
    }

    #[test]
    fn every_revoking_kind_is_sent_and_bookkeeping_kinds_are_not() {
        let change = |kind| Change {
            cursor: FeedCursor {
                xid: 0,
                position: 9,
            },
            tenant: "acme".into(),
            kind,
            at: 100,
        };
        let d = change_data(&change(ChangeKind::Revoked {
            jti: "j".into(),
            until: None,
        }))
        .expect("sent");
        assert_eq!(
            d,
            json!({"kind": "revocation", "position": "0:9", "at": 100, "jti": "j", "until": null})
        );
        let d = change_data(&change(ChangeKind::CutoffPurged { sub: "".into() })).expect("sent");
        assert_eq!(d["sub"], Value::Null);
        let d = change_data(&change(ChangeKind::SessionTouched {
            id: "s".into(),
            idle_expires_at: 5,
        }))
        .expect("sent");
        assert_eq!(
            (d["kind"].as_str(), &d["expires"]),
            (Some("session.touch"), &json!(5))
        );
        for quiet in [
            ChangeKind::TenantCreated,
            ChangeKind::ApiKeyInserted { id: "a".into() },
            ChangeKind::SessionKeyInserted { kid: "k".into() },
        ] {
            assert!(change_data(&change(quiet)).is_none());
        }
    }
}
