//! The route table. Each handler authorises, calls one service operation and shapes the answer.
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::error::ApiError;
use crate::state::AppState;

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod discovery;
pub mod keys;
pub mod oauth;
pub mod revocations;
pub mod sessions;
pub mod status_lists;
pub mod tenants;
pub mod tokens;

/// The contract's routes, with `docs` (the routes that describe them, `/openapi.json`) merged
/// in by the caller so that the route table does not depend on its own description.
pub fn router(state: AppState, docs: Router<AppState>) -> Router {
    let body_limit = state.config.body_limit;
    let limiter = state.limiter.clone();
    // The public documents, the only routes with CORS (discovery.rs says why). The CORS layer
    // answers every OPTIONS on them, which has no handler: their method-not-allowed fallback is
    // set here, before the layer, so that it runs inside the layer (the outer router's
    // fallback, set after, would answer OPTIONS with 405 before the layer saw it).
    let documents = Router::new()
        .route("/t/{tenant}/.well-known/jwks.json", get(discovery::jwks))
        .route(
            "/t/{tenant}/.well-known/oauth-authorization-server",
            get(discovery::metadata),
        )
        .route(
            "/.well-known/oauth-authorization-server/t/{tenant}",
            get(discovery::metadata_rfc8414),
        )
        .route("/t/{tenant}/statuslists/{id}", get(status_lists::get))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(discovery::cors());
    let routes = Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .merge(docs)
        .route("/v1/admin/purge", post(admin::purge))
        .route("/v1/tenants", post(tenants::create))
        .route(
            "/v1/tenants/{tenant}",
            get(tenants::get).patch(tenants::patch),
        )
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
            "/v1/tenants/{tenant}/revocations/stream",
            get(revocations::stream),
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
        .merge(documents)
        .route(
            "/t/{tenant}/oauth2/introspect",
            post(oauth::introspect).layer(DefaultBodyLimit::max(oauth::FORM_LIMIT)),
        )
        .route(
            "/t/{tenant}/oauth2/revoke",
            post(oauth::revoke).layer(DefaultBodyLimit::max(oauth::FORM_LIMIT)),
        )
        .route(
            "/t/{tenant}/oauth2/token",
            post(oauth::token).layer(DefaultBodyLimit::max(oauth::FORM_LIMIT)),
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
    let feed = state.feed.clone();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            feed,
            crate::position::stamp,
        ))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(DefaultBodyLimit::max(body_limit))
        // Answers about tokens, keys and sessions are for the caller alone and only for now: no
        // cache may keep them (RFC 6749 §5.1 for tokens, RFC 7662 §4 for introspection; verify
        // answers likewise). The public documents set their own policy, which this leaves.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json for the API".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("this method is not allowed on this route; see /openapi.json".into())
}
