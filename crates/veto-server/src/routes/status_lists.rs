//! `GET /t/{tenant}/statuslists/{id}`: a tenant's OAuth Token Status List, as the signed
//! `statuslist+jwt` of draft-ietf-oauth-status-list-20 §8. No credentials: relying parties of
//! any kind fetch it, browsers included (CORS, as the other public documents).
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::Deserialize;

use crate::documents::conditional;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery};
use crate::position;
use crate::state::AppState;

/// The media type of a Status List Token in JWT form (draft §8.1).
pub const MEDIA_TYPE: &str = "application/statuslist+jwt";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A `Veto-Position` of a write: answer only once this node has applied it.
    pub min_position: Option<String>,
}

/// A tenant's status list (unauthenticated). `If-None-Match` with the current `ETag` gets 304.
#[utoipa::path(get, path = "/t/{tenant}/statuslists/{id}", tag = "discovery", security(()),
    params(("tenant" = String, Path), ("id" = String, Path), ListQuery,
        ("If-None-Match" = Option<String>, Header, description = "an ETag of this list: 304 when it is current")),
    responses((status = 200, content_type = "application/statuslist+jwt", body = String,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "the client's copy (If-None-Match) is current"),
        (status = 404, body = crate::error::Problem),
        (status = 406, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)))]
pub async fn get(
    State(st): State<AppState>,
    ApiPath((tenant, list)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(accept) = headers.get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or("");
        if !accepts_jwt(accept) {
            return Err(ApiError::NotAcceptable(format!(
                "veto serves status lists as {MEDIA_TYPE} only (not the CWT form); send Accept: {MEDIA_TYPE}"
            )));
        }
    }
    position::reach(&st.feed, q.min_position.as_deref()).await?;
    let served = st.serve_status_list(&tenant, &list)?;
    // `ttl` and `max-age` say the same: how long a copy may be used before fetching again.
    let mut resp = conditional(
        &headers,
        &served.etag,
        &format!("public, max-age={}", served.max_age),
        MEDIA_TYPE,
        served.token.to_string().into(),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(resp)
}

/// Whether an `Accept` field value takes the JWT form: it names it, `application/*` or `*/*`,
/// with a non-zero weight.
fn accepts_jwt(field: &str) -> bool {
    field.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && matches!(media.as_str(), MEDIA_TYPE | "application/*" | "*/*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jwt_form_is_taken_by_its_name_and_by_wildcards_not_by_the_cwt_form() {
        for yes in [
            MEDIA_TYPE,
            "application/STATUSLIST+JWT",
            "*/*",
            "application/*;q=0.5",
            "application/statuslist+cwt, application/statuslist+jwt;q=0.1",
            "text/html, */*;q=0.8",
        ] {
            assert!(accepts_jwt(yes), "{yes}");
        }
        for no in [
            "application/statuslist+cwt",
            "application/json",
            "application/statuslist+jwt;q=0",
            "",
        ] {
            assert!(!accepts_jwt(no), "{no}");
        }
    }
}
