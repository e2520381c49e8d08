//! Operations: liveness (`/healthz`), readiness (`/readyz`, the feed's verdict rendered),
//! Prometheus metrics, and the admin-triggered purge.
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
    // A token is accepted until `exp + leeway`: a row purged before then would let its token
    // through again for the rest of that window.
    let least = st.config.leeway;
    if !(least..=10 * 365 * 86_400).contains(&margin) {
        return Err(ApiError::field(
            "safety_margin_seconds",
            format!(
                "must be between {least} (the clock-skew leeway, VETO_CLOCK_SKEW_SECONDS: a token is accepted that long after it expires) and 315360000"
            ),
        ));
    }
    let (c, s) = st.purge_everything(margin).await?;
    Ok(Json(crate::service::purge::summary(&c, &s)))
}

/// 200 while the process runs (the contract), whatever its state: readiness is `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when the store answers and the revocation state is current; 503 otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()), responses((status = 200), (status = 503)))]
pub async fn readyz(State(ops): State<Ops>) -> Response {
    match ops.feed.readiness(ops.store.as_ref()).await {
        Ok(ready) => Json(json!({
            "status": "ready",
            "revocations_indexed": ops.index.len(),
            "index_position": ready.position,
            "index_lag_seconds": ready.lag.as_secs_f64(),
        }))
        .into_response(),
        Err(why) => {
            let body = json!({"status": "unavailable", "detail": why.to_string()});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(ops): State<Ops>) -> Response {
    crate::metrics::set_index_size(ops.index.len());
    crate::metrics::set_status_list_entries(ops.status_lists.entries());
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
