use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJsonOrEmpty;
use crate::state::{AppState, Ops};

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Keep rows whose token expired less than this long ago. Default: the server's margin (1 h).
    pub safety_margin_seconds: Option<i64>,
}

/// Delete ledger rows whose token would have expired anyway more than the margin ago.
#[utoipa::path(post, path = "/v1/admin/purge", tag = "admin", request_body = PurgeRequest,
    responses((status = 200, body = Object)))]
pub async fn purge(
    State(st): State<AppState>,
    caller: Caller,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<PurgeRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require_admin()?;
    let margin = body.safety_margin_seconds.unwrap_or(st.config.purge_margin);
    if !(0..=10 * 365 * 86_400).contains(&margin) {
        return Err(ApiError::field(
            "safety_margin_seconds",
            "must be between 0 and 315360000",
        ));
    }
    let (c, s) = st.purge_everything(margin).await?;
    Ok(Json(json!({"deleted": {
        "revocations": c.revocations,
        "cutoffs": c.cutoffs,
        "signing_keys": c.signing_keys,
        "sessions": s.sessions,
        "prelogin": s.prelogin,
        "refresh_families": s.refresh_families,
        "session_keys": s.session_keys,
    }})))
}

/// 200 while the process runs (the contract), whatever its state: readiness is `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Why an outlived node is not ready, for good.
const OUTLIVED_DETAIL: &str = "this node was cut off from the change feed for about as long as the feed keeps changes (a day); some it missed may be gone: restart it to reload the state";

/// 200 when the store answers and the revocation state is current; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200), (status = 503)))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    let unavailable = |detail: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": detail})),
        )
            .into_response()
    };
    if let Err(e) = st.store.ping().await {
        tracing::warn!(error = %e, "readiness: store does not answer");
        return unavailable("the store does not answer".into());
    }
    // Ready means checks are answered from current state: a node that has not caught up with
    // the change feed (just started, or cut off for longer than the staleness bound) is not.
    let lag = st.feed.lag();
    if st.feed.outlived() {
        return unavailable(OUTLIVED_DETAIL.into());
    }
    if !st.feed.is_fresh() {
        return unavailable(match lag {
            None => "the revocation state has not caught up with the change feed yet".into(),
            Some(l) => format!(
                "the revocation state is {:.1} s old, beyond the staleness bound of {} s",
                l.as_secs_f64(),
                st.feed.max_staleness().as_secs_f64()
            ),
        });
    }
    Json(json!({
        "status": "ready",
        "revocations_indexed": st.index.len(),
        "index_position": st.feed.cursor().position,
        "index_lag_seconds": lag.map(|l| l.as_secs_f64()),
    }))
    .into_response()
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(ops): State<Ops>) -> Response {
    crate::metrics::set_index_size(ops.index.len());
    if let Some(lag) = ops.feed.lag() {
        crate::metrics::feed_lag(lag);
    }
    let mut resp = ops.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
