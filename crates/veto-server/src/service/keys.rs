//! Signing keys: generated per tenant (off the async workers: RSA takes a while), sealed under
//! the master key, rotated with a retention window for the retired ones, revoked after a leak.
use time::OffsetDateTime;
use veto_core::Alg;
use veto_core::audit::AuditEvent;
use veto_core::keys::{KeyStatus, SigningKeyRecord, generate_signing_key};
use veto_core::limits;
use veto_core::timeutil;

use super::{check_ident, check_opt_text};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A signing key as the API shows it: status and metadata, never material.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Retired keys verify until then.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retain_until: Option<OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
}

impl From<&SigningKeyRecord> for KeyView {
    fn from(r: &SigningKeyRecord) -> Self {
        KeyView {
            kid: r.kid.clone(),
            alg: r.alg.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            audience: r.audience.clone(),
            created_at: r.created_at,
            retain_until: r.retain_until,
            revoked_at: r.revoked_at,
            revoke_reason: r.revoke_reason.clone(),
        }
    }
}

pub fn parse_alg(s: &str) -> ApiResult<Alg> {
    s.parse::<Alg>()
        .map_err(|e| ApiError::field("alg", e.to_string()))
}

impl AppState {
    /// Creates a key; with `rotate`, every other active key of that alg and audience binding is
    /// retired in the same transaction and keeps verifying through the retention window.
    pub async fn create_signing_key(
        &self,
        actor: &str,
        tenant: &str,
        alg: Alg,
        audience: Option<&str>,
        rotate: bool,
    ) -> ApiResult<KeyView> {
        if let Some(a) = audience {
            check_ident("audience", a, limits::IDENTIFIER)?;
        }
        self.require_tenant(tenant)?;
        // Counted in memory (the ring holds every stored key of every status): no read per create.
        if self.keyring.count(tenant) >= limits::SIGNING_KEYS_PER_TENANT {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} holds {} signing keys, the most it may; retired keys go with the purge once their retention ends",
                limits::SIGNING_KEYS_PER_TENANT
            )));
        }
        // RSA generation takes a noticeable fraction of a second: keep it off the async workers.
        let master = self.master.clone();
        let (t, aud) = (tenant.to_owned(), audience.map(str::to_owned));
        let rec = tokio::task::spawn_blocking(move || {
            generate_signing_key(&t, alg, aud, &master, timeutil::now())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("key generation task failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("key generation failed: {e}")))?;
        let action = if rotate { "key.rotate" } else { "key.create" };
        let audit = AuditEvent::new(tenant, actor, action, &rec.kid)
            .with_metadata(serde_json::json!({"alg": alg.as_str(), "audience": audience}));
        let retire_until =
            rotate.then(|| timeutil::now() + time::Duration::seconds(self.config.key_retention));
        let written = self
            .store
            .insert_signing_key(&rec, retire_until, &audit)
            .await?;
        self.applied(written).await?;
        Ok(KeyView::from(&rec))
    }

    pub async fn revoke_signing_key(
        &self,
        actor: &str,
        tenant: &str,
        kid: &str,
        reason: Option<&str>,
    ) -> ApiResult<KeyView> {
        check_ident("kid", kid, limits::IDENTIFIER)?;
        check_opt_text("reason", reason, limits::REASON)?;
        self.require_tenant(tenant)?;
        let audit = AuditEvent::new(tenant, actor, "key.revoke", kid).with_reason(reason);
        let written = self
            .store
            .revoke_signing_key(tenant, kid, reason, &audit)
            .await?;
        let rec = self.applied(written).await?;
        debug_assert_eq!(rec.status, KeyStatus::Revoked);
        Ok(KeyView::from(&rec))
    }

    /// One page of the tenant's keys, newest first. The store returns them all (a tenant holds
    /// at most `SIGNING_KEYS_PER_TENANT`), so the page is cut here; the cursor is the last kid
    /// of the previous page.
    pub async fn list_signing_keys(
        &self,
        tenant: &str,
        page: &veto_store::PageRequest,
    ) -> ApiResult<veto_store::Page<KeyView>> {
        self.require_tenant(tenant)?;
        let recs = self.store.list_signing_keys(tenant).await?;
        let start =
            match &page.cursor {
                None => 0,
                Some(kid) => recs.iter().position(|r| &r.kid == kid).ok_or_else(|| {
                    ApiError::field(
                        "cursor",
                        "not a cursor of this list (its key is gone); list again from the start",
                    )
                })? + 1,
            };
        let limit = page.limit as usize;
        let items: Vec<KeyView> = recs
            .iter()
            .skip(start)
            .take(limit)
            .map(KeyView::from)
            .collect();
        let next_cursor = (start + limit < recs.len())
            .then(|| items.last().map(|k| k.kid.clone()))
            .flatten();
        Ok(veto_store::Page { items, next_cursor })
    }
}
