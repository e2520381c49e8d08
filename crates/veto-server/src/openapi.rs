//! `GET /openapi.json`, generated from the handlers' annotations so it cannot drift from the code.
use axum::Json;
use utoipa::OpenApi;

use crate::routes::{
    admin, api_keys, audit, discovery, keys, oauth, revocations, sessions, status_lists, tenants,
    tokens,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "veto", description = "Token authority: issue, verify and revoke JWTs; durable revocation ledger."),
    paths(
        admin::healthz, admin::readyz, admin::metrics, admin::purge,
        tenants::create, tenants::get, tenants::patch, tenants::suspend, tenants::resume, tenants::revoke_all,
        api_keys::create, api_keys::list, api_keys::delete,
        keys::create, keys::rotate, keys::revoke, keys::list,
        discovery::jwks, discovery::metadata, discovery::metadata_rfc8414,
        status_lists::get,
        tokens::issue, tokens::issue_batch, tokens::verify,
        revocations::create, revocations::batch, revocations::get, revocations::list,
        revocations::stats, revocations::lift, revocations::subject_revoke_all, revocations::stream,
        audit::list,
        oauth::introspect, oauth::revoke, oauth::token,
        sessions::create, sessions::validate, sessions::list, sessions::get, sessions::revoke,
        sessions::revoke_all, sessions::create_prelogin, sessions::consume_prelogin,
        sessions::rotate_key, sessions::list_keys, sessions::refresh,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&ApiKeyAuth, &RateLimited),
    // Every operation needs an API key unless it says otherwise: the public ones (health,
    // metrics, discovery) declare `security(())`, and the tests check that each operation that
    // requires credentials refuses requests without them.
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// The two ways to present an API key: `Bearer <key>` everywhere, and HTTP Basic (key id and
/// key, RFC 6749 §2.3.1) on the OAuth endpoints.
struct ApiKeyAuth;

impl utoipa::Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// Declares the rate limiter's 429 (`ratelimit`) on every operation that takes credentials:
/// those are the ones where missing or wrong credentials, or an unauthenticated self-logout, are
/// counted against the client. Public operations (`security(())`) are never limited.
struct RateLimited;

impl utoipa::Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::security::SecurityRequirement;
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, ResponseBuilder, Type};
        let public = [SecurityRequirement::default()];
        let limited = ResponseBuilder::new()
            .description(
                "Too many requests with missing or invalid credentials (or self-logouts) from \
                 this client address; retry after the number of seconds in Retry-After.",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("seconds until a request is accepted again"))
                    .build(),
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.as_deref() != Some(&public[..]) {
                    op.responses
                        .responses
                        .insert("429".into(), limited.clone().into());
                }
            }
        }
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
