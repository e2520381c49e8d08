//! OAuth Token Status Lists (draft-ietf-oauth-status-list-20): entries given at issuance, the
//! tenant's setting, and the signed lists served at `<issuer>/statuslists/<id>`.
//!
//! Serving: the bits live in memory (`status_lists.rs`), so a request re-judges what fell due,
//! recompresses only the chunks that changed, and signs. The signed token is kept per list and
//! served again while the list is unchanged, the signing key is the same and it is younger
//! than its own `ttl`: polls of an unchanged list cost a hash of its `lst` and no signature.
use std::sync::Arc;

use veto_core::audit::AuditEvent;
use veto_core::keys::LoadedKey;
use veto_core::status_list::{self, TokenInput};
use veto_core::timeutil;
use veto_store::{NewStatusEntry, NewStatusList};

use crate::error::{ApiError, ApiResult};
use crate::metrics;
use crate::state::AppState;
use crate::status_lists::{ServedList, Signed};

/// Random candidates per allocation. A list is replaced by a new one when all of them land on
/// taken indices, so a list is about 84 % full when 16 tries fail half the time (0.957^16):
/// lists fill up almost entirely, and an allocation costs at most 16 probes.
const CANDIDATES: usize = 16;

impl AppState {
    /// `<issuer>/statuslists/<list>`: where the list is served, and what tokens name in their
    /// `status` claim and the list token in its `sub`.
    pub(crate) fn status_list_uri(&self, tenant: &str, list: &str) -> String {
        format!("{}/statuslists/{list}", self.config.issuer(tenant))
    }

    /// The key that signs the tenant's status lists: its newest active asymmetric key (the
    /// draft wants a signature relying parties check against the tenant's JWKS, which HMAC keys
    /// are never in), unbound to an audience when there is one.
    fn list_signing_key(&self, tenant: &str) -> Option<Arc<LoadedKey>> {
        let usable: Vec<Arc<LoadedKey>> = self
            .keyring
            .list(tenant)
            .into_iter()
            .filter(|k| k.signs() && !k.alg.is_hmac() && k.public_jwk.is_some())
            .collect();
        usable
            .iter()
            .find(|k| k.audience.is_none())
            .or(usable.first())
            .cloned()
    }

    /// Gives a token an index in the tenant's current list (a new list when it is full or the
    /// tenant has none), durably, and applies it to memory: its index and the list's URI.
    pub(crate) async fn allocate_status_entry(
        &self,
        entry: &NewStatusEntry<'_>,
    ) -> ApiResult<(u32, String)> {
        let tenant = entry.tenant;
        // Refused before the write: a list that cannot be signed cannot be served.
        if self.list_signing_key(tenant).is_none() {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} has no active asymmetric key to sign its status lists with; create one (e.g. ES256) with POST /v1/tenants/{tenant}/keys"
            )));
        }
        let id = status_list::new_list_id();
        let new_list = NewStatusList {
            id: &id,
            size: self.config.status_list_size,
            created_at: timeutil::now(),
        };
        let written = self
            .store
            .allocate_status_entry(entry, &status_list::index_candidates(CANDIDATES), &new_list)
            .await?;
        let e = self.applied(written).await?;
        Ok((e.idx, self.status_list_uri(tenant, &e.list)))
    }

    /// Sets the tenant's `status_list` setting: whether its tokens get an entry when the
    /// issuer does not say.
    pub async fn set_status_list_setting(
        &self,
        actor: &str,
        tenant: &str,
        on: bool,
    ) -> ApiResult<()> {
        self.require_tenant(tenant)?;
        let audit = AuditEvent::new(tenant, actor, "tenant.status_list", tenant)
            .with_metadata(serde_json::json!({ "status_list": on }));
        let written = self
            .store
            .set_tenant_status_list(tenant, on, &audit)
            .await?;
        self.applied(written).await
    }

    /// The signed Status List Token of `list`, reflecting every change this node applied.
    pub fn serve_status_list(&self, tenant: &str, list: &str) -> ApiResult<ServedList> {
        self.require_tenant(tenant)?;
        // A stale node cannot vouch for its bits, as it cannot for a check.
        if !self.feed.may_answer() {
            return Err(ApiError::Unavailable(
                "this node's revocation state is stale (the store is unreachable); retry later or on another node".into(),
            ));
        }
        let not_found = || {
            ApiError::NotFound(format!(
                "tenant {tenant:?} has no status list {list:?}; take the uri from a token's status claim"
            ))
        };
        let lst = self
            .status_lists
            .lst(tenant, list)
            .map_err(|e| ApiError::Internal(format!("encoding status list {list}: {e}")))?
            .ok_or_else(not_found)?;
        let key = self.list_signing_key(tenant).ok_or_else(|| {
            ApiError::Conflict(format!(
                "tenant {tenant:?} has no active asymmetric key to sign its status lists with; create one (e.g. ES256) with POST /v1/tenants/{tenant}/keys"
            ))
        })?;
        let now = timeutil::now().unix_timestamp();
        let ttl = self.config.status_list_ttl;
        let lst_hash = xxhash_rust::xxh3::xxh3_128(lst.as_bytes());
        let current = |s: &Signed| {
            s.lst_hash == lst_hash && s.kid == key.kid && (0..ttl).contains(&(now - s.iat))
        };
        if let Some(served) = self.status_lists.signed(tenant, list, current) {
            metrics::status_list_served("cached");
            return Ok(served);
        }
        let uri = self.status_list_uri(tenant, list);
        let claims = status_list::token_claims(&TokenInput {
            uri: &uri,
            lst: &lst,
            now,
            validity_seconds: self.config.status_list_validity,
            ttl_seconds: ttl,
        })
        .map_err(|e| ApiError::Internal(format!("status list claims: {e}")))?;
        let token: Arc<str> = status_list::sign_token(&key, &claims)
            .map_err(|e| ApiError::Internal(format!("signing status list {list}: {e}")))?
            .into();
        let etag: Arc<str> =
            format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(token.as_bytes())).into();
        metrics::status_list_served("signed");
        let served = ServedList {
            token,
            etag,
            max_age: ttl,
        };
        let signed = Signed {
            lst_hash,
            kid: key.kid.clone(),
            iat: now,
            served: served.clone(),
        };
        self.status_lists.remember_signed(tenant, list, signed);
        Ok(served)
    }
}
