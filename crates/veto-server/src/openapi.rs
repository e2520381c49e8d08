//! `GET /openapi.json`, generated from the handlers' annotations so it cannot drift from the code.
use axum::Json;
use utoipa::OpenApi;

use crate::routes::{admin, api_keys, audit, keys, oauth, revocations, sessions, tenants, tokens};

#[derive(OpenApi)]
#[openapi(
    info(title = "veto", description = "Token authority: issue, verify and revoke JWTs; durable revocation ledger."),
    paths(
        admin::healthz, admin::readyz, admin::metrics, admin::purge,
        tenants::create, tenants::get, tenants::suspend, tenants::resume, tenants::revoke_all,
        api_keys::create, api_keys::list, api_keys::delete,
        keys::create, keys::rotate, keys::revoke, keys::list, keys::jwks, keys::metadata,
        tokens::issue, tokens::issue_batch, tokens::verify,
        revocations::create, revocations::batch, revocations::get, revocations::list,
        revocations::stats, revocations::lift, revocations::subject_revoke_all,
        audit::list,
        oauth::introspect, oauth::revoke,
        sessions::create, sessions::validate, sessions::list, sessions::get, sessions::revoke,
        sessions::revoke_all, sessions::create_prelogin, sessions::consume_prelogin,
        sessions::rotate_key, sessions::list_keys, sessions::refresh,
    ),
    components(schemas(crate::error::Problem)),
    modifiers(&ApiKeyAuth),
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

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
