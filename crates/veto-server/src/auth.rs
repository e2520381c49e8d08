//! Who is calling, and may they do this? Authentication answers 401, authorisation 403, and both
//! come before any lookup of the target, so a key of tenant A learns nothing about tenant B
//! (not even whether it exists).
//!
//! Authenticating needs only the [`ApiKeys`] table, which extractors get from the router's state
//! through `FromRef`.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use veto_core::apikey::{ApiKeyRecord, Scope, hash_secret};

use crate::error::ApiError;

/// The API keys this node accepts, by SHA-256 of their secret: authentication is a hash plus a
/// map probe, no query. Kept current by the mirror (`AppState::remember_api_key`).
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<RwLock<HashMap<[u8; 32], Arc<ApiKeyRecord>>>>);

impl ApiKeys {
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<Arc<ApiKeyRecord>> {
        // Writers only insert or remove whole entries, so a panic elsewhere cannot leave the map
        // half-updated: keep serving rather than failing every later request.
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(hash).cloned()
    }

    pub(crate) fn insert(&self, k: ApiKeyRecord) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(k.key_hash, Arc::new(k));
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, k| k.id != id);
    }

    /// Finds the API key whose secret is `secret`. The map is keyed by the secret's SHA-256, so
    /// the probe never compares secrets; the final constant-time comparison of the hash guards
    /// against any future change of the map's key.
    pub fn authenticate(&self, secret: &str) -> Option<Arc<ApiKeyRecord>> {
        let hash = hash_secret(secret);
        self.by_hash(&hash).filter(|k| k.secret_matches(&hash))
    }
}

/// An authenticated management caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<ApiKeyRecord>);

const MISSING: &str = "send an API key as `Authorization: Bearer <key>`";

/// The bearer credential of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|s| !s.is_empty())
}

impl<S> FromRequestParts<S> for Caller
where
    ApiKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or_else(|| ApiError::Unauthorized(MISSING.into()))?;
        ApiKeys::from_ref(state)
            .authenticate(secret)
            .map(Caller)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the API key is unknown or was deleted; use a current key".into(),
                )
            })
    }
}

impl Caller {
    /// The actor recorded in audit events and `revoked_by`.
    pub fn actor(&self) -> &str {
        &self.0.id
    }

    pub fn require(&self, tenant: &str, scope: Scope) -> Result<(), ApiError> {
        self.require_any(tenant, &[scope])
    }

    pub fn require_any(&self, tenant: &str, scopes: &[Scope]) -> Result<(), ApiError> {
        if !self.0.belongs_to(tenant) {
            return Err(ApiError::Forbidden(format!(
                "this API key belongs to another tenant; use a key of tenant {tenant:?}"
            )));
        }
        if scopes.iter().any(|s| self.0.allows(tenant, *s)) {
            return Ok(());
        }
        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "this API key lacks the scope {}; create a key that has it",
            names.join(" or ")
        )))
    }

    /// Any key of the tenant (or an admin key).
    pub fn require_member(&self, tenant: &str) -> Result<(), ApiError> {
        if self.0.belongs_to(tenant) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key belongs to another tenant; use a key of tenant {tenant:?}"
            )))
        }
    }

    /// `tenants:manage` is for admin keys only, whatever scopes a tenant key claims.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this operation needs an admin API key (scope tenants:manage)".into(),
            ))
        }
    }
}
