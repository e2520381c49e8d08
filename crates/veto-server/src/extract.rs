//! Extractors that turn every malformed request into a problem+json 4xx naming the fix, instead of
//! axum's plain-text rejections (and its 422 for type errors, which the contract calls 400).
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Request types use `#[serde(deny_unknown_fields)]`, so a misspelt field is a 400
/// that names it rather than a silently ignored option.
pub struct ApiJson<T>(pub T);

/// A JSON body that may be absent (empty), e.g. `POST .../resume` with or without `{"reason"}`.
pub struct ApiJsonOrEmpty<T>(pub T);

fn body_rejection(e: BytesRejection) -> ApiError {
    if timed_out(&e) {
        ApiError::RequestTimeout(
            "the request body did not arrive in time (VETO_BODY_TIMEOUT, 10 s by default); send it at once"
                .into(),
        )
    } else if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(
            "request body exceeds the size limit (1 MiB by default); send less, or split a batch"
                .into(),
        )
    } else {
        ApiError::bad_request(format!("could not read the request body: {e}"))
    }
}

/// Whether reading the body failed because its deadline passed (`conn::app_layers`).
fn timed_out(e: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = err.source();
    }
    false
}

pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(body_rejection)
}

/// Parses a JSON body; a shape error names the offending field (`sub: invalid type: …`).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
            }
            _ if path == "." => ApiError::bad_request(format!(
                "the JSON body does not match the expected shape: {inner}"
            )),
            _ => {
                let err = ApiError::field(&path, inner.to_string());
                match batch_item(&path) {
                    Some(i) => err.at_index(i),
                    None => err,
                }
            }
        }
    })
}

/// The item a shape error is in when it is inside a top-level array (`revocations[2].jti` → 2):
/// the contract names a batch's bad item by `index`, whether it failed our validation or, like
/// here, its JSON types.
fn batch_item(path: &str) -> Option<usize> {
    let (field, rest) = path.split_once('[')?;
    if field.is_empty() || field.contains('.') {
        return None;
    }
    rest.split_once(']')?.0.parse().ok()
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the request body is empty; send a JSON object",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        parse_json(&bytes).map(ApiJsonOrEmpty)
    }
}

/// Path parameters; a value that does not fit is a 400, never a 500.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(format!("invalid path: {}", e.body_text()))
            })
    }
}

/// Query parameters; unknown or ill-typed ones are a 400 naming them.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e: QueryRejection| {
                ApiError::bad_request(format!("invalid query string: {}", e.body_text()))
            })
    }
}

/// `limit` and `cursor` of every list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// 1 to 1000; default 100.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn to_request(&self) -> Result<veto_store::PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::field("limit", "must be between 1 and 1000"));
        }
        Ok(veto_store::PageRequest {
            limit,
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
        })
    }
}

/// A list page in the contract's shape.
#[derive(Debug, serde::Serialize)]
pub struct PageBody<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
