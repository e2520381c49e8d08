//! Revoking tokens by jti: one, a batch of up to 10,000 in one transaction, temporary
//! suspensions and their early lift. Every item is validated before anything is written, and a
//! repeat of a jti changes nothing (the first revocation stands).
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use veto_core::Reason;
use veto_core::apikey::ApiKeyRecord;
use veto_core::audit::AuditEvent;
use veto_core::limits;
use veto_core::revocation::{Revocation, RevocationFilter, RevocationStats, RevocationStatus};
use veto_core::timeutil;
use veto_store::{LiftOutcome, Page, PageRequest, RevokeOutcome};

use super::{check_ident, check_opt_text};
use crate::error::{ApiError, ApiResult};
use crate::metrics;
use crate::state::AppState;

/// Largest `metadata` object accepted per revocation, serialised.
const MAX_METADATA_BYTES: usize = 4096;
pub const MAX_BATCH: usize = 10_000;

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The jti to revoke; or give `token`.
    pub jti: Option<String>,
    /// A token of this tenant: jti, sub and expiry are taken from it once its signature verifies.
    pub token: Option<String>,
    pub sub: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "veto_core::strict_json::optional_value")]
    pub metadata: Option<Value>,
    /// A temporary suspension that lifts by itself at this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BatchRevokeResult {
    pub created: u64,
    /// Items whose jti was already revoked, including those made permanent.
    pub existing: u64,
    /// Of `existing`: suspensions that a permanent item of the batch made permanent. Left out
    /// when 0, so that the contract's `{"created", "existing"}` stays the whole answer then.
    #[serde(skip_serializing_if = "is_zero")]
    pub made_permanent: u64,
}

impl AppState {
    /// Turns a request into the record to store, or the 400 that says what to fix.
    fn revocation_record(
        &self,
        tenant: &str,
        actor: &str,
        req: &RevokeRequest,
        now: OffsetDateTime,
    ) -> ApiResult<Revocation> {
        check_opt_text("reason", req.reason.as_deref(), limits::REASON)?;
        let metadata = match &req.metadata {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => {
                if serde_json::to_vec(v).map_or(usize::MAX, |b| b.len()) > MAX_METADATA_BYTES {
                    return Err(ApiError::field(
                        "metadata",
                        format!("at most {MAX_METADATA_BYTES} bytes of JSON"),
                    ));
                }
                v.clone()
            }
            Some(_) => return Err(ApiError::field("metadata", "must be a JSON object")),
        };
        if let Some(u) = req.until
            && u <= now
        {
            return Err(ApiError::field(
                "until",
                "must be in the future; omit it for a permanent revocation",
            ));
        }
        let (jti, sub, expires_at) = match (&req.jti, &req.token) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("give either jti or token, not both"));
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "give the jti to revoke, or the token",
                ));
            }
            (Some(jti), None) => {
                check_ident("jti", jti, limits::IDENTIFIER)?;
                if let Some(s) = &req.sub {
                    check_ident("sub", s, limits::IDENTIFIER)?;
                }
                let default_expiry = now + time::Duration::seconds(self.config.max_token_ttl);
                (
                    jti.clone(),
                    req.sub.clone(),
                    req.expires_at.unwrap_or(default_expiry),
                )
            }
            (None, Some(token)) => {
                let v = self.verify_for_revocation(tenant, token).map_err(|r| {
                    ApiError::field(
                        "token",
                        format!(
                            "not a token of tenant {tenant:?} ({}); revoke by jti instead",
                            r.as_str()
                        ),
                    )
                })?;
                if req.sub.is_some() || req.expires_at.is_some() {
                    return Err(ApiError::bad_request(
                        "sub and expires_at come from the token; do not give them with token",
                    ));
                }
                let exp = timeutil::from_unix(v.exp).unwrap_or(now);
                (v.jti.into(), v.sub.map(Into::into), exp)
            }
        };
        Ok(Revocation {
            jti,
            tenant: tenant.to_owned(),
            sub,
            expires_at,
            revoked_at: now,
            reason: req.reason.clone(),
            revoked_by: actor.to_owned(),
            metadata,
            until: req.until,
            status: RevocationStatus::of(req.until),
        })
    }

    fn audit_for(rec: &Revocation) -> AuditEvent {
        let action = if rec.until.is_some() {
            "revocation.suspend"
        } else {
            "revocation.create"
        };
        AuditEvent::new(&rec.tenant, &rec.revoked_by, action, &rec.jti)
            .with_reason(rec.reason.as_deref())
            .with_metadata(rec.metadata.clone())
    }

    pub async fn revoke(
        &self,
        tenant: &str,
        actor: &str,
        req: &RevokeRequest,
    ) -> ApiResult<RevokeOutcome> {
        self.require_tenant(tenant)?;
        let rec = self.revocation_record(tenant, actor, req, timeutil::now())?;
        let written = self
            .store
            .insert_revocation(&rec, &Self::audit_for(&rec))
            .await?;
        let out = self.applied(written).await?;
        // A suspension made permanent is a new permanent revocation for metrics and the mirror.
        if out.created || out.made_permanent {
            metrics::revoked(out.record.reason.as_deref(), out.record.until, 1);
            if let Some(r) = self.redis() {
                r.mirror_revocations(vec![out.record.clone()]);
            }
        }
        Ok(out)
    }

    /// Validates every item first; one bad item rejects the batch (400 naming its index) and
    /// nothing is written. Otherwise all items go in one transaction.
    pub async fn revoke_batch(
        &self,
        tenant: &str,
        actor: &str,
        reqs: &[RevokeRequest],
    ) -> ApiResult<BatchRevokeResult> {
        self.require_tenant(tenant)?;
        if reqs.is_empty() || reqs.len() > MAX_BATCH {
            return Err(ApiError::field(
                "revocations",
                format!("give 1 to {MAX_BATCH} items"),
            ));
        }
        let now = timeutil::now();
        let mut recs = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            let rec = self
                .revocation_record(tenant, actor, r, now)
                .map_err(|e| e.at_index(i))?;
            let audit = Self::audit_for(&rec);
            recs.push((rec, audit));
        }
        let written = self.store.insert_revocations(&recs).await?;
        let (created, existing, new) = self.applied(written).await?;
        // `new`: the created records, then the suspensions made permanent.
        let made_permanent = new.len() as u64 - created;
        for r in &new {
            metrics::revoked(r.reason.as_deref(), r.until, 1);
        }
        if let Some(r) = self.redis() {
            r.mirror_revocations(new);
        }
        Ok(BatchRevokeResult {
            created,
            existing,
            made_permanent,
        })
    }

    pub async fn get_revocation(&self, tenant: &str, jti: &str) -> ApiResult<Revocation> {
        self.require_tenant(tenant)?;
        self.store
            .get_revocation(tenant, jti)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("no revocation of jti {jti:?} in tenant {tenant:?}"))
            })
    }

    pub async fn list_revocations(
        &self,
        tenant: &str,
        filter: &RevocationFilter,
        page: &PageRequest,
    ) -> ApiResult<Page<Revocation>> {
        self.require_tenant(tenant)?;
        Ok(self.store.list_revocations(tenant, filter, page).await?)
    }

    pub async fn revocation_stats(&self, tenant: &str) -> ApiResult<RevocationStats> {
        self.require_tenant(tenant)?;
        Ok(self.store.revocation_stats(tenant, timeutil::now()).await?)
    }

    /// Lifts a temporary suspension early. Permanent revocations stay: 409.
    pub async fn lift(&self, tenant: &str, actor: &str, jti: &str) -> ApiResult<()> {
        self.require_tenant(tenant)?;
        let audit = AuditEvent::new(tenant, actor, "revocation.lift", jti);
        let written = self.store.lift_suspension(tenant, jti, &audit).await?;
        match self.applied(written).await? {
            LiftOutcome::Lifted(_) => {
                if let Some(r) = self.redis() {
                    r.unmirror_revocation(tenant, jti);
                }
                Ok(())
            }
            LiftOutcome::NotFound => Err(ApiError::NotFound(format!(
                "no revocation of jti {jti:?} in tenant {tenant:?}"
            ))),
            LiftOutcome::Permanent(_) => Err(ApiError::Conflict(format!(
                "jti {jti:?} is revoked permanently; only temporary suspensions (with until) can be lifted"
            ))),
        }
    }

    /// RFC 7009 revocation of a presented token, by `client` or, without one, by the token's
    /// own bearer (self-logout). Succeeds also when there is nothing to revoke: an unknown,
    /// malformed or foreign token (RFC 7009 §2.2).
    pub async fn revoke_presented(
        &self,
        tenant: &str,
        client: Option<&ApiKeyRecord>,
        token: &str,
    ) -> ApiResult<()> {
        let (actor, reason) = match client {
            Some(k) => (k.id.as_str(), "oauth2_revoke"),
            None => ("self", "logout"),
        };
        // Hints (`access_token`, `refresh_token`) only say where to look first; every token veto
        // issues is a JWT of this tenant, so both paths end in the same signature check. A
        // refresh token (JOSE type `rt+jwt`) revokes its whole family; anything else is tried as
        // an access token. A token is one or the other, so the order needs no hint.
        if self
            .revoke_refresh_token(tenant, actor, token, reason)
            .await?
        {
            return Ok(());
        }
        let req = RevokeRequest {
            token: Some(token.to_owned()),
            reason: Some(reason.to_owned()),
            ..Default::default()
        };
        match self.revoke(tenant, actor, &req).await {
            Ok(_) | Err(ApiError::BadRequest { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The stored record behind a check that answered `reason`, as detail for the answer: only
    /// a revocation or suspension has one. The decision came from memory, so a token without a
    /// jti or a store that does not answer leaves the detail out rather than failing the check.
    pub async fn revocation_behind(
        &self,
        tenant: &str,
        token: &str,
        reason: Reason,
    ) -> Option<Revocation> {
        if !matches!(reason, Reason::Revoked | Reason::Suspended) {
            return None;
        }
        let claims = veto_core::verify::decode_unverified_claims(token)?;
        let jti = claims.get("jti")?.as_str()?;
        self.store.get_revocation(tenant, jti).await.ok().flatten()
    }
}
