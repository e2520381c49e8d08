//! Server-side sessions, their cookie keys and pre-login state: the operations behind
//! `routes/sessions.rs`. The rules are `veto_core`'s (`session`, `cookie`, `prelogin`); this is
//! where they meet the store and the in-memory state.
//!
//! Validation answers from memory while the change feed is fresh: the cookie MAC against the
//! decrypted key ring, revocation against the index, and the row from `session_cache` (read
//! from the store once, then kept current by the feed). A cache miss, or a node past its
//! staleness bound, reads the row from the store (one primary-key read).
//!
//! Touches are persisted at most once per `veto_core::session::TOUCH_COALESCE` (a minute) per
//! session: in between, this node holds the slid idle expiry in the revocation index (so its own
//! validations and its `sid` checks see it), while the store and other nodes see the last
//! write-back. The cost is bounded and in the safe direction: a crash loses at most a minute of
//! idle lifetime, and another node may end a session up to a minute early, never late.
//!
//! Session keys are created lazily: a tenant's first session or pre-login request (or a
//! rotation) creates its first active key, so tenants created before this feature, the
//! `default` tenant included, need no migration step, and tenants that never use sessions hold
//! no key.
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use veto_core::audit::AuditEvent;
use veto_core::cookie::{DEFAULT_KEY_RETENTION, SessionKeyRecord, SessionKeyStatus};
use veto_core::index::SessionTimes;
use veto_core::limits;
use veto_core::prelogin::{ConsumeError, NewPreLogin, PreLoginError, PreLoginRecord};
use veto_core::session::{
    InputError, NewSession, SessionPolicy, SessionReason, SessionRecord, is_session_id,
};
use veto_core::timeutil;
use veto_store::sessions::{SessionKeyInsert, StoredSession};
use veto_store::{Page, PageRequest};

use super::check_opt_text;
use crate::error::{ApiError, ApiResult};
use crate::mirror::Origin;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    pub actor_id: String,
    pub actor_type: String,
    /// IPv4 or IPv6; stored in canonical form.
    pub ip_address: Option<String>,
    /// Stored cut to 512 bytes, control characters replaced.
    pub user_agent: Option<String>,
    /// Sliding idle timeout; default 3600, at least 60.
    pub idle_timeout_seconds: Option<i64>,
    /// Absolute lifetime; default 28800, at most 30 days, at least the idle timeout.
    pub absolute_timeout_seconds: Option<i64>,
}

/// What a new session answers: the record, the cookie value to set, and the CSRF token (shown
/// only now; only its SHA-256 is stored).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSession {
    #[schema(value_type = Object)]
    pub session: SessionRecord,
    pub cookie: String,
    pub csrf_token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateSession {
    pub cookie: String,
    /// When given, it must be the session's CSRF token (`csrf_mismatch` otherwise).
    pub csrf_token: Option<String>,
    /// Slide the idle expiry (default true: a validation is activity).
    pub touch: Option<bool>,
    /// Answer only from a state holding every change up to this position (a `Veto-Position`
    /// header value), waiting up to 2 s for it; 503 `not_caught_up` otherwise.
    pub min_position: Option<String>,
}

/// A session signing key as listings show it: never the secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionKeyView {
    pub tenant: String,
    pub kid: String,
    #[schema(value_type = String)]
    pub status: SessionKeyStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A retired key verifies cookies until then.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retain_until: Option<OffsetDateTime>,
}

impl From<&SessionKeyRecord> for SessionKeyView {
    fn from(k: &SessionKeyRecord) -> Self {
        SessionKeyView {
            tenant: k.tenant.clone(),
            kid: k.kid.clone(),
            status: k.status,
            created_at: k.created_at,
            retain_until: k.retain_until,
        }
    }
}

/// What an actor's revoke-all answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActorRevokeResult {
    pub tenant: String,
    pub actor_type: String,
    pub actor_id: String,
    /// How many sessions this call revoked (sessions revoked before keep their revocation).
    pub revoked: usize,
    pub session_ids: Vec<String>,
    pub reason: Option<String>,
}

// `Debug` would print the verifier; these are never logged.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePreLogin {
    pub state: String,
    pub nonce: String,
    /// RFC 7636 code verifier: 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`. Stored encrypted.
    pub pkce_verifier: String,
    pub redirect_uri: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedPreLogin {
    pub cookie: String,
    /// The record is consumed at most once, and not at or after this time.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumePreLogin {
    pub cookie: String,
    pub state: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConsumedPreLogin {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_uri: Option<String>,
}

fn input(e: InputError) -> ApiError {
    ApiError::from(e)
}

/// The contract's 401 for a session cookie that does not validate.
fn rejected(r: SessionReason) -> ApiError {
    let detail = match r {
        SessionReason::Malformed => "the cookie is not a veto session cookie of this shape",
        SessionReason::BadSignature => {
            "the cookie's signature does not verify: it was altered, truncated or made for another tenant"
        }
        SessionReason::UnknownKey => {
            "the cookie names a key this tenant does not have (or no longer accepts); log in again"
        }
        SessionReason::Revoked => "the session was revoked; log in again",
        SessionReason::IdleExpired => "the session expired after inactivity; log in again",
        SessionReason::AbsoluteExpired => "the session reached its maximum lifetime; log in again",
        SessionReason::CsrfMismatch => "csrf_token is not this session's CSRF token",
    };
    ApiError::Rejected {
        reason: r.as_str(),
        detail: detail.to_owned(),
    }
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_unix(secs: i64) -> OffsetDateTime {
    timeutil::from_unix(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn times_of(r: &SessionRecord) -> SessionTimes {
    SessionTimes {
        last_seen: unix(r.last_seen_at),
        expires: unix(r.idle_expires_at),
    }
}

/// The policy a stored session was opened with (its idle timeout is stored; the absolute one is
/// what separates its two times).
fn policy_of(s: &StoredSession) -> ApiResult<SessionPolicy> {
    let r = &s.record;
    SessionPolicy::new(
        Duration::seconds(s.idle_timeout_seconds),
        r.absolute_expires_at - r.created_at,
    )
    .map_err(|e| ApiError::Internal(format!("stored session {} has bad timeouts: {e}", r.id)))
}

impl AppState {
    // ---- session keys ---------------------------------------------------------------------

    /// Makes sure the tenant has an active session key (see the module comment: keys are made
    /// on first use). Two nodes racing here end up with one key: the store inserts only when
    /// none is active, and both reload what it holds.
    async fn ensure_session_key(&self, actor: &str, tenant: &str) -> ApiResult<()> {
        if self.session_keys.has_signing_key(tenant) {
            return Ok(());
        }
        let mode = SessionKeyInsert::IfNoneActive;
        self.new_session_key(actor, tenant, "session_key.create", mode)
            .await?;
        Ok(())
    }

    /// A new active session key; the others keep verifying for the retention window (24 h).
    pub async fn rotate_session_key(&self, actor: &str, tenant: &str) -> ApiResult<SessionKeyView> {
        self.require_tenant(tenant)?;
        let mode = SessionKeyInsert::Rotate {
            retain_until: timeutil::now() + DEFAULT_KEY_RETENTION,
        };
        let rec = self
            .new_session_key(actor, tenant, "session_key.rotate", mode)
            .await?;
        Ok(SessionKeyView::from(&rec))
    }

    /// Generates a key, stores it (`mode`, audited as `action`) and reloads the tenant's keys.
    async fn new_session_key(
        &self,
        actor: &str,
        tenant: &str,
        action: &str,
        mode: SessionKeyInsert,
    ) -> ApiResult<SessionKeyRecord> {
        if self.session_keys.count(tenant) >= limits::SESSION_KEYS_PER_TENANT {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} holds {} session keys, the most it may; retired ones go with the purge 24 h after their rotation",
                limits::SESSION_KEYS_PER_TENANT
            )));
        }
        let rec = SessionKeyRecord::generate(tenant, &self.master, timeutil::now())
            .map_err(|e| ApiError::Internal(format!("cannot create a session key: {e}")))?;
        let audit = AuditEvent::new(tenant, actor, action, &rec.kid);
        let written = self.store.insert_session_key(&rec, mode, &audit).await?;
        if !self.applied(written).await? {
            // Another node's first key won the race: load it (the feed would, a little later).
            self.mirror.reload_session_keys(tenant).await?;
        }
        Ok(rec)
    }

    pub async fn list_session_keys(&self, tenant: &str) -> ApiResult<Vec<SessionKeyView>> {
        self.require_tenant(tenant)?;
        let recs = self.store.list_session_keys(tenant).await?;
        Ok(recs.iter().map(SessionKeyView::from).collect())
    }

    // ---- sessions -------------------------------------------------------------------------

    pub async fn create_session(
        &self,
        actor: &str,
        tenant: &str,
        req: &CreateSession,
    ) -> ApiResult<CreatedSession> {
        let t = self.require_tenant(tenant)?;
        let policy =
            SessionPolicy::from_seconds(req.idle_timeout_seconds, req.absolute_timeout_seconds)
                .map_err(input)?;
        let new = NewSession {
            tenant,
            actor_id: &req.actor_id,
            actor_type: &req.actor_type,
            ip_address: req.ip_address.as_deref(),
            user_agent: req.user_agent.as_deref(),
        };
        let (record, csrf_token) =
            SessionRecord::new(&new, &policy, timeutil::now()).map_err(input)?;
        if t.suspended {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} is suspended; resume it before opening sessions"
            )));
        }
        self.ensure_session_key(actor, tenant).await?;
        let cookie = self
            .session_keys
            .sign(tenant, &record.id)
            .ok_or_else(|| ApiError::Internal("no session key to sign with".into()))?;
        let stored = StoredSession {
            record,
            idle_timeout_seconds: policy.idle().whole_seconds(),
        };
        self.applied(self.store.create_session(&stored).await?)
            .await?;
        // Opened here, most likely validated here next; and this node knows the activity time
        // the change does not carry.
        self.session_cache.insert(Arc::new(stored.clone()));
        let session = stored.record;
        self.index
            .note_session(tenant, &session.id, times_of(&session));
        Ok(CreatedSession {
            session,
            cookie,
            csrf_token,
        })
    }

    /// The stored record with what this node knows beyond it: activity not yet written back
    /// (see the module comment), or a revocation the store does not show yet cannot happen
    /// (the store is written first), so only times are merged.
    fn with_local_activity(&self, mut r: SessionRecord) -> SessionRecord {
        if r.revoked_at.is_some() {
            // Another node revoked it and the feed has not told us yet: now we know.
            self.index.revoke_session(&r.tenant, &r.id);
            return r;
        }
        if let Some(t) = self.index.session_times(&r.tenant, &r.id) {
            r.last_seen_at = r.last_seen_at.max(from_unix(t.last_seen));
            r.idle_expires_at = r
                .idle_expires_at
                .max(from_unix(t.expires))
                .min(r.absolute_expires_at);
        }
        r
    }

    async fn stored_session(&self, tenant: &str, id: &str) -> ApiResult<StoredSession> {
        self.require_tenant(tenant)?;
        self.store
            .get_session(tenant, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no session {id:?} in tenant {tenant:?}")))
    }

    pub async fn get_session(&self, tenant: &str, id: &str) -> ApiResult<SessionRecord> {
        let s = self.stored_session(tenant, id).await?;
        Ok(self.with_local_activity(s.record))
    }

    /// Checks a cookie (and CSRF token) and, with `touch`, slides the idle expiry, writing it
    /// back when the stored one is at least `TOUCH_COALESCE` old.
    pub async fn validate_session(
        &self,
        tenant: &str,
        req: &ValidateSession,
    ) -> ApiResult<SessionRecord> {
        self.require_tenant(tenant)?;
        let now = timeutil::now();
        let id = self
            .session_keys
            .verify(tenant, &req.cookie, now)
            .map_err(rejected)?;
        // A suspended tenant's sessions stop with its tokens (and resume with them): the
        // session rows are left as they are, the answer is `revoked` while suspended.
        // A revocation is final, and the index has it before any cache or store read could
        // disagree (this node's own write, or the feed): asked first, whatever the freshness.
        if self.index.tenant(tenant).suspended || self.index.session_revoked(tenant, &id) {
            return Err(rejected(SessionReason::Revoked));
        }
        // A well-signed cookie whose row is gone: the purge removes sessions only long after
        // their absolute expiry.
        let Some(stored) = self.session_row(tenant, &id).await? else {
            return Err(rejected(SessionReason::AbsoluteExpired));
        };
        let persisted_seen = stored.record.last_seen_at;
        let mut rec = self.with_local_activity(stored.record.clone());
        rec.validate(now, req.csrf_token.as_deref())
            .map_err(rejected)?;
        if req.touch.unwrap_or(true) && rec.touch(now, &policy_of(&stored)?) {
            self.index.note_session(tenant, &id, times_of(&rec));
            if rec.needs_write_back(persisted_seen, now) {
                // The answer stands without it: this node holds the touch, and a failed
                // write-back costs at most the coalescing window if the node then dies.
                let written = self
                    .store
                    .touch_session(tenant, &id, rec.last_seen_at, rec.idle_expires_at)
                    .await;
                match written {
                    Ok(w) => {
                        if let Err(e) = self.mirror.apply(&w.changes, Origin::Local).await {
                            tracing::warn!(error = %e, "applying a session touch failed");
                        }
                        // The activity time, which the change does not carry.
                        self.session_cache.persisted_touch(
                            tenant,
                            &id,
                            Some(rec.last_seen_at),
                            rec.idle_expires_at,
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "session touch write-back failed"),
                }
            }
        }
        Ok(rec)
    }

    /// The session's row for validation: from memory while the feed is fresh (see
    /// `session_cache` for why that is as current as the feed), otherwise from the store, whose
    /// answer is then kept. A stale node does not trust the cache even under `VETO_FAIL_OPEN`:
    /// the store is there to ask, and when it is not, the answer is a 503.
    async fn session_row(&self, tenant: &str, id: &str) -> ApiResult<Option<Arc<StoredSession>>> {
        let fresh = self.feed.is_fresh();
        if fresh && let Some(s) = self.session_cache.get(tenant, id) {
            crate::metrics::session_lookup("hit");
            return Ok(Some(s));
        }
        crate::metrics::session_lookup(if fresh { "miss" } else { "stale" });
        let Some(s) = self.store.get_session(tenant, id).await? else {
            return Ok(None);
        };
        let s = Arc::new(s);
        self.session_cache.insert(s.clone());
        Ok(Some(s))
    }

    pub async fn list_sessions(
        &self,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        page: &PageRequest,
    ) -> ApiResult<Page<SessionRecord>> {
        self.require_tenant(tenant)?;
        let mut p = self
            .store
            .list_active_sessions(tenant, actor_type, actor_id, timeutil::now(), page)
            .await?;
        p.items = p
            .items
            .into_iter()
            .map(|r| self.with_local_activity(r))
            .collect();
        Ok(p)
    }

    fn revoke_audit(actor: &str, tenant: &str, target: &str, reason: Option<&str>) -> AuditEvent {
        AuditEvent::new(tenant, actor, "session.revoke", target).with_reason(reason)
    }

    pub async fn revoke_session(
        &self,
        actor: &str,
        tenant: &str,
        id: &str,
        reason: Option<&str>,
    ) -> ApiResult<SessionRecord> {
        check_opt_text("reason", reason, limits::REASON)?;
        self.require_tenant(tenant)?;
        let audit = Self::revoke_audit(actor, tenant, id, reason);
        let written = self.store.revoke_session(tenant, id, &audit).await?;
        let out = self
            .applied(written)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no session {id:?} in tenant {tenant:?}")))?;
        if !out.newly {
            // Revoked before, perhaps on another node whose change this node has not read yet:
            // a revocation is final, so what the store shows can be taken at once.
            self.index.revoke_session(tenant, id);
            self.session_cache.remove(tenant, id);
        }
        Ok(out.record)
    }

    /// Revokes every session of the actor (logout everywhere), one audit event per session.
    pub async fn revoke_actor_sessions(
        &self,
        actor: &str,
        tenant: &str,
        actor_type: &str,
        actor_id: &str,
        reason: Option<&str>,
    ) -> ApiResult<ActorRevokeResult> {
        check_opt_text("reason", reason, limits::REASON)?;
        self.require_tenant(tenant)?;
        let target = format!("{actor_type}/{actor_id}");
        let audit = Self::revoke_audit(actor, tenant, &target, reason).with_metadata(
            serde_json::json!({"actor_type": actor_type, "actor_id": actor_id, "revoke_all": true}),
        );
        let written = self
            .store
            .revoke_actor_sessions(tenant, actor_type, actor_id, &audit)
            .await?;
        let ids = self.applied(written).await?;
        Ok(ActorRevokeResult {
            tenant: tenant.to_owned(),
            actor_type: actor_type.to_owned(),
            actor_id: actor_id.to_owned(),
            revoked: ids.len(),
            session_ids: ids,
            reason: reason.map(str::to_owned),
        })
    }

    /// For a token about to be issued with `sid`: a veto session id must name a session of
    /// the tenant that is neither revoked nor expired (a token for a dead session would only
    /// ever be rejected, and one issued after the session's row is purged would not be). Any
    /// other `sid` is the caller's own identifier and is not checked.
    pub(crate) async fn require_live_session(&self, tenant: &str, sid: &str) -> ApiResult<()> {
        if !is_session_id(sid) {
            return Ok(());
        }
        let now = timeutil::now();
        let dead = || {
            ApiError::field(
                "sid",
                format!("session {sid:?} is revoked or expired; open a new session"),
            )
        };
        if self.index.session_revoked(tenant, sid) {
            return Err(dead());
        }
        if let Some(t) = self.index.session_times(tenant, sid)
            && unix(now) < t.expires
        {
            return Ok(());
        }
        // Unknown here (created on another node a moment ago) or expired by this node's view:
        // the store decides.
        let Some(s) = self.store.get_session(tenant, sid).await? else {
            return Err(ApiError::field(
                "sid",
                format!("no session {sid:?} in tenant {tenant:?}"),
            ));
        };
        let rec = self.with_local_activity(s.record);
        rec.check(now).map_err(|_| dead())?;
        self.index.note_session(tenant, sid, times_of(&rec));
        Ok(())
    }

    // ---- pre-login ------------------------------------------------------------------------

    pub async fn create_prelogin(
        &self,
        actor: &str,
        tenant: &str,
        req: &CreatePreLogin,
    ) -> ApiResult<CreatedPreLogin> {
        self.require_tenant(tenant)?;
        let new = NewPreLogin {
            state: &req.state,
            nonce: &req.nonce,
            pkce_verifier: &req.pkce_verifier,
            redirect_uri: req.redirect_uri.as_deref(),
        };
        let rec = PreLoginRecord::new(tenant, &new, &self.master, timeutil::now()).map_err(
            |e| match e {
                PreLoginError::Input(e) => input(e),
                PreLoginError::Key(e) => ApiError::Internal(format!("cannot seal: {e}")),
            },
        )?;
        self.ensure_session_key(actor, tenant).await?;
        let cookie = self
            .session_keys
            .sign_prelogin(tenant, &rec.id)
            .ok_or_else(|| ApiError::Internal("no session key to sign with".into()))?;
        self.store.insert_prelogin(&rec).await?;
        Ok(CreatedPreLogin {
            cookie,
            expires_at: rec.expires_at,
        })
    }

    /// Hands the stored state back exactly once: the record is deleted as it is read, whatever
    /// follows (so a wrong `state` cannot be retried against it).
    pub async fn consume_prelogin(
        &self,
        tenant: &str,
        req: &ConsumePreLogin,
    ) -> ApiResult<ConsumedPreLogin> {
        self.require_tenant(tenant)?;
        let now = timeutil::now();
        let gone = || {
            ApiError::Gone(
                "the pre-login state was already consumed, has expired, or never existed; start the login again"
                    .into(),
            )
        };
        let id = match self.session_keys.verify_prelogin(tenant, &req.cookie, now) {
            Ok(id) => id,
            // A key past its retention signed nothing still alive.
            Err(SessionReason::UnknownKey) => return Err(gone()),
            Err(r) => {
                return Err(ApiError::field(
                    "cookie",
                    format!(
                        "not a pre-login cookie of tenant {tenant:?} ({})",
                        r.as_str()
                    ),
                ));
            }
        };
        let rec = self
            .store
            .take_prelogin(tenant, &id)
            .await?
            .ok_or_else(gone)?;
        match rec.consume(&req.state, &self.master, now) {
            Ok(s) => Ok(ConsumedPreLogin {
                state: s.state,
                nonce: s.nonce,
                pkce_verifier: s.pkce_verifier.as_str().to_owned(),
                redirect_uri: s.redirect_uri,
            }),
            Err(ConsumeError::Expired) => Err(gone()),
            Err(ConsumeError::WrongState) => Err(ApiError::field(
                "state",
                "does not match the state stored for this login; the pre-login state is spent, start the login again",
            )),
            Err(ConsumeError::Sealed(e)) => Err(ApiError::Internal(format!(
                "stored PKCE verifier does not open: {e}"
            ))),
        }
    }
}
