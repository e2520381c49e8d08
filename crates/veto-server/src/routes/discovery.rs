//! The public documents a tenant's clients and resource servers discover it by: the RFC 7517
//! JWKS and the RFC 8414 authorization server metadata, the latter at both its addresses. No
//! credentials; cacheable (ETag, 304: `documents.rs`); readable from any web origin (CORS), as
//! they hold nothing a browser's user should not see. Only these routes carry CORS headers:
//! the routes that take credentials never do, so no page of another origin can call them with
//! a user's ambient credentials or read their answers.
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};

use crate::documents::{Document, respond};
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::state::Discovery;

/// Any origin may GET (and HEAD) these documents, sending whatever headers it likes
/// (`If-None-Match` is not a CORS-safelisted header) and reading the `ETag`. Never with
/// credentials: `Access-Control-Allow-Origin: *` forbids them, and nothing here reads any. The
/// layer answers every `OPTIONS` on these routes itself, as a preflight.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers(Any)
        .expose_headers([header::ETAG])
        .max_age(Duration::from_secs(24 * 3600))
}

/// RFC 7517 JWKS: active and retired asymmetric public keys. Unauthenticated.
#[utoipa::path(get, path = "/t/{tenant}/.well-known/jwks.json", tag = "discovery", security(()),
    params(("tenant" = String, Path), ("If-None-Match" = Option<String>, Header, description = "an ETag of this document: 304 when it is current")),
    responses((status = 200, body = Object, headers(("ETag" = String), ("Last-Modified" = String), ("Cache-Control" = String))),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 404, body = crate::error::Problem)))]
pub async fn jwks(
    State(d): State<Discovery>,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    d.tenants.require(&tenant)?;
    let now = veto_core::timeutil::now().unix_timestamp();
    let doc = d.keyring.jwks(&tenant, now);
    Ok(respond(
        &d.versions,
        &tenant,
        Document::Jwks,
        &headers,
        &doc,
    ))
}

/// RFC 8414 authorization server metadata at `<issuer>/.well-known/oauth-authorization-server`,
/// where veto has always served it. Unauthenticated.
#[utoipa::path(get, path = "/t/{tenant}/.well-known/oauth-authorization-server", tag = "discovery", security(()),
    params(("tenant" = String, Path), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, body = Object, headers(("ETag" = String), ("Last-Modified" = String), ("Cache-Control" = String))),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 404, body = crate::error::Problem)))]
pub async fn metadata(
    State(d): State<Discovery>,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_metadata(&d, &tenant, &headers)
}

/// RFC 8414 §3 metadata at the address a client derives from the issuer
/// `<public url>/t/{tenant}`: the well-known segment goes between host and path. This is where
/// oauth4webapi's `discoveryRequest` and authlib's `get_well_known_url(…, external=True)`
/// look. Unauthenticated.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server/t/{tenant}", tag = "discovery", security(()),
    params(("tenant" = String, Path), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, body = Object, headers(("ETag" = String), ("Last-Modified" = String), ("Cache-Control" = String))),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 404, body = crate::error::Problem)))]
pub async fn metadata_rfc8414(
    State(d): State<Discovery>,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_metadata(&d, &tenant, &headers)
}

fn serve_metadata(d: &Discovery, tenant: &str, headers: &HeaderMap) -> ApiResult<Response> {
    d.tenants.require(tenant)?;
    let doc = metadata_document(&d.config.issuer(tenant));
    Ok(respond(
        &d.versions,
        tenant,
        Document::Metadata,
        headers,
        &doc,
    ))
}

/// Exactly what veto offers, in RFC 8414 §2's terms. Left out on purpose:
/// - `authorization_endpoint`: veto has none (it issues tokens to clients, not through user
///   redirects), which §2 allows when no grant type needs one; `grant_types_supported` says
///   which grants there are, so no client assumes the default `authorization_code implicit`.
/// - `*_auth_signing_alg_values_supported`: they describe JWT client authentication
///   (`private_key_jwt`, `client_secret_jwt`), which veto does not offer. The algorithms veto
///   signs tokens with are in the JWKS.
/// - `scopes_supported`: veto keeps no registry of scopes; a client asks for the ones its
///   resource servers understand.
///
/// `response_types_supported` is REQUIRED by §2 and lists the `response_type` values of the
/// authorization endpoint: with none, the truthful list is empty. (authlib's `validate()`
/// refuses an empty list, stricter than the RFC: docs/conformance.md.)
///
/// Client authentication: `client_secret_basic` is HTTP Basic with the API key's id and secret
/// (RFC 6749 §2.3.1); `bearer` is the API key as a Bearer token, a value of the OAuth Access
/// Token Types registry that RFC 8414 allows for introspection and veto also takes at the
/// revocation and token endpoints; `none` is RFC 7009 self-logout (revoking the very token
/// presented, without credentials).
pub fn metadata_document(issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "grant_types_supported": ["refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
        "response_types_supported": [],
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "bearer", "none"],
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "bearer"],
    })
}
