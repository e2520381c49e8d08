//! Refresh tokens: a new family at issuance, rotation with reuse detection, and revocation of a
//! whole family. The rule is `veto_core::refresh::rotate`; the store keeps one row per family
//! and commits each rotation as a compare-and-swap on its generation, so the state grows with
//! logins, not with refreshes.
//!
//! A refresh token is a JWT of JOSE type `rt+jwt` with `token_use`, `fam` and `gen`. The access
//! tokens minted from it carry `fam` too, so revoking the family (reuse detected, or RFC 7009)
//! rejects them from memory as well as the refresh tokens.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use veto_core::Reason;
use veto_core::audit::AuditEvent;
use veto_core::oauth_scope;
use veto_core::refresh::{REUSE_REASON, RefreshClaims, RefreshFamily, RotateDecision, rotate};
use veto_core::timeutil;
use veto_core::token::RESERVED_CLAIMS;
use veto_core::verify::VerifiedToken;

use super::tokens::{Check, IssueRequest, IssueResponse, Minting, REFRESH_TYP};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Claims of a refresh token that are not carried over to the tokens minted from it: veto sets
/// them anew (the registered ones and `client_id`) or they describe the refresh token itself.
/// A `status` names the presented token's own status list entry: each minted token gets its own.
const NOT_CARRIED: [&str; 5] = ["client_id", "token_use", "fam", "gen", "status"];

/// How often a rotation that lost a compare-and-swap is decided again. One retry always
/// suffices (the re-read shows the winner's generation, which makes ours a reuse); the bound
/// only keeps a misbehaving store from looping.
const ROTATION_ATTEMPTS: usize = 3;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RefreshResponse {
    pub access_token: String,
    /// Replaces the presented one, which stops working.
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Lifetime of the access token, in seconds.
    pub expires_in: i64,
    /// The access token's `scope` claim, for the token endpoint's answer (RFC 6749 §5.1).
    #[serde(skip)]
    pub scope: Option<String>,
}

fn rejected(reason: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::Rejected {
        reason,
        detail: detail.into(),
    }
}

impl AppState {
    /// Issues the first refresh token of a new family (`token_use: "refresh"`).
    pub async fn issue_refresh_token(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
    ) -> ApiResult<IssueResponse> {
        // The family's expiry is the first token's: known once it is signed, and stored before
        // the token is handed out (a token whose family is not stored never refreshes).
        let mut family = RefreshFamily::new(tenant, &req.sub, OffsetDateTime::UNIX_EPOCH);
        let first = family.current_claims();
        let out = self
            .mint(tenant, caller_id, req, Minting::Refresh(first))
            .await?;
        family.expires_at = out.expires_at;
        self.store.create_refresh_family(&family).await?;
        Ok(out)
    }

    /// Rotates a refresh token: a new access token and the family's next refresh token, or the
    /// contract's 401 (`refresh_token_reuse` revoking the family when a rotated token is back).
    pub async fn refresh(
        &self,
        tenant: &str,
        caller_id: &str,
        token: &str,
    ) -> ApiResult<RefreshResponse> {
        self.refresh_scoped(tenant, caller_id, token, None).await
    }

    /// [`refresh`](Self::refresh), with the access token's scope narrowed to `scope` (RFC 6749
    /// §6, the token endpoint's `scope` parameter): every token of it must be in the refresh
    /// token's own `scope`, else a 400 naming the field `scope` and nothing is rotated. The
    /// next refresh token keeps the scope originally granted, so a later refresh may ask for
    /// all of it again.
    pub async fn refresh_scoped(
        &self,
        tenant: &str,
        caller_id: &str,
        token: &str,
        scope: Option<&[&str]>,
    ) -> ApiResult<RefreshResponse> {
        self.require_tenant(tenant)?;
        let v = match self.check_typed(tenant, token, None, REFRESH_TYP) {
            Check::Active(v) => v,
            Check::Inactive(Reason::IndexStale) => {
                return Err(ApiError::Unavailable(
                    "this node's revocation state is stale; retry later".into(),
                ));
            }
            Check::Inactive(r) => {
                return Err(rejected(
                    r.as_str(),
                    format!("the refresh token is not valid ({})", r.as_str()),
                ));
            }
        };
        // Parsed once: the family claims come from it, and the custom claims every rotation
        // attempt carries over.
        let mut custom = v.claims.to_map();
        let claims = RefreshClaims::from_claims(&custom)
            .ok_or_else(|| rejected("malformed", "the token is not a refresh token"))?;
        // A family begun with a status list entry keeps giving its tokens one, whatever the
        // tenant's setting says now; others follow the setting.
        let status_list = custom.contains_key("status").then_some(true);
        for name in RESERVED_CLAIMS.iter().chain(&NOT_CARRIED) {
            custom.remove(*name);
        }
        // Judged now, raised only when the token is the family's current one: a rotated token
        // is reuse whatever scope it asks for, and must revoke its family all the same.
        let granted = custom.get("scope").and_then(Value::as_str);
        let access_scope: Result<Option<String>, String> = match scope {
            None => Ok(granted.map(str::to_owned)),
            Some(requested) => {
                let beyond = oauth_scope::beyond(requested, granted);
                if beyond.is_empty() {
                    Ok(Some(oauth_scope::join(requested)))
                } else {
                    Err(format!(
                        "{} was not granted to this refresh token; ask for its scope ({}) or part of it",
                        oauth_scope::join(&beyond),
                        granted.unwrap_or("none")
                    ))
                }
            }
        };
        let now = timeutil::now();
        for _ in 0..ROTATION_ATTEMPTS {
            let family = self
                .store
                .get_refresh_family(tenant, &claims.fam)
                .await?
                .filter(|f| v.sub.as_deref() == Some(f.sub.as_str()))
                .ok_or_else(|| rejected("revoked", "the refresh token's family is unknown"))?;
            match rotate(&family, claims.generation, now) {
                RotateDecision::Rotate { next_gen } => {
                    self.after_cutoff(tenant, &family.sub).await;
                    let access_scope = access_scope
                        .clone()
                        .map_err(|m| ApiError::field("scope", m))?;
                    // Signed before the swap, so that a won swap is never followed by a failure
                    // that would leave the client holding a token already rotated.
                    let pair = self
                        .mint_pair(
                            tenant,
                            caller_id,
                            &v,
                            &custom,
                            access_scope.as_deref(),
                            status_list,
                            &family,
                            next_gen,
                            now,
                        )
                        .await?;
                    if self
                        .store
                        .rotate_refresh_family(tenant, &family.id, claims.generation, next_gen)
                        .await?
                    {
                        return Ok(pair);
                    }
                }
                RotateDecision::Reuse => {
                    self.revoke_family(
                        caller_id,
                        tenant,
                        &family.id,
                        "refresh.reuse",
                        REUSE_REASON,
                    )
                    .await?;
                    return Err(rejected(
                        REUSE_REASON,
                        "this refresh token was already used; that is treated as theft, and every token of its family is revoked",
                    ));
                }
                RotateDecision::Invalid => {
                    if family.revoked_at.is_some() {
                        self.index.revoke_family(tenant, &family.id);
                        return Err(rejected("revoked", "the refresh token's family is revoked"));
                    }
                    return Err(rejected(
                        "expired",
                        "the refresh token's family has expired, or the token was never current",
                    ));
                }
            }
        }
        Err(ApiError::Unavailable(
            "the refresh token is being rotated concurrently; retry".into(),
        ))
    }

    /// The access token and next refresh token of a rotation: same subject, audience, session,
    /// client, algorithm and `custom` claims (the presented token's, less veto's own) as the
    /// presented refresh token, except that the access token's `scope` is `access_scope`. The
    /// refresh token expires with its family; the access token carries `fam`.
    #[allow(clippy::too_many_arguments)]
    async fn mint_pair(
        &self,
        tenant: &str,
        caller_id: &str,
        v: &VerifiedToken,
        custom: &Map<String, Value>,
        access_scope: Option<&str>,
        status_list: Option<bool>,
        family: &RefreshFamily,
        next_gen: u32,
        now: OffsetDateTime,
    ) -> ApiResult<RefreshResponse> {
        let base = IssueRequest {
            sub: family.sub.clone(),
            aud: v.aud.clone(),
            ttl_seconds: None,
            alg: Some(v.alg.as_str().to_owned()),
            nbf: None,
            sid: v.sid.as_deref().map(str::to_owned),
            client_id: v.client_id.as_deref().map(str::to_owned),
            claims: Some(custom.clone()),
            token_use: None,
            status_list,
        };
        let mut access_claims = custom.clone();
        match access_scope {
            Some(s) => access_claims.insert("scope".into(), s.into()),
            None => access_claims.remove("scope"),
        };
        let access = self
            .mint(
                tenant,
                caller_id,
                &IssueRequest {
                    claims: Some(access_claims),
                    ..base.clone()
                },
                Minting::AccessOfFamily(family.id.clone()),
            )
            .await?;
        let remaining = (family.expires_at - now).whole_seconds();
        let next = RefreshClaims {
            fam: family.id.clone(),
            generation: next_gen,
        };
        let refresh = self
            .mint(
                tenant,
                caller_id,
                &IssueRequest {
                    ttl_seconds: Some(remaining.clamp(1, self.config.max_token_ttl)),
                    ..base
                },
                Minting::Refresh(next),
            )
            .await?;
        Ok(RefreshResponse {
            expires_in: (access.expires_at - access.issued_at).whole_seconds(),
            access_token: access.token,
            refresh_token: refresh.token,
            token_type: "Bearer",
            scope: access_scope.map(str::to_owned),
        })
    }

    /// Revokes a family (store first, then memory). Returns whether the family exists.
    async fn revoke_family(
        &self,
        actor: &str,
        tenant: &str,
        fam: &str,
        action: &str,
        reason: &str,
    ) -> ApiResult<bool> {
        let audit = AuditEvent::new(tenant, actor, action, fam).with_reason(Some(reason));
        let written = self
            .store
            .revoke_refresh_family(tenant, fam, &audit)
            .await?;
        let Some(out) = self.applied(written).await? else {
            return Ok(false);
        };
        if !out.newly {
            // Revoked before, perhaps on another node whose change this node has not read
            // yet: a revocation is final, so what the store shows can be taken at once.
            self.index.revoke_family(tenant, fam);
        }
        Ok(true)
    }

    /// RFC 7662 for refresh tokens: `Some` while `token` is usable, that is while it passes the
    /// whole check (signature, claims, the revocation index, its family not revoked) and is
    /// still its family's current token, neither rotated nor past the family's expiry. Where a
    /// family stands in its rotation is kept only in the store's family row (one row per
    /// family, docs/architecture.md), so this reads it: one query, for refresh tokens only.
    pub async fn usable_refresh_token(
        &self,
        tenant: &str,
        token: &str,
    ) -> ApiResult<Option<VerifiedToken>> {
        let v = match self.check_typed(tenant, token, None, REFRESH_TYP) {
            Check::Active(v) => v,
            Check::Inactive(_) => return Ok(None),
        };
        let Some(c) = RefreshClaims::from_claims(&v.claims.to_map()) else {
            return Ok(None);
        };
        let Some(family) = self.store.get_refresh_family(tenant, &c.fam).await? else {
            return Ok(None);
        };
        let current = v.sub.as_deref() == Some(family.sub.as_str())
            && matches!(
                rotate(&family, c.generation, timeutil::now()),
                RotateDecision::Rotate { .. }
            );
        Ok(current.then_some(*v))
    }

    /// RFC 7009 for refresh tokens: when `token` is a refresh token of this tenant (signature
    /// checked, expiry not: an expired token may still be revoked), its whole family is revoked
    /// and this answers `true`; for anything else, `false` and nothing is written.
    pub async fn revoke_refresh_token(
        &self,
        tenant: &str,
        actor: &str,
        token: &str,
        reason: &str,
    ) -> ApiResult<bool> {
        let Ok(v) = self.verify_signed(tenant, token, REFRESH_TYP) else {
            return Ok(false);
        };
        let Some(c) = RefreshClaims::from_claims(&v.claims.to_map()) else {
            return Ok(false);
        };
        self.revoke_family(actor, tenant, &c.fam, "refresh.revoke", reason)
            .await?;
        Ok(true)
    }
}
