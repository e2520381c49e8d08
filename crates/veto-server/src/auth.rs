//! Who is calling, and may they do this? Authentication answers 401, authorisation 403, and both
//! come before any lookup of the target, so a key of tenant A learns nothing about tenant B
//! (not even whether it exists).
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use veto_core::apikey::{ApiKeyRecord, Scope, hash_secret};

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated management caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<ApiKeyRecord>);

const MISSING: &str = "send an API key as `Authorization: Bearer <key>`";

/// Finds the API key whose secret is `secret`. The map is keyed by the secret's SHA-256, so the
/// probe never compares secrets; the final constant-time comparison of the hash guards against
/// any future change of the map's key.
pub fn authenticate_secret(state: &AppState, secret: &str) -> Option<Arc<ApiKeyRecord>> {
    let hash = hash_secret(secret);
    state
        .api_key_by_hash(&hash)
        .filter(|k| k.secret_matches(&hash))
}

/// The bearer credential of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|s| !s.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or_else(|| ApiError::Unauthorized(MISSING.into()))?;
        authenticate_secret(state, secret)
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
