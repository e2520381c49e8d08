//! The grants of the OAuth token endpoint (`POST /t/{tenant}/oauth2/token`, RFC 6749 §3.2):
//! `refresh_token` (§6), which is the rotation of `refresh.rs` with its reuse detection, and
//! `client_credentials` (§4.4), an access token for the authenticated client itself.
//!
//! The client is an API key of the tenant holding `tokens:issue` (the contract); the route has
//! authenticated and authorised it before anything here runs.
use serde::Serialize;
use serde_json::{Map, Value};
use veto_core::apikey::ApiKeyRecord;
use veto_core::token::Audience;

use super::tokens::IssueRequest;
use crate::error::ApiResult;
use crate::state::AppState;

/// A token request, as the route read it from the form.
pub enum Grant<'a> {
    /// Rotate `refresh_token`; with `scope`, narrow the new access token's scope to it.
    RefreshToken {
        refresh_token: &'a str,
        scope: Option<Vec<&'a str>>,
    },
    /// An access token for the client itself, with `scope` as its `scope` claim and the
    /// resource indicators (RFC 8707) as its audience.
    ClientCredentials {
        scope: Option<Vec<&'a str>>,
        audience: Option<Audience>,
    },
}

/// RFC 6749 §5.1's successful answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer` (RFC 6750).
    pub token_type: &'static str,
    /// Lifetime of the access token, in seconds.
    pub expires_in: i64,
    /// The rotated refresh token (`refresh_token` grant only; RFC 6749 §4.4.3 says a
    /// client_credentials answer should not hold one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The access token's scope, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl AppState {
    /// Performs `grant` for `client` in `tenant`. Errors are the services' own: a refused
    /// refresh token is `ApiError::Rejected` (the route answers `invalid_grant`), a scope the
    /// refresh token was not granted a 400 naming `scope` (`invalid_scope`).
    pub async fn grant(
        &self,
        tenant: &str,
        client: &ApiKeyRecord,
        grant: Grant<'_>,
    ) -> ApiResult<TokenResponse> {
        match grant {
            Grant::RefreshToken {
                refresh_token,
                scope,
            } => {
                let out = self
                    .refresh_scoped(tenant, &client.id, refresh_token, scope.as_deref())
                    .await?;
                Ok(TokenResponse {
                    access_token: out.access_token,
                    token_type: out.token_type,
                    expires_in: out.expires_in,
                    refresh_token: Some(out.refresh_token),
                    scope: out.scope,
                })
            }
            Grant::ClientCredentials { scope, audience } => {
                self.client_credentials(tenant, client, scope.as_deref(), audience)
                    .await
            }
        }
    }

    /// RFC 6749 §4.4: an access token whose `sub` and `client_id` are the client's (the API
    /// key's id, as the contract says), with the tenant's default lifetime and algorithm.
    async fn client_credentials(
        &self,
        tenant: &str,
        client: &ApiKeyRecord,
        scope: Option<&[&str]>,
        audience: Option<Audience>,
    ) -> ApiResult<TokenResponse> {
        let scope = scope.map(veto_core::oauth_scope::join);
        let claims = scope.as_ref().map(|s| {
            let mut m = Map::new();
            m.insert("scope".into(), Value::from(s.as_str()));
            m
        });
        let req = IssueRequest {
            sub: client.id.clone(),
            aud: audience,
            ttl_seconds: None,
            alg: None,
            nbf: None,
            sid: None,
            client_id: Some(client.id.clone()),
            claims,
            token_use: None,
            status_list: None,
        };
        let out = self.issue_access_token(tenant, &client.id, &req).await?;
        Ok(TokenResponse {
            expires_in: (out.expires_at - out.issued_at).whole_seconds(),
            access_token: out.token,
            token_type: "Bearer",
            refresh_token: None,
            scope,
        })
    }
}
