//! First-start guarantees: a `default` tenant, and an admin key.
use veto_core::apikey::{ApiKeyRecord, Scope, generate_api_key, hash_secret};
use veto_core::audit::AuditEvent;
use veto_core::tenant::DEFAULT_TENANT;
use veto_core::timeutil;

use crate::error::ApiResult;
use crate::state::AppState;

/// What `ensure_admin_key` did.
pub enum AdminKey {
    /// The key given in `VETO_BOOTSTRAP_ADMIN_KEY` already existed or was created.
    FromEnv,
    /// An admin key already existed; nothing was generated.
    Existing,
    /// A key was generated: the caller shows it once and writes it to the data dir.
    Generated(String),
}

impl AppState {
    pub async fn ensure_default_tenant(&self) -> ApiResult<()> {
        if self.tenant(DEFAULT_TENANT).is_none() {
            self.create_tenant("system", DEFAULT_TENANT, "Default")
                .await?;
        }
        Ok(())
    }

    pub async fn ensure_admin_key(&self, from_env: Option<&str>) -> ApiResult<AdminKey> {
        let secret = match from_env {
            Some(s) => {
                if self.api_key_by_hash(&hash_secret(s)).is_some() {
                    return Ok(AdminKey::FromEnv);
                }
                s.to_owned()
            }
            None => {
                if self.store.has_admin_key().await? {
                    return Ok(AdminKey::Existing);
                }
                generate_api_key().1
            }
        };
        let (id, _) = generate_api_key();
        let rec = ApiKeyRecord {
            id: id.clone(),
            tenant: None,
            name: "bootstrap admin".to_owned(),
            scopes: Scope::ALL.to_vec(),
            key_hash: hash_secret(&secret),
            created_at: timeutil::now(),
        };
        let audit = AuditEvent::new(DEFAULT_TENANT, "system", "api_key.create", &id)
            .with_metadata(serde_json::json!({"name": "bootstrap admin", "admin": true}));
        self.applied(self.store.insert_api_key(&rec, &audit).await?)
            .await?;
        Ok(if from_env.is_some() {
            AdminKey::FromEnv
        } else {
            AdminKey::Generated(secret)
        })
    }
}
