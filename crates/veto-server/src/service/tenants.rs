//! Tenants and their kill switches: creation (with a first ES256 key), suspension and resumption,
//! and the cutoffs that revoke every earlier token of a whole tenant or of one subject.
use time::OffsetDateTime;
use veto_core::Alg;
use veto_core::audit::AuditEvent;
use veto_core::limits;
use veto_core::revocation::Cutoff;
use veto_core::tenant::{Tenant, validate_tenant_id};
use veto_core::timeutil;

use super::{check_opt_text, check_text};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// What a revoke-all (tenant or subject) answers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CutoffResult {
    pub tenant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Tokens issued before this instant are rejected from now on.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_before: OffsetDateTime,
    pub reason: Option<String>,
}

impl AppState {
    pub async fn create_tenant(
        &self,
        actor: &str,
        id: &str,
        display_name: &str,
    ) -> ApiResult<Tenant> {
        validate_tenant_id(id).map_err(|m| ApiError::field("id", m))?;
        check_text("display_name", display_name, limits::NAME)?;
        if self.tenant(id).is_some() {
            return Err(ApiError::Conflict(format!("tenant {id:?} already exists")));
        }
        let tenant = Tenant {
            id: id.to_owned(),
            display_name: display_name.to_owned(),
            suspended: false,
            created_at: timeutil::now(),
        };
        let audit = AuditEvent::new(id, actor, "tenant.create", id);
        self.applied(self.store.create_tenant(&tenant, &audit).await?)
            .await?;
        // Contract: "A new tenant starts with one active ES256 key."
        self.create_signing_key(actor, id, Alg::ES256, None, false)
            .await?;
        Ok(tenant)
    }

    pub async fn set_suspended(
        &self,
        actor: &str,
        id: &str,
        suspended: bool,
        reason: Option<&str>,
    ) -> ApiResult<Tenant> {
        check_opt_text("reason", reason, limits::REASON)?;
        self.require_tenant(id)?;
        let action = if suspended {
            "tenant.suspend"
        } else {
            "tenant.resume"
        };
        let audit = AuditEvent::new(id, actor, action, id).with_reason(reason);
        let written = self
            .store
            .set_tenant_suspended(id, suspended, &audit)
            .await?;
        self.applied(written).await
    }

    /// The cutoff value for a revoke-all made now (see `veto_core::revocation::Cutoff`).
    fn cutoff_now(&self, tenant: &str, sub: Option<&str>) -> (Cutoff, OffsetDateTime) {
        let now = timeutil::now();
        let not_before_iat = now.unix_timestamp() + 1;
        let expires_at = now + time::Duration::seconds(self.config.max_token_ttl + 1);
        (
            Cutoff {
                tenant: tenant.to_owned(),
                sub: sub.map(str::to_owned),
                not_before_iat,
                expires_at,
            },
            timeutil::from_unix(not_before_iat).unwrap_or(now),
        )
    }

    pub async fn revoke_all_tenant(
        &self,
        actor: &str,
        id: &str,
        reason: Option<&str>,
    ) -> ApiResult<CutoffResult> {
        check_opt_text("reason", reason, limits::REASON)?;
        self.require_tenant(id)?;
        let (cutoff, revoked_before) = self.cutoff_now(id, None);
        let audit = AuditEvent::new(id, actor, "tenant.revoke_all", id).with_reason(reason);
        self.applied(self.store.set_cutoff(&cutoff, &audit).await?)
            .await?;
        if let Some(r) = self.redis() {
            r.mirror_cutoff(&cutoff);
        }
        Ok(CutoffResult {
            tenant: id.to_owned(),
            sub: None,
            revoked_before,
            reason: reason.map(str::to_owned),
        })
    }

    pub async fn revoke_all_subject(
        &self,
        actor: &str,
        tenant: &str,
        sub: &str,
        reason: Option<&str>,
    ) -> ApiResult<CutoffResult> {
        super::check_ident("sub", sub, limits::IDENTIFIER)?;
        check_opt_text("reason", reason, limits::REASON)?;
        self.require_tenant(tenant)?;
        let (cutoff, revoked_before) = self.cutoff_now(tenant, Some(sub));
        let audit = AuditEvent::new(tenant, actor, "subject.revoke_all", sub).with_reason(reason);
        self.applied(self.store.set_cutoff(&cutoff, &audit).await?)
            .await?;
        if let Some(r) = self.redis() {
            r.mirror_cutoff(&cutoff);
        }
        Ok(CutoffResult {
            tenant: tenant.to_owned(),
            sub: Some(sub.to_owned()),
            revoked_before,
            reason: reason.map(str::to_owned),
        })
    }
}
