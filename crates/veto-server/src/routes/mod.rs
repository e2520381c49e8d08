//! The route table. Each handler authorises, calls one service operation and shapes the answer.
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod keys;
pub mod oauth;
pub mod revocations;
pub mod sessions;
pub mod tenants;
pub mod tokens;

/// The contract's routes, with `docs` (the routes that describe them, `/openapi.json`) merged
/// in by the caller so that the route table does not depend on its own description.
pub fn router(state: AppState, docs: Router<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    let limiter = state.limiter.clone();
    let routes = Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .merge(docs)
        .route("/v1/admin/purge", post(admin::purge))
        .route("/v1/tenants", post(tenants::create))
        .route("/v1/tenants/{tenant}", get(tenants::get))
        .route("/v1/tenants/{tenant}/suspend", post(tenants::suspend))
        .route("/v1/tenants/{tenant}/resume", post(tenants::resume))
        .route("/v1/tenants/{tenant}/revoke-all", post(tenants::revoke_all))
        .route(
            "/v1/tenants/{tenant}/api-keys",
            post(api_keys::create).get(api_keys::list),
        )
        .route(
            "/v1/tenants/{tenant}/api-keys/{id}",
            axum::routing::delete(api_keys::delete),
        )
        .route(
            "/v1/tenants/{tenant}/keys",
            post(keys::create).get(keys::list),
        )
        .route("/v1/tenants/{tenant}/keys/rotate", post(keys::rotate))
        .route("/v1/tenants/{tenant}/keys/{kid}/revoke", post(keys::revoke))
        .route("/v1/tenants/{tenant}/tokens", post(tokens::issue))
        .route(
            "/v1/tenants/{tenant}/tokens/batch",
            post(tokens::issue_batch),
        )
        .route("/v1/tenants/{tenant}/tokens/verify", post(tokens::verify))
        .route(
            "/v1/tenants/{tenant}/revocations",
            post(revocations::create).get(revocations::list),
        )
        .route(
            "/v1/tenants/{tenant}/revocations/batch",
            post(revocations::batch),
        )
        .route(
            "/v1/tenants/{tenant}/revocations/stats",
            get(revocations::stats),
        )
        .route(
            "/v1/tenants/{tenant}/revocations/{jti}",
            get(revocations::get).delete(revocations::lift),
        )
        .route(
            "/v1/tenants/{tenant}/subjects/{sub}/revoke-all",
            post(revocations::subject_revoke_all),
        )
        .route("/v1/tenants/{tenant}/audit", get(audit::list))
        .route(
            "/v1/tenants/{tenant}/tokens/refresh",
            post(sessions::refresh),
        )
        .route(
            "/v1/tenants/{tenant}/sessions",
            post(sessions::create).get(sessions::list),
        )
        .route(
            "/v1/tenants/{tenant}/sessions/validate",
            post(sessions::validate),
        )
        .route("/v1/tenants/{tenant}/sessions/{id}", get(sessions::get))
        .route(
            "/v1/tenants/{tenant}/sessions/{id}/revoke",
            post(sessions::revoke),
        )
        .route(
            "/v1/tenants/{tenant}/actors/{actor_type}/{actor_id}/sessions/revoke-all",
            post(sessions::revoke_all),
        )
        .route(
            "/v1/tenants/{tenant}/prelogin",
            post(sessions::create_prelogin),
        )
        .route(
            "/v1/tenants/{tenant}/prelogin/consume",
            post(sessions::consume_prelogin),
        )
        .route(
            "/v1/tenants/{tenant}/session-keys",
            get(sessions::list_keys),
        )
        .route(
            "/v1/tenants/{tenant}/session-keys/rotate",
            post(sessions::rotate_key),
        )
        .route("/t/{tenant}/.well-known/jwks.json", get(keys::jwks))
        .route(
            "/t/{tenant}/.well-known/oauth-authorization-server",
            get(keys::metadata),
        )
        .route(
            "/t/{tenant}/oauth2/introspect",
            post(oauth::introspect).layer(DefaultBodyLimit::max(oauth::FORM_LIMIT)),
        )
        .route(
            "/t/{tenant}/oauth2/revoke",
            post(oauth::revoke).layer(DefaultBodyLimit::max(oauth::FORM_LIMIT)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Inside the metrics layer, so a 429 is counted as such.
    let routes = match limiter {
        Some(limiter) => routes.route_layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::ratelimit::limit,
        )),
        None => routes,
    };
    routes
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json for the API".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this method is not allowed on this route; see /openapi.json".into())
}
