use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use veto_core::Reason;
use veto_core::check::Checker;
use veto_core::timeutil;
use veto_core::token::{
    Audience, IssueInput, StatusRef, check_custom_claims, issue_as, new_jti, unsigned_len,
};
use veto_core::verify::VerifiedToken;

use super::check_ident;
use super::keys::parse_alg;
use crate::error::{ApiError, ApiResult};
use crate::metrics;
use crate::state::AppState;

/// JOSE `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";

/// JOSE `typ` of refresh tokens: never accepted where an access token is expected, nor the
/// other way round (the claim `token_use: "refresh"` says the same inside the token).
pub const REFRESH_TYP: &str = "rt+jwt";

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    pub sub: String,
    #[schema(value_type = Option<Object>)]
    pub aud: Option<Audience>,
    /// Default 900; at most the server's maximum token lifetime.
    pub ttl_seconds: Option<i64>,
    /// Default ES256.
    pub alg: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub nbf: Option<OffsetDateTime>,
    pub sid: Option<String>,
    /// Default: the calling API key's id.
    pub client_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    #[serde(default, deserialize_with = "veto_core::strict_json::optional_object")]
    pub claims: Option<Map<String, Value>>,
    /// `access` (default) or `refresh` (a refresh token starting a new family: rotate it with
    /// `POST …/tokens/refresh`; default lifetime the server's maximum token lifetime). Not
    /// accepted in batches.
    pub token_use: Option<String>,
    /// Give the token an entry in the tenant's OAuth Token Status List (its `status` claim).
    /// Default: the tenant's `status_list` setting.
    pub status_list: Option<bool>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssueResponse {
    pub token: String,
    pub jti: String,
    pub kid: String,
    pub alg: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The longest signature veto makes, in base64url: RSA with a 4096-bit modulus.
const LONGEST_SIGNATURE_B64: usize = 683;

/// A list id as long as veto makes them (`veto_core::status_list::new_list_id`).
const LONGEST_LIST_ID: &str = "0123456789012345678901";

/// veto refuses tokens over this size as `malformed` everywhere it reads one (verify,
/// introspection, self-logout): issuing one would hand out a token nobody can revoke.
fn too_large(len: usize) -> ApiResult<()> {
    if len <= veto_core::verify::MAX_TOKEN_BYTES {
        return Ok(());
    }
    metrics::issue_failed("too_large");
    Err(ApiError::field(
        "claims",
        format!(
            "the token would be {len} bytes, over the {} bytes veto accepts; send fewer or smaller claims",
            veto_core::verify::MAX_TOKEN_BYTES
        ),
    ))
}

/// The 400 for a `token_use` other than an access token's, where only access tokens are made.
fn check_access_use(tenant: &str, req: &IssueRequest) -> ApiResult<()> {
    match req.token_use.as_deref() {
        None | Some("access") => Ok(()),
        Some("refresh") => Err(ApiError::field(
            "token_use",
            format!(
                "refresh tokens are issued one at a time, with POST /v1/tenants/{tenant}/tokens"
            ),
        )),
        Some(other) => Err(ApiError::field(
            "token_use",
            format!("unsupported value {other:?}; use \"access\" or \"refresh\""),
        )),
    }
}

/// The outcome of a full check: signature, claims, then revocation state.
pub enum Check {
    Active(Box<VerifiedToken>),
    Inactive(Reason),
}

fn outcome_label(r: Option<Reason>) -> &'static str {
    r.map_or("active", Reason::as_str)
}

/// What `mint` makes. The claims each kind adds are veto's own, added after the caller's
/// custom claims were checked, which may never carry them (`check_custom_claims`).
#[derive(Clone)]
pub(crate) enum Minting {
    Access,
    /// An access token minted by a refresh: it carries its family (`fam`), so that revoking
    /// the family ends it too.
    AccessOfFamily(String),
    /// A refresh token of that family and generation (`rt+jwt`, `token_use`, `fam`, `gen`).
    Refresh(veto_core::refresh::RefreshClaims),
}

impl Minting {
    fn family(&self) -> Option<&str> {
        match self {
            Minting::Access => None,
            Minting::AccessOfFamily(fam) => Some(fam),
            Minting::Refresh(r) => Some(&r.fam),
        }
    }
}

/// A token validated and ready to sign: everything but its signature (and its status list
/// entry, when it gets one) is decided.
#[derive(Clone)]
pub(crate) struct Planned {
    key: std::sync::Arc<veto_core::keys::LoadedKey>,
    iat: i64,
    ttl: i64,
    jti: String,
    /// Its status list entry: the index, and the list's URI.
    status: Option<(u32, String)>,
}

/// Whether signing with `alg` is slow enough to leave the async workers (RSA: milliseconds).
pub(crate) fn slow_to_sign(alg: veto_core::Alg) -> bool {
    let a = alg.as_str();
    a.starts_with("RS") || a.starts_with("PS")
}

impl AppState {
    /// Issues an access token (`token_use` absent or `access`) without a status list entry,
    /// signing inline: for callers already on the blocking pool (batches).
    pub fn issue_token(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
    ) -> ApiResult<IssueResponse> {
        check_access_use(tenant, req)?;
        let plan = self.plan_token(tenant, req, &Minting::Access)?;
        self.sign_planned(tenant, caller_id, req, &Minting::Access, &plan)
    }

    /// Issues an access token: validated, given its status list entry when it gets one
    /// (`status_list`, else the tenant's setting), then signed (RSA on the blocking pool,
    /// `service::issuance`).
    pub async fn issue_access_token(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
    ) -> ApiResult<IssueResponse> {
        check_access_use(tenant, req)?;
        self.mint(tenant, caller_id, req, Minting::Access).await
    }

    /// Validates `req`, allocates the token's status list entry when it gets one, and signs.
    /// Nothing is written before every check passed, the size of the token included.
    pub(crate) async fn mint(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
        kind: Minting,
    ) -> ApiResult<IssueResponse> {
        let mut plan = self.plan_token(tenant, req, &kind)?;
        if req
            .status_list
            .unwrap_or_else(|| self.status_lists.enabled(tenant))
        {
            let placeholder = (u32::MAX, self.status_list_uri(tenant, LONGEST_LIST_ID));
            self.refuse_oversized(tenant, caller_id, req, &kind, &plan, &placeholder)?;
            plan.status = Some(self.allocate_status(tenant, req, &kind, &plan).await?);
        }
        if slow_to_sign(plan.key.alg) {
            let (st, t, a, r) = (
                self.clone(),
                tenant.to_owned(),
                caller_id.to_owned(),
                req.clone(),
            );
            self.signing
                .run(tenant, move || st.sign_planned(&t, &a, &r, &kind, &plan))
                .await?
        } else {
            self.sign_planned(tenant, caller_id, req, &kind, &plan)
        }
    }

    /// Every check of `req` that needs no write, and the choices made before signing: key,
    /// `iat`, lifetime, `jti`.
    fn plan_token(&self, tenant: &str, req: &IssueRequest, kind: &Minting) -> ApiResult<Planned> {
        // Issuing reads the same derived state as checking (tenant suspension, cutoffs, keys,
        // the caller's API key): a node that cannot vouch for it refuses to issue, as it
        // refuses to check, rather than mint tokens for a tenant suspended elsewhere.
        if !self.feed.may_answer() {
            return Err(ApiError::Unavailable(
                "this node's revocation state is stale (the store is unreachable); retry later or on another node".into(),
            ));
        }
        let t = self.require_tenant(tenant)?;
        check_ident("sub", &req.sub, 256)?;
        if let Some(sid) = &req.sid {
            check_ident("sid", sid, 256)?;
        }
        if let Some(c) = &req.client_id {
            check_ident("client_id", c, 256)?;
        }
        match &req.aud {
            Some(Audience::One(a)) => check_ident("aud", a, 256)?,
            Some(Audience::Many(v)) => {
                if v.is_empty() || v.len() > 32 {
                    return Err(ApiError::field("aud", "give 1 to 32 audiences"));
                }
                for a in v {
                    check_ident("aud", a, 256)?;
                }
            }
            None => {}
        }
        let default_ttl = match kind {
            Minting::Access | Minting::AccessOfFamily(_) => self.config.default_token_ttl,
            Minting::Refresh(_) => self.config.max_token_ttl,
        };
        let ttl = req.ttl_seconds.unwrap_or(default_ttl);
        if ttl < 1 || ttl > self.config.max_token_ttl {
            return Err(ApiError::field(
                "ttl_seconds",
                format!("must be between 1 and {}", self.config.max_token_ttl),
            ));
        }
        if let Some(given) = &req.claims {
            check_custom_claims(given).map_err(|m| ApiError::field("claims", m))?;
        }
        let alg = parse_alg(req.alg.as_deref().unwrap_or("ES256"))?;
        if t.suspended {
            metrics::issue_failed("tenant_suspended");
            return Err(ApiError::Conflict(format!(
                "tenant {tenant:?} is suspended; resume it before issuing tokens"
            )));
        }
        let key = self.pick_signing_key(tenant, alg, req.aud.as_ref()).ok_or_else(|| {
            metrics::issue_failed("no_key");
            ApiError::Conflict(format!(
                "tenant {tenant:?} has no active {alg} key; create one with POST /v1/tenants/{tenant}/keys"
            ))
        })?;
        let now = timeutil::now().unix_timestamp();
        // Never below a cutoff: the callers waited for it (`cutoff_wait`), so this raises `iat`
        // only if the clock stepped back meanwhile (see veto_core::revocation::Cutoff).
        let iat = self
            .index
            .min_iat(tenant, &req.sub)
            .map_or(now, |m| m.max(now));
        Ok(Planned {
            key,
            iat,
            ttl,
            jti: new_jti(),
            status: None,
        })
    }

    /// Calls `f` with the token's issue input: the caller's claims with veto's own for `kind`.
    fn with_input<R>(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
        kind: &Minting,
        plan: &Planned,
        f: impl FnOnce(&IssueInput<'_>) -> R,
    ) -> R {
        let mut claims = req.claims.clone().unwrap_or_default();
        match kind {
            Minting::Access => {}
            Minting::AccessOfFamily(fam) => {
                claims.insert("fam".into(), fam.as_str().into());
            }
            Minting::Refresh(r) => r.insert_into(&mut claims),
        }
        let issuer = self.config.issuer(tenant);
        f(&IssueInput {
            issuer: &issuer,
            tenant,
            sub: &req.sub,
            aud: req.aud.as_ref(),
            iat: plan.iat,
            ttl_seconds: plan.ttl,
            nbf: req.nbf.map(|n| n.unix_timestamp()),
            sid: req.sid.as_deref(),
            client_id: req.client_id.as_deref().unwrap_or(caller_id),
            claims: &claims,
            typ: match kind {
                Minting::Refresh(_) => REFRESH_TYP,
                Minting::Access | Minting::AccessOfFamily(_) => ACCESS_TYP,
            },
        })
    }

    /// The 400 for a token veto would refuse to read back, before anything is written for it:
    /// its unsigned part with `status` (the longest it can be), plus the longest signature.
    fn refuse_oversized(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
        kind: &Minting,
        plan: &Planned,
        status: &(u32, String),
    ) -> ApiResult<()> {
        let status = StatusRef {
            idx: status.0,
            uri: &status.1,
        };
        let unsigned = self.with_input(tenant, caller_id, req, kind, plan, |input| {
            unsigned_len(&plan.key, input, &plan.jti, Some(status))
        });
        too_large(unsigned + 1 + LONGEST_SIGNATURE_B64)
    }

    /// Signs a planned token.
    fn sign_planned(
        &self,
        tenant: &str,
        caller_id: &str,
        req: &IssueRequest,
        kind: &Minting,
        plan: &Planned,
    ) -> ApiResult<IssueResponse> {
        let key = &plan.key;
        let status = plan
            .status
            .as_ref()
            .map(|(idx, uri)| StatusRef { idx: *idx, uri });
        let issued = self
            .with_input(tenant, caller_id, req, kind, plan, |input| {
                issue_as(key, input, &plan.jti, status)
            })
            .map_err(|e| {
                metrics::issue_failed("signing");
                ApiError::Internal(format!("signing failed: {e}"))
            })?;
        too_large(issued.token.len())?;
        metrics::token_issued(key.alg.as_str());
        Ok(IssueResponse {
            token: issued.token,
            jti: issued.jti,
            kid: key.kid.clone(),
            alg: key.alg.as_str().to_owned(),
            issued_at: timeutil::from_unix(issued.iat).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            expires_at: timeutil::from_unix(issued.exp).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        })
    }

    /// A fresh status list entry for a planned token, in the tenant's current list: its index
    /// and the list's URI (`service::status_lists`).
    async fn allocate_status(
        &self,
        tenant: &str,
        req: &IssueRequest,
        kind: &Minting,
        plan: &Planned,
    ) -> ApiResult<(u32, String)> {
        let entry = veto_store::NewStatusEntry {
            tenant,
            jti: &plan.jti,
            sub: Some(&req.sub),
            sid: req.sid.as_deref(),
            kid: &plan.key.kid,
            fam: kind.family(),
            iat: plan.iat,
            exp: plan.iat.saturating_add(plan.ttl),
        };
        self.allocate_status_entry(&entry).await
    }

    /// A key bound to one of the requested audiences (in order), else an unbound one.
    fn pick_signing_key(
        &self,
        tenant: &str,
        alg: veto_core::Alg,
        aud: Option<&Audience>,
    ) -> Option<std::sync::Arc<veto_core::keys::LoadedKey>> {
        let auds: Vec<&str> = match aud {
            Some(Audience::One(a)) => vec![a.as_str()],
            Some(Audience::Many(v)) => v.iter().map(String::as_str).collect(),
            None => Vec::new(),
        };
        auds.iter()
            .filter_map(|a| self.keyring.signing_key(tenant, alg, Some(a)))
            .find(|k| k.audience.is_some())
            .or_else(|| self.keyring.signing_key(tenant, alg, None))
    }

    /// How long to wait before issuing to `sub`: a tenant or subject cutoff made within the
    /// current second rejects `iat` below the next second (`iat` has whole seconds), and a token
    /// whose `iat` lies in the future is refused by strict verifiers (PyJWT: "not yet valid").
    /// So issuance right after a revoke-all waits for that second to begin, at most a second,
    /// rather than predating the cutoff or postdating `iat`.
    pub(crate) fn cutoff_wait(&self, tenant: &str, sub: &str) -> Option<std::time::Duration> {
        let cutoff_ms = self.index.min_iat(tenant, sub)?.saturating_mul(1_000);
        let now_ms = (timeutil::now().unix_timestamp_nanos() / 1_000_000) as i64;
        let wait = cutoff_ms.saturating_sub(now_ms);
        // A cutoff more than a second ahead is a clock that stepped back: no point waiting.
        (1..=1_000)
            .contains(&wait)
            .then(|| std::time::Duration::from_millis(wait as u64))
    }

    /// [`cutoff_wait`](Self::cutoff_wait), waited for.
    pub(crate) async fn after_cutoff(&self, tenant: &str, sub: &str) {
        if let Some(wait) = self.cutoff_wait(tenant, sub) {
            tokio::time::sleep(wait).await;
        }
    }

    /// The tenant's checker over this node's keys and revocation index.
    fn checker<'a>(&'a self, tenant: &'a str, issuer: &'a str) -> Checker<'a> {
        Checker {
            keys: &self.keyring,
            index: &self.index,
            tenant,
            issuer,
            leeway: self.config.leeway,
        }
    }

    /// The whole pipeline of docs/architecture.md ("Is this token good?") for an access token of `tenant`, answered from memory.
    pub fn check_token(&self, tenant: &str, token: &str, audience: Option<&str>) -> Check {
        self.check_typed(tenant, token, audience, ACCESS_TYP)
    }

    /// The pipeline for a token of JOSE type `typ` (access or refresh).
    pub(crate) fn check_typed(
        &self,
        tenant: &str,
        token: &str,
        audience: Option<&str>,
        typ: &str,
    ) -> Check {
        let now = timeutil::now().unix_timestamp();
        let issuer = self.config.issuer(tenant);
        // The freshness gate is this node's: whether it can vouch for its state is what `feed`
        // knows, and a stale node must not answer active (veto_core::check places the gate).
        let outcome = self
            .checker(tenant, &issuer)
            .check(token, typ, audience, now, || self.feed.may_answer());
        metrics::check(outcome_label(outcome.as_ref().err().copied()));
        match outcome {
            Ok(verified) => Check::Active(Box::new(verified)),
            Err(r) => Check::Inactive(r),
        }
    }

    /// Signature, key and issuer checks without the time checks: used to take jti, sub and
    /// expiry from a token being revoked (an expired token may still be revoked).
    pub fn verify_for_revocation(
        &self,
        tenant: &str,
        token: &str,
    ) -> Result<VerifiedToken, Reason> {
        self.verify_signed(tenant, token, ACCESS_TYP)
    }

    /// [`verify_for_revocation`](Self::verify_for_revocation) for a token of JOSE type `typ`.
    pub(crate) fn verify_signed(
        &self,
        tenant: &str,
        token: &str,
        typ: &str,
    ) -> Result<VerifiedToken, Reason> {
        let issuer = self.config.issuer(tenant);
        self.checker(tenant, &issuer)
            .verify_signed(token, typ, timeutil::now().unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use veto_core::Alg;

    #[test]
    fn rsa_leaves_the_async_workers_the_cheap_algorithms_do_not() {
        for alg in [Alg::RS256, Alg::RS512, Alg::PS256] {
            assert!(slow_to_sign(alg), "{alg}");
        }
        for alg in [Alg::ES256, Alg::EdDSA, Alg::HS256] {
            assert!(!slow_to_sign(alg), "{alg}");
        }
    }
}
