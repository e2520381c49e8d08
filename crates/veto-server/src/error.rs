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
    /// No credentials, or credentials veto does not accept: 401 with a `WWW-Authenticate`
    /// challenge (RFC 6750 §3.1: `error="invalid_token"` when a Bearer credential was presented
    /// and is not good; no `error` when none was presented). The rate limiter counts these.
    Unauthorized {
        detail: String,
        presented: Presented,
    },
    /// A credential presented on a user's behalf (a session cookie, a refresh token) is not
    /// good: 401 whose problem carries `reason`, the contract's machine-readable why. No
    /// `WWW-Authenticate`: the caller's own API key was fine.
    Rejected {
        reason: &'static str,
        detail: String,
    },
    /// Known caller, wrong tenant or missing scope: 403 with RFC 6750's `insufficient_scope`
    /// challenge, naming the scope when one scope would do.
    Forbidden {
        detail: String,
        scope: Option<&'static str>,
    },
    NotFound(String),
    Conflict(String),
    Gone(String),
    PayloadTooLarge(String),
    /// The body did not arrive within the body timeout (`conn.rs`).
    RequestTimeout(String),
    MethodNotAllowed(String),
    /// No representation the request's `Accept` takes (406).
    NotAcceptable(String),
    /// Too many unauthenticated or failed-authentication requests from this client (see
    /// `ratelimit`); the response carries `Retry-After`.
    TooManyRequests(String),
    /// The store (or the freshness of our state) cannot be trusted right now: retry later.
    Unavailable(String),
    /// A `min_position` this node did not reach within the wait (docs/stream.md): 503 whose
    /// problem carries `reason: not_caught_up`.
    NotCaughtUp(String),
    /// A bug or an invariant that failed. Never caused by input.
    Internal(String),
}

/// What a refused request presented as its credential: the challenge of the 401 depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// No `Authorization` header, or a scheme this route does not take.
    Nothing,
    /// A Bearer credential that is empty, unknown or deleted.
    Bearer,
    /// HTTP Basic credentials (OAuth endpoints) that are malformed or wrong.
    Basic,
}

impl ApiError {
    /// 401: the request carries no credential this route takes.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            detail: detail.into(),
            presented: Presented::Nothing,
        }
    }

    /// 401: the request presented a credential (`presented`) that is not good.
    pub fn bad_credential(presented: Presented, detail: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            detail: detail.into(),
            presented,
        }
    }

    /// 403: the caller is known but may not do this; `scope` is the one scope that would allow
    /// it, when there is exactly one.
    pub fn forbidden(scope: Option<&'static str>, detail: impl Into<String>) -> Self {
        ApiError::Forbidden {
            detail: detail.into(),
            scope,
        }
    }

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
            ApiError::Unauthorized { .. } | ApiError::Rejected { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) | ApiError::NotCaughtUp(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest { .. } => ("bad-request", "Bad request"),
            ApiError::Unauthorized { .. } => ("unauthorized", "Authentication required"),
            ApiError::Rejected { .. } => ("credential-rejected", "Credential rejected"),
            ApiError::Forbidden { .. } => ("forbidden", "Forbidden"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::Gone(_) => ("gone", "Gone"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::RequestTimeout(_) => ("request-timeout", "Request timeout"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::NotAcceptable(_) => ("not-acceptable", "Not acceptable"),
            ApiError::TooManyRequests(_) => ("rate-limited", "Too many requests"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::NotCaughtUp(_) => ("not-caught-up", "Not caught up"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }

    fn detail(&self) -> &str {
        match self {
            ApiError::BadRequest { detail, .. }
            | ApiError::Rejected { detail, .. }
            | ApiError::Unauthorized { detail, .. }
            | ApiError::Forbidden { detail, .. } => detail,
            ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::Gone(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::RequestTimeout(d)
            | ApiError::MethodNotAllowed(d)
            | ApiError::NotAcceptable(d)
            | ApiError::TooManyRequests(d)
            | ApiError::Unavailable(d)
            | ApiError::NotCaughtUp(d)
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
                ApiError::NotCaughtUp(_) => Some("not_caught_up".to_owned()),
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

impl ApiError {
    /// The RFC 6750 §3 challenge of a management route's 401 or 403: `Bearer` alone when no
    /// Bearer credential was presented (§3.1: no error code then), `error="invalid_token"` when
    /// one was and is not good, `error="insufficient_scope"` (with `scope` when one scope would
    /// do) when the caller is known but may not do this. The rate limiter counts 401s carrying
    /// a challenge, so every 401 here has one, and a 403 (a valid key) is never counted.
    fn bearer_challenge(&self) -> Option<HeaderValue> {
        match self {
            ApiError::Unauthorized {
                presented: Presented::Bearer,
                ..
            } => Some(HeaderValue::from_static(r#"Bearer error="invalid_token""#)),
            ApiError::Unauthorized { .. } => Some(HeaderValue::from_static("Bearer")),
            ApiError::Forbidden { scope, .. } => Some(insufficient_scope(*scope)),
            _ => None,
        }
    }
}

/// `Bearer error="insufficient_scope"[, scope="…"]`. Scope names are veto's own constants
/// (`tokens:verify`, …), so the quoted string needs no escaping.
fn insufficient_scope(scope: Option<&'static str>) -> HeaderValue {
    let value = match scope {
        Some(s) => format!(r#"Bearer error="insufficient_scope", scope="{s}""#),
        None => r#"Bearer error="insufficient_scope""#.to_owned(),
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static(r#"Bearer error="insufficient_scope""#))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(detail = %self.detail(), "internal error");
        }
        let status = self.status();
        let challenge = self.bearer_challenge();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(c) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, c);
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
    /// `WWW-Authenticate` of a refused client (401) or scope (403).
    challenge: Option<HeaderValue>,
}

/// Every 401 of the OAuth endpoints offers both ways in (HTTP Basic with the key's id and
/// secret, or the key as Bearer); the scheme the client tried comes first, with RFC 6750's
/// `invalid_token` when it was Bearer (RFC 6749 §5.2: the challenge matches the scheme used).
fn oauth_challenge(presented: Presented) -> HeaderValue {
    HeaderValue::from_static(match presented {
        Presented::Bearer => r#"Bearer error="invalid_token", Basic realm="veto""#,
        Presented::Basic | Presented::Nothing => r#"Basic realm="veto", Bearer"#,
    })
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            challenge: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }

    /// RFC 6749 §5.2: a `grant_type` the token endpoint does not offer.
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }

    /// RFC 6749 §5.2: a malformed `scope`, or one beyond what the grant allows.
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }

    /// RFC 8707 §2: a `resource` that is not an absolute URI without a fragment.
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }

    /// The token endpoint's reading of a service error (RFC 6749 §5.2): a refused refresh
    /// token is `invalid_grant`; a client without `tokens:issue` in the tenant is
    /// `unauthorized_client` (403, as the contract answers a key outside its tenant or scope);
    /// a scope the refresh token was not granted is `invalid_scope`; a precondition of issuing
    /// (tenant suspended, no active key) is the request's problem.
    pub fn from_token_endpoint(e: ApiError) -> Self {
        match e {
            ApiError::Rejected { detail, .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_grant", detail)
            }
            ApiError::Forbidden { detail, .. } => {
                Self::new(StatusCode::FORBIDDEN, "unauthorized_client", detail)
            }
            ApiError::Conflict(detail) => Self::invalid_request(detail),
            ApiError::BadRequest { detail, errors, .. }
                if errors.iter().any(|e| e.field == "scope") =>
            {
                Self::invalid_scope(detail)
            }
            other => OAuthError::from(other),
        }
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let challenge = match &e {
            ApiError::Unauthorized { presented, .. } => Some(oauth_challenge(*presented)),
            ApiError::Forbidden { scope, .. } => Some(insufficient_scope(*scope)),
            _ => None,
        };
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
            challenge,
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
        if let Some(c) = self.challenge {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        close_after_413(self.status, &mut resp);
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
