//! Tenant API keys: created with scopes, shown once, stored as a SHA-256 of the secret (so that
//! authentication is a hash and a map probe), listed without secret or hash, deleted.
use time::OffsetDateTime;
use veto_core::apikey::{ApiKeyRecord, Scope, generate_api_key, hash_secret};
use veto_core::audit::AuditEvent;
use veto_core::limits;
use veto_core::timeutil;
use veto_store::{Page, PageRequest};

use super::check_ident;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// An API key as listed: never the secret, never its hash.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The creation answer: the only time the secret is shown.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: k.created_at,
        }
    }
}

impl AppState {
    pub async fn create_api_key(
        &self,
        actor: &str,
        tenant: &str,
        name: &str,
        scopes: &[String],
    ) -> ApiResult<CreatedApiKey> {
        check_ident("name", name, limits::NAME)?;
        self.require_tenant(tenant)?;
        let mut parsed = Vec::with_capacity(scopes.len());
        for s in scopes {
            let scope = Scope::parse(s).ok_or_else(|| {
                ApiError::field(
                    "scopes",
                    format!(
                        "unknown scope {s:?}; use any of keys:manage tokens:issue tokens:verify tokens:revoke sessions:write sessions:read audit:read"
                    ),
                )
            })?;
            if scope == Scope::TenantsManage {
                return Err(ApiError::field(
                    "scopes",
                    "tenants:manage belongs to admin keys only; a tenant key cannot hold it",
                ));
            }
            if !parsed.contains(&scope) {
                parsed.push(scope);
            }
        }
        if parsed.is_empty() {
            return Err(ApiError::field("scopes", "give at least one scope"));
        }
        if self.api_keys.count_of(tenant) >= limits::API_KEYS_PER_TENANT {
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} has {} API keys, the most it may hold; delete unused ones first",
                limits::API_KEYS_PER_TENANT
            )));
        }
        let (id, secret) = generate_api_key();
        let rec = ApiKeyRecord {
            id: id.clone(),
            tenant: Some(tenant.to_owned()),
            name: name.to_owned(),
            scopes: parsed,
            key_hash: hash_secret(&secret),
            created_at: timeutil::now(),
        };
        let audit = AuditEvent::new(tenant, actor, "api_key.create", &id)
            .with_metadata(serde_json::json!({"name": name, "scopes": scopes}));
        self.applied(self.store.insert_api_key(&rec, &audit).await?)
            .await?;
        let view = ApiKeyView::from(&rec);
        Ok(CreatedApiKey {
            id: view.id,
            name: view.name,
            scopes: view.scopes,
            key: secret,
            created_at: view.created_at,
        })
    }

    pub async fn list_api_keys(
        &self,
        tenant: &str,
        page: &PageRequest,
    ) -> ApiResult<Page<ApiKeyView>> {
        self.require_tenant(tenant)?;
        let p = self.store.list_api_keys(tenant, page).await?;
        Ok(Page {
            items: p.items.iter().map(ApiKeyView::from).collect(),
            next_cursor: p.next_cursor,
        })
    }

    pub async fn delete_api_key(&self, actor: &str, tenant: &str, id: &str) -> ApiResult<()> {
        self.require_tenant(tenant)?;
        let audit = AuditEvent::new(tenant, actor, "api_key.delete", id);
        self.applied(self.store.delete_api_key(tenant, id, &audit).await?)
            .await
    }
}
