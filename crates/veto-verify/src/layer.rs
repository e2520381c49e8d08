//! A `tower` layer that lets through only requests with an accepted bearer token (RFC 6750),
//! for axum, hyper or any tower HTTP service.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};

use crate::verifier::{Verifier, VerifyError};

/// Wraps a service so that it only sees requests carrying `Authorization: Bearer <token>` with
/// a token the [`Verifier`] accepts; the verified token
/// ([`VerifiedToken`](veto_core::verify::VerifiedToken)) is then in the request's extensions.
///
/// Anything else is answered `401` without reaching the service: no token →
/// `WWW-Authenticate: Bearer` (RFC 6750 §3.1: no error code when no credentials were sent); a
/// rejected token → `WWW-Authenticate: Bearer error="invalid_token",
/// error_description="<reason>"` with veto's reason (`revoked`, `expired`, `index_stale`, ...).
#[derive(Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
    audience: Option<Arc<str>>,
}

impl VerifyLayer {
    pub fn new(verifier: Verifier) -> Self {
        VerifyLayer {
            verifier,
            audience: None,
        }
    }

    /// Tokens must name `audience` in their `aud`.
    pub fn audience(mut self, audience: impl Into<Arc<str>>) -> Self {
        self.audience = Some(audience.into());
        self
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> VerifyService<S> {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
            audience: self.audience.clone(),
        }
    }
}

/// The service [`VerifyLayer`] builds.
#[derive(Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
    audience: Option<Arc<str>>,
}

impl<S, B, R> tower::Service<Request<B>> for VerifyService<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was driven to readiness is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let audience = self.audience.clone();
        let token = bearer(&req).map(str::to_owned);
        Box::pin(async move {
            let Some(token) = token else {
                return Ok(unauthorized(None));
            };
            match verifier.verify(&token, audience.as_deref()).await {
                Ok(verified) => {
                    req.extensions_mut().insert(verified);
                    inner.call(req).await
                }
                Err(e) => Ok(unauthorized(Some(&e))),
            }
        })
    }
}

/// The token of an `Authorization: Bearer` header; the scheme is case-insensitive (RFC 9110
/// §11.1). Any other scheme, or none, is no token.
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

fn unauthorized<R: Default>(error: Option<&VerifyError>) -> Response<R> {
    let challenge = match error {
        None => HeaderValue::from_static("Bearer"),
        // The description is one of a fixed set of codes, all plain ASCII without quotes, so
        // it is always a valid quoted-string.
        Some(e) => HeaderValue::from_str(&format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            description(e)
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\"")),
    };
    let mut resp = Response::new(R::default());
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    resp
}

fn description(e: &VerifyError) -> String {
    match e {
        VerifyError::Rejected(r) => r.as_str().to_owned(),
        VerifyError::Symmetric(alg) => {
            format!("{alg} tokens can only be checked by veto itself (token introspection)")
        }
    }
}
