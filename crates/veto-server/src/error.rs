//! The HTTP layer's one error type, mapped once to RFC 9457 problem details.
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use veto_store::StoreError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
        /// For batch requests: the item that failed.
        index: Option<usize>,
    },
    /// No or unknown credentials: 401 with `WWW-Authenticate: Bearer`.
    Unauthorized(String),
    /// A credential presented on a user's behalf (a session cookie, a refresh token) is not
    /// good: 401 whose problem carries `reason`, the contract's machine-readable why. No
    /// `WWW-Authenticate`: the caller's own API key was fine.
    Rejected {
        reason: &'static str,
        detail: String,
    },
    /// Known caller, wrong tenant or missing scope.
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Gone(String),
    PayloadTooLarge(String),
    /// The body did not arrive within the body timeout (`conn.rs`).
    RequestTimeout(String),
    MethodNotAllowed(String),
    /// Too many unauthenticated or failed-authentication requests from this client (see
    /// `ratelimit`); the response carries `Retry-After`.
    TooManyRequests(String),
    /// The store (or the freshness of our state) cannot be trusted right now: retry later.
    Unavailable(String),
    /// A bug or an invariant that failed. Never caused by input.
    Internal(String),
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
            index: None,
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError {
                field: field.to_owned(),
                message,
            }],
            index: None,
        }
    }

    /// Tags a batch item's error with its position.
    pub fn at_index(self, i: usize) -> Self {
        match self {
            ApiError::BadRequest { detail, errors, .. } => ApiError::BadRequest {
                detail: format!("item {i}: {detail}"),
                errors,
                index: Some(i),
            },
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::Rejected { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => ("bad-request", "Bad request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Authentication required"),
            ApiError::Rejected { .. } => ("credential-rejected", "Credential rejected"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::Gone(_) => ("gone", "Gone"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::RequestTimeout(_) => ("request-timeout", "Request timeout"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::TooManyRequests(_) => ("rate-limited", "Too many requests"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }

    fn detail(&self) -> &str {
        match self {
            ApiError::BadRequest { detail, .. } | ApiError::Rejected { detail, .. } => detail,
            ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::Gone(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::RequestTimeout(d)
            | ApiError::MethodNotAllowed(d)
            | ApiError::TooManyRequests(d)
            | ApiError::Unavailable(d)
            | ApiError::Internal(d) => d,
        }
    }

    /// The problem document, also embedded per item in batch responses.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let (errors, index) = match self {
            ApiError::BadRequest { errors, index, .. } => (errors.clone(), *index),
            _ => (Vec::new(), None),
        };
        let detail = match self {
            // The detail of an internal error may name internals; the log has it, the client
            // gets a generic sentence.
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
            other => other.detail().to_owned(),
        };
        Problem {
            kind: format!("urn:veto:problem:{slug}"),
            title: title.to_owned(),
            status: self.status().as_u16(),
            detail,
            errors,
            index,
            reason: match self {
                ApiError::Rejected { reason, .. } => Some((*reason).to_owned()),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Why a session cookie or refresh token was rejected (401 only), e.g. `idle_expired`,
    /// `refresh_token_reuse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Input the domain refused: the contract's 400 naming the field.
impl From<veto_core::input::InputError> for ApiError {
    fn from(e: veto_core::input::InputError) -> Self {
        ApiError::field(e.field, e.problem)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(d) => ApiError::Conflict(d),
            StoreError::NotFound(d) => ApiError::NotFound(d),
            StoreError::BadCursor => ApiError::field(
                "cursor",
                "not a cursor this server issued; pass the next_cursor of a previous page",
            ),
            StoreError::Unavailable(d) => {
                tracing::error!(error = %d, "store unavailable");
                ApiError::Unavailable("the store is unavailable; retry later".to_owned())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(detail = %self.detail(), "internal error");
        }
        let status = self.status();
        let bearer_challenge = matches!(self, ApiError::Unauthorized(_));
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if bearer_challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        close_after_413(status, &mut resp);
        resp
    }
}

/// A 413 is sent before the rest of the body is read, and the server will not read it: the
/// connection cannot carry another request. Saying `Connection: close` (RFC 9112 §9.6) makes
/// hyper close it after this response, and tells a keep-alive client not to reuse it, instead
/// of its next request going into a connection that is about to be dropped.
pub(crate) fn close_after_413(status: StatusCode, resp: &mut Response) {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// OAuth's own error shape (`{"error", "error_description"}`, RFC 6749 §5.2), which the OAuth
/// endpoints answer instead of problem+json.
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    pub fn invalid_request(d: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: d.into(),
        }
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let error = match status {
            StatusCode::NOT_FOUND => "invalid_request",
            StatusCode::FORBIDDEN => "insufficient_scope",
            StatusCode::PAYLOAD_TOO_LARGE => "invalid_request",
            StatusCode::UNAUTHORIZED => "invalid_client",
            // No RFC defines a rate-limit error for these endpoints (`slow_down` is the device
            // flow's polling signal): "retry later" is what the client must do.
            StatusCode::TOO_MANY_REQUESTS => "temporarily_unavailable",
            s if s.is_client_error() => "invalid_request",
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            _ => "server_error",
        };
        OAuthError {
            status,
            error,
            description: e.problem().detail,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(serde_json::json!({"error": self.error, "error_description": self.description})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"veto\", Bearer"),
            );
        }
        close_after_413(self.status, &mut resp);
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
