//! Who is calling, and may they do this? Authentication answers 401, authorisation 403, and both
//! come before any lookup of the target, so a key of tenant A learns nothing about tenant B
//! (not even whether it exists).
//!
//! Two ways in: management routes take a [`Caller`] (an API key as `Bearer`), the OAuth endpoints
//! an [`OAuthClient`] (the same keys, also as HTTP Basic). Both need only the [`ApiKeys`] table,
//! which they get from the router's state through `FromRef`.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use veto_core::apikey::{ApiKeyRecord, Scope, hash_secret};

use crate::error::{ApiError, ApiResult, Presented};

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

    /// API keys of `tenant` this node knows.
    pub fn count_of(&self, tenant: &str) -> usize {
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.values()
            .filter(|k| k.tenant.as_deref() == Some(tenant))
            .count()
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
        let secret = bearer(parts).ok_or_else(|| ApiError::unauthenticated(MISSING))?;
        ApiKeys::from_ref(state)
            .authenticate(secret)
            .map(Caller)
            .ok_or_else(|| {
                ApiError::bad_credential(
                    Presented::Bearer,
                    "the API key is unknown or was deleted; use a current key",
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
        // The challenge names a scope only when one would do: RFC 6750's `scope` lists scopes
        // that are all needed, not alternatives.
        let one = match scopes {
            [s] => Some(s.as_str()),
            _ => None,
        };
        if !self.0.belongs_to(tenant) {
            return Err(ApiError::forbidden(
                one,
                format!("this API key belongs to another tenant; use a key of tenant {tenant:?}"),
            ));
        }
        if scopes.iter().any(|s| self.0.allows(tenant, *s)) {
            return Ok(());
        }
        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::forbidden(
            one,
            format!(
                "this API key lacks the scope {}; create a key that has it",
                names.join(" or ")
            ),
        ))
    }

    /// Any key of the tenant (or an admin key).
    pub fn require_member(&self, tenant: &str) -> Result<(), ApiError> {
        if self.0.belongs_to(tenant) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                None,
                format!("this API key belongs to another tenant; use a key of tenant {tenant:?}"),
            ))
        }
    }

    /// `tenants:manage` is for admin keys only, whatever scopes a tenant key claims.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                Some(Scope::TenantsManage.as_str()),
                "this operation needs an admin API key (scope tenants:manage)",
            ))
        }
    }
}

/// The client of a request to the OAuth endpoints (`/t/{tenant}/oauth2/*`): an API key as
/// `Bearer`, or as HTTP Basic with the key's id and secret (RFC 6749 §2.3.1,
/// `client_secret_basic`).
///
/// Extracting it never fails: the outcome is kept and raised by [`require`](Self::require) or
/// [`optional`](Self::optional) in the handler, which does so before it reads the form body, so
/// that a caller with bad or missing credentials is refused without being read from (and its
/// 401 counted by the rate limiter).
pub struct OAuthClient(ApiResult<Option<Arc<ApiKeyRecord>>>);

impl<S> FromRequestParts<S> for OAuthClient
where
    ApiKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(OAuthClient(oauth_client(
            &ApiKeys::from_ref(state),
            &parts.headers,
        )))
    }
}

impl OAuthClient {
    /// The client, which must have authenticated and hold `scope` in `tenant`.
    pub fn require(self, tenant: &str, scope: Scope) -> ApiResult<Arc<ApiKeyRecord>> {
        let key = self.0?.ok_or_else(|| {
            ApiError::unauthenticated("authenticate with an API key (Bearer or HTTP Basic)")
        })?;
        require_client_scope(&key, tenant, scope)?;
        Ok(key)
    }

    /// The client if the request carries credentials (then they must be good and hold `scope`
    /// in `tenant`); `None` for an anonymous request.
    pub fn optional(self, tenant: &str, scope: Scope) -> ApiResult<Option<Arc<ApiKeyRecord>>> {
        let key = self.0?;
        if let Some(k) = &key {
            require_client_scope(k, tenant, scope)?;
        }
        Ok(key)
    }
}

/// Unlike [`Caller::require`], one message for "another tenant's key" and "lacks the scope": an
/// OAuth client is told which scope it needs where, in OAuth's `insufficient_scope`.
fn require_client_scope(key: &ApiKeyRecord, tenant: &str, scope: Scope) -> ApiResult<()> {
    if key.allows(tenant, scope) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            Some(scope.as_str()),
            format!(
                "this client needs scope {} in tenant {tenant:?}",
                scope.as_str()
            ),
        ))
    }
}

/// The caller's OAuth credentials: `Ok(None)` when it sent none, `Err` (401) when it sent bad
/// ones: a bad credential is refused, never treated as none.
fn oauth_client(keys: &ApiKeys, headers: &HeaderMap) -> ApiResult<Option<Arc<ApiKeyRecord>>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let bad =
        |presented| ApiError::bad_credential(presented, "unknown or malformed client credentials");
    let (scheme, rest) = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .ok_or_else(|| bad(Presented::Nothing))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return keys
            .authenticate(rest)
            .map(Some)
            .ok_or_else(|| bad(Presented::Bearer));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad(Presented::Nothing));
    }
    let (id, secret) = basic_credentials(rest).ok_or_else(|| bad(Presented::Basic))?;
    match keys.authenticate(&secret) {
        // The id must name the very key whose secret was given.
        Some(k) if k.id == id => Ok(Some(k)),
        _ => Err(bad(Presented::Basic)),
    }
}

/// `(client id, secret)` of an HTTP Basic credential. RFC 6749 §2.3.1: each is
/// form-urlencoded before being joined by ':'.
fn basic_credentials(b64: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()?
            .pop()
            .map(|(_, v)| v)
    };
    Some((unescape(id)?, unescape(secret)?))
}
