//! Caller authentication and tenant isolation, route by route (the contract's "Authentication of
//! callers"). One table lists every route that takes credentials, with a request that would
//! succeed; each is sent with no credentials, an unknown key, a key of another tenant holding
//! every tenant scope, that key on a tenant that does not exist, and a key of the tenant without
//! the route's scope. The first two must be 401 with a challenge, the others 403, and none of
//! them may write anything: the tenant's state is read back afterwards and compared with what it
//! was before. The table is then replayed with keys holding exactly the route's scope, which
//! proves that its requests and scopes are right (so that a 403 above is the authorisation
//! talking, not a bad request), and it is checked against `/openapi.json` and the router, so a
//! new route without a row fails here.
mod common;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use common::*;
use serde_json::{Value, json};

/// The tenant under attack.
const VICTIM: &str = "victim";
/// The attacker's own tenant: its key holds every scope a tenant key can hold.
const MALLORY: &str = "mallory";
/// A tenant that does not exist: another tenant's key must learn nothing about it, so it gets
/// the same 403 as on a tenant that exists, never a 404.
const GHOST: &str = "ghost";
/// Shaped like a real key (`vk_` + 43 base64url characters), known to no server.
const UNKNOWN_KEY: &str = "vk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Who may call a route.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// Admin keys only (scope `tenants:manage`): 403 for every tenant key, whatever it holds.
    Admin,
    /// Any key of the tenant.
    Member,
    /// A key of the tenant holding one of these scopes.
    Scope(&'static [&'static str]),
}

impl Need {
    /// The scopes of a key of the tenant that may not call the route (`None`: every key may).
    fn lacking(self) -> Option<Vec<&'static str>> {
        match self {
            Need::Admin => Some(TENANT_SCOPES.to_vec()),
            Need::Member => None,
            Need::Scope(s) => Some(
                TENANT_SCOPES
                    .iter()
                    .copied()
                    .filter(|t| !s.contains(t))
                    .collect(),
            ),
        }
    }

    /// The scope sets of keys that may call the route, one per alternative (`None`: admin only).
    fn granted(self) -> Option<Vec<Vec<&'static str>>> {
        match self {
            Need::Admin => None,
            Need::Member => Some(vec![vec!["audit:read"]]),
            Need::Scope(s) => Some(s.iter().map(|x| vec![*x]).collect()),
        }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Empty,
    Json(Value),
    /// `application/x-www-form-urlencoded`: the OAuth endpoints, which answer in OAuth's error
    /// shape rather than problem+json.
    Form(Vec<(&'static str, String)>),
}

/// One route of the contract with a request that succeeds for a caller allowed to make it.
#[derive(Debug)]
struct Row {
    method: &'static str,
    /// The route as the router and `/openapi.json` spell it.
    template: &'static str,
    /// Values of the path parameters other than `{tenant}`.
    params: Vec<(&'static str, String)>,
    query: &'static str,
    body: Body,
    need: Need,
    /// The status of the request when the caller may make it.
    ok: u16,
    /// RFC 7009 revocation also takes no credentials, to revoke the very token presented
    /// (self-logout); without credentials it answers 200 and revokes nothing that is not a
    /// valid token of the tenant.
    self_logout: bool,
}

impl Row {
    fn new(method: &'static str, template: &'static str, need: Need, ok: u16) -> Row {
        Row {
            method,
            template,
            params: Vec::new(),
            query: "",
            body: Body::Empty,
            need,
            ok,
            self_logout: false,
        }
    }

    fn json(mut self, v: Value) -> Row {
        self.body = Body::Json(v);
        self
    }

    fn form(mut self, token: &str) -> Row {
        self.body = Body::Form(vec![("token", token.to_owned())]);
        self
    }

    fn form_pairs(mut self, pairs: &[(&'static str, &str)]) -> Row {
        self.body = Body::Form(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect());
        self
    }

    fn at(mut self, name: &'static str, value: &str) -> Row {
        self.params.push((name, value.to_owned()));
        self
    }

    fn query(mut self, query: &'static str) -> Row {
        self.query = query;
        self
    }

    fn label(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    fn has_tenant(&self) -> bool {
        self.template.contains("{tenant}")
    }

    fn path(&self, tenant: &str) -> String {
        let mut p = self.template.replace("{tenant}", tenant);
        for (name, value) in &self.params {
            p = p.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !p.contains('{'),
            "{}: unfilled parameter in {p}",
            self.label()
        );
        if !self.query.is_empty() {
            p = format!("{p}?{}", self.query);
        }
        p
    }

    /// For the OAuth endpoints, the `error` of their 403: RFC 6749 §5.2's `unauthorized_client`
    /// at the token endpoint, RFC 6750's `insufficient_scope` at the others. `None` elsewhere.
    fn oauth_forbidden(&self) -> Option<&'static str> {
        match self.body {
            Body::Form(_) if self.template.ends_with("/oauth2/token") => {
                Some("unauthorized_client")
            }
            Body::Form(_) => Some("insufficient_scope"),
            _ => None,
        }
    }
}

/// What the victim holds before the matrix runs; the rows name it in their paths and bodies.
#[derive(Clone)]
struct Fixture {
    /// An access token of `alice`.
    token: String,
    jti: String,
    refresh: String,
    /// An HS256 key the table's key revocation targets.
    spare_kid: String,
    /// An API key the table's deletion targets.
    spare_api_key: String,
    session_id: String,
    cookie: String,
    csrf: String,
    prelogin: String,
}

const PRELOGIN_STATE: &str = "matrix-state";

async fn fixture(srv: &Server) -> Fixture {
    let t = srv
        .issue(VICTIM, json!({"sub": "alice", "aud": "api"}))
        .await;
    let refresh = srv
        .issue(VICTIM, json!({"sub": "alice", "token_use": "refresh"}))
        .await;
    let (spare_api_key, _) = srv.create_api_key(VICTIM, &["tokens:verify"]).await;
    let session = srv
        .post(
            &format!("/v1/tenants/{VICTIM}/sessions"),
            json!({"actor_id": "alice", "actor_type": "user"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let prelogin = srv
        .post(
            &format!("/v1/tenants/{VICTIM}/prelogin"),
            json!({"state": PRELOGIN_STATE, "nonce": "n-1", "pkce_verifier": "v".repeat(43)}),
        )
        .await
        .expect(StatusCode::CREATED);
    Fixture {
        token: str_of(&t["token"]),
        jti: str_of(&t["jti"]),
        refresh: str_of(&refresh["token"]),
        spare_kid: srv.create_key(VICTIM, "HS256").await,
        spare_api_key,
        session_id: str_of(&session["session"]["id"]),
        cookie: str_of(&session["cookie"]),
        csrf: str_of(&session["csrf_token"]),
        prelogin: str_of(&prelogin["cookie"]),
    }
}

/// A server with the victim (and its fixture) and mallory, whose key holds every tenant scope.
async fn victim_and_mallory() -> (Server, Fixture, (String, String)) {
    let srv = Server::start().await;
    srv.create_tenant(VICTIM).await;
    srv.create_tenant(MALLORY).await;
    let f = fixture(&srv).await;
    let mallory = srv.create_api_key(MALLORY, &TENANT_SCOPES).await;
    (srv, f, mallory)
}

/// Every route of the contract that takes credentials, in an order in which replaying it with
/// sufficient keys succeeds row after row (create before read before delete; the tenant-wide
/// cutoff last, since it ends every token issued before it).
fn table(f: &Fixture) -> Vec<Row> {
    use Need::*;
    const KEYS: Need = Scope(&["keys:manage"]);
    const ISSUE: Need = Scope(&["tokens:issue"]);
    const VERIFY: Need = Scope(&["tokens:verify"]);
    const REVOKE: Need = Scope(&["tokens:revoke"]);
    const REVOCATIONS_READ: Need = Scope(&["tokens:revoke", "audit:read"]);
    const AUDIT: Need = Scope(&["audit:read"]);
    const SESSIONS_WRITE: Need = Scope(&["sessions:write"]);
    const SESSIONS_READ: Need = Scope(&["sessions:read"]);
    let reason = || json!({"reason": "isolation matrix"});
    vec![
        Row::new("GET", "/v1/tenants/{tenant}", Member, 200),
        Row::new("POST", "/v1/tenants", Admin, 201)
            .json(json!({"id": "matrix-made", "display_name": "Made by the matrix"})),
        Row::new("PATCH", "/v1/tenants/{tenant}", Admin, 200).json(json!({"status_list": false})),
        Row::new("POST", "/v1/tenants/{tenant}/suspend", Admin, 200).json(reason()),
        Row::new("POST", "/v1/tenants/{tenant}/resume", Admin, 200).json(reason()),
        Row::new("POST", "/v1/admin/purge", Admin, 200).json(json!({"safety_margin_seconds": 30})),
        // API keys.
        Row::new("POST", "/v1/tenants/{tenant}/api-keys", KEYS, 201)
            .json(json!({"name": "made by the matrix", "scopes": ["tokens:issue"]})),
        Row::new("GET", "/v1/tenants/{tenant}/api-keys", KEYS, 200),
        Row::new("DELETE", "/v1/tenants/{tenant}/api-keys/{id}", KEYS, 204)
            .at("id", &f.spare_api_key),
        // Signing keys.
        Row::new("POST", "/v1/tenants/{tenant}/keys", KEYS, 201).json(json!({"alg": "HS256"})),
        Row::new("GET", "/v1/tenants/{tenant}/keys", KEYS, 200),
        Row::new("POST", "/v1/tenants/{tenant}/keys/rotate", KEYS, 201)
            .json(json!({"alg": "EdDSA"})),
        Row::new("POST", "/v1/tenants/{tenant}/keys/{kid}/revoke", KEYS, 200)
            .at("kid", &f.spare_kid)
            .json(reason()),
        // Tokens.
        Row::new("POST", "/v1/tenants/{tenant}/tokens", ISSUE, 201)
            .json(json!({"sub": "matrix-sub", "aud": "api"})),
        Row::new("POST", "/v1/tenants/{tenant}/tokens/batch", ISSUE, 200)
            .json(json!({"requests": [{"sub": "matrix-sub"}, {"sub": "matrix-sub-2"}]})),
        Row::new("POST", "/v1/tenants/{tenant}/tokens/verify", VERIFY, 200)
            .json(json!({"token": f.token})),
        Row::new("POST", "/v1/tenants/{tenant}/tokens/refresh", ISSUE, 200)
            .json(json!({"refresh_token": f.refresh})),
        Row::new("POST", "/t/{tenant}/oauth2/introspect", VERIFY, 200).form(&f.token),
        // The token endpoint's client_credentials grant: the client's own token, nothing stored.
        Row::new("POST", "/t/{tenant}/oauth2/token", ISSUE, 200)
            .form_pairs(&[("grant_type", "client_credentials"), ("scope", "matrix")]),
        // Revocations.
        Row::new("POST", "/v1/tenants/{tenant}/revocations", REVOKE, 201)
            .json(json!({"jti": "matrix-jti", "until": in_seconds(3600), "reason": "matrix"})),
        Row::new(
            "GET",
            "/v1/tenants/{tenant}/revocations",
            REVOCATIONS_READ,
            200,
        ),
        Row::new(
            "GET",
            "/v1/tenants/{tenant}/revocations/stats",
            REVOCATIONS_READ,
            200,
        ),
        Row::new(
            "GET",
            "/v1/tenants/{tenant}/revocations/stream",
            VERIFY,
            200,
        ),
        Row::new(
            "GET",
            "/v1/tenants/{tenant}/revocations/{jti}",
            REVOCATIONS_READ,
            200,
        )
        .at("jti", "matrix-jti"),
        Row::new(
            "DELETE",
            "/v1/tenants/{tenant}/revocations/{jti}",
            REVOKE,
            204,
        )
        .at("jti", "matrix-jti"),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/revocations/batch",
            REVOKE,
            200,
        )
        .json(json!({"revocations": [{"jti": "matrix-batch-1"}, {"jti": "matrix-batch-2"}]})),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/subjects/{sub}/revoke-all",
            REVOKE,
            200,
        )
        .at("sub", "matrix-sub")
        .json(reason()),
        Row::new("GET", "/v1/tenants/{tenant}/audit", AUDIT, 200),
        // Sessions, pre-login state, session keys.
        Row::new("POST", "/v1/tenants/{tenant}/sessions", SESSIONS_WRITE, 201)
            .json(json!({"actor_id": "matrix-actor", "actor_type": "user"})),
        Row::new("GET", "/v1/tenants/{tenant}/sessions", SESSIONS_READ, 200)
            .query("actor_id=alice&actor_type=user"),
        Row::new(
            "GET",
            "/v1/tenants/{tenant}/sessions/{id}",
            SESSIONS_READ,
            200,
        )
        .at("id", &f.session_id),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/sessions/validate",
            SESSIONS_WRITE,
            200,
        )
        .json(json!({"cookie": f.cookie, "csrf_token": f.csrf, "touch": true})),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/sessions/{id}/revoke",
            SESSIONS_WRITE,
            200,
        )
        .at("id", &f.session_id)
        .json(reason()),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/actors/{actor_type}/{actor_id}/sessions/revoke-all",
            SESSIONS_WRITE,
            200,
        )
        .at("actor_type", "user")
        .at("actor_id", "alice")
        .json(reason()),
        Row::new("POST", "/v1/tenants/{tenant}/prelogin", SESSIONS_WRITE, 201).json(json!({
            "state": "matrix-state-2", "nonce": "n-2", "pkce_verifier": "w".repeat(43)
        })),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/prelogin/consume",
            SESSIONS_WRITE,
            200,
        )
        .json(json!({"cookie": f.prelogin, "state": PRELOGIN_STATE})),
        Row::new("GET", "/v1/tenants/{tenant}/session-keys", KEYS, 200),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/session-keys/rotate",
            KEYS,
            200,
        ),
        // Ends the fixture's access token, and then every token of the tenant: last.
        Row {
            self_logout: true,
            ..Row::new("POST", "/t/{tenant}/oauth2/revoke", REVOKE, 200).form(&f.token)
        },
        Row::new("POST", "/v1/tenants/{tenant}/revoke-all", Admin, 200).json(reason()),
    ]
}

/// How a request presents an API key.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    /// HTTP Basic with key id and secret, each form-urlencoded first (RFC 6749 §2.3.1).
    Basic(&'a str, &'a str),
}

fn form_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_owned()
}

async fn send(srv: &Server, row: &Row, tenant: &str, body: &Body, cred: Cred<'_>) -> Resp {
    let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
    let mut req = srv.http.request(method, srv.url(&row.path(tenant)));
    req = match body {
        Body::Empty => req,
        Body::Json(v) => req.json(v),
        Body::Form(pairs) => req.form(pairs),
    };
    req = match cred {
        Cred::None => req,
        Cred::Bearer(k) => req.bearer_auth(k),
        Cred::Basic(id, secret) => {
            let pair = format!("{}:{}", form_encode(id), form_encode(secret));
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            req.header("authorization", format!("Basic {b64}"))
        }
    };
    if row.template.ends_with("/revocations/stream") {
        // An open stream never ends: its status and headers are the answer (refusals are
        // ordinary problem documents).
        let resp = req.send().await.expect("stream request");
        if resp.status() != StatusCode::OK {
            return Resp::read(resp).await;
        }
        return Resp {
            status: resp.status(),
            headers: resp.headers().clone(),
            text: String::new(),
            json: Value::Null,
        };
    }
    srv.send(&row.label(), req).await
}

/// A refusal: 401 with a challenge naming Bearer, or 403; problem+json, or on the OAuth
/// endpoints `{"error", "error_description"}` (`oauth`: the `error` of their 403).
#[track_caller]
fn assert_refused(r: &Resp, status: u16, oauth: Option<&str>, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text);
    if status == 401 {
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(www.contains("Bearer"), "{what}: WWW-Authenticate {www:?}");
    }
    let Some(forbidden) = oauth else {
        assert_problem(r, status);
        return;
    };
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{what}: {ct}");
    let want = if status == 401 {
        "invalid_client"
    } else {
        forbidden
    };
    assert_eq!(r.json["error"], want, "{what}: {}", r.text);
    assert!(
        r.json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: {}",
        r.text
    );
}

/// API keys of the victim, by their sorted scope set: `(id, secret)`.
type Keys = BTreeMap<Vec<&'static str>, (String, String)>;

async fn key_with(srv: &Server, keys: &mut Keys, mut scopes: Vec<&'static str>) {
    scopes.sort();
    if let std::collections::btree_map::Entry::Vacant(slot) = keys.entry(scopes) {
        let k = srv.create_api_key(VICTIM, slot.key()).await;
        slot.insert(k);
    }
}

fn key_of<'k>(keys: &'k Keys, mut scopes: Vec<&'static str>) -> &'k (String, String) {
    scopes.sort();
    &keys[&scopes]
}

/// The victim's state as an admin reads it. None of these reads writes anything.
async fn snapshot(srv: &Server, f: &Fixture) -> BTreeMap<&'static str, Value> {
    let t = format!("/v1/tenants/{VICTIM}");
    let read = |path: String| async move {
        let r = srv.get(&path).await;
        json!({"status": r.status.as_u16(), "body": r.json})
    };
    let mut out = BTreeMap::new();
    out.insert("tenant", read(t.clone()).await);
    out.insert(
        "tenant made by the matrix",
        read("/v1/tenants/matrix-made".into()).await,
    );
    out.insert(
        "the missing tenant",
        read(format!("/v1/tenants/{GHOST}")).await,
    );
    out.insert(
        "revocations",
        read(format!("{t}/revocations?limit=1000")).await,
    );
    out.insert(
        "revocation stats",
        read(format!("{t}/revocations/stats")).await,
    );
    out.insert("audit", read(format!("{t}/audit?limit=1000")).await);
    out.insert("api keys", read(format!("{t}/api-keys?limit=1000")).await);
    out.insert("signing keys", read(format!("{t}/keys")).await);
    out.insert("session keys", read(format!("{t}/session-keys")).await);
    out.insert(
        "sessions of alice",
        read(format!("{t}/sessions?actor_id=alice&actor_type=user")).await,
    );
    out.insert(
        "sessions of the matrix actor",
        read(format!(
            "{t}/sessions?actor_id=matrix-actor&actor_type=user"
        ))
        .await,
    );
    out.insert(
        "the session",
        read(format!("{t}/sessions/{}", f.session_id)).await,
    );
    out.insert(
        "verify the token",
        // Without its position, which any node's write moves.
        verdict(srv.verify(VICTIM, &f.token).await),
    );
    out.insert(
        "introspect the token",
        srv.introspect(VICTIM, &f.token).await,
    );
    out
}

#[tokio::test]
async fn every_route_refuses_missing_unknown_foreign_and_unscoped_keys_and_writes_nothing() {
    let (srv, f, (mallory_id, mallory)) = victim_and_mallory().await;
    let rows = table(&f);
    let mallory_token = srv.token(MALLORY, "alice").await;
    // The victim's token with its signature's first character changed: not a token of the
    // victim any more, so a caller without credentials cannot revoke anything with it.
    let forged = {
        let (head, sig) = f.token.rsplit_once('.').unwrap();
        let c = if sig.starts_with('A') { 'B' } else { 'A' };
        format!("{head}.{c}{}", &sig[1..])
    };
    let mut keys = Keys::new();
    for row in &rows {
        if let Some(s) = row.need.lacking() {
            key_with(&srv, &mut keys, s).await;
        }
        for s in row.need.granted().into_iter().flatten() {
            key_with(&srv, &mut keys, s).await;
        }
    }

    let before = snapshot(&srv, &f).await;
    assert_eq!(before["tenant"]["body"]["suspended"], false);
    assert_eq!(before["revocations"]["body"]["items"], json!([]));
    assert_eq!(before["verify the token"]["active"], true);

    let requests = Cell::new(0);
    for row in &rows {
        let label = row.label();
        let oauth = row.oauth_forbidden();
        let refused = async |tenant: &str, cred: Cred<'_>, status: u16, case: &str| {
            let r = send(&srv, row, tenant, &row.body, cred).await;
            assert_refused(&r, status, oauth, &format!("{label} at {tenant}, {case}"));
            requests.set(requests.get() + 1);
        };
        if row.self_logout {
            // Without credentials only the presented token itself may be revoked, and only if
            // it is a valid token of this tenant: these are not.
            for foreign in [&mallory_token, &forged] {
                let body = Body::Form(vec![("token", foreign.clone())]);
                let r = send(&srv, row, VICTIM, &body, Cred::None).await;
                assert_eq!(r.status, StatusCode::OK, "{label} self-logout: {}", r.text);
                assert!(r.text.is_empty(), "{label} self-logout: {}", r.text);
                requests.set(requests.get() + 1);
            }
        } else {
            refused(VICTIM, Cred::None, 401, "no credentials").await;
        }
        refused(VICTIM, Cred::Bearer(UNKNOWN_KEY), 401, "unknown key").await;
        refused(VICTIM, Cred::Bearer(&mallory), 403, "another tenant's key").await;
        if row.has_tenant() {
            refused(GHOST, Cred::Bearer(&mallory), 403, "a missing tenant").await;
        }
        let lacking = row.need.lacking().map(|s| key_of(&keys, s).clone());
        if let Some((_, secret)) = &lacking {
            refused(VICTIM, Cred::Bearer(secret), 403, "a key without the scope").await;
        }
        if oauth.is_some() {
            let (id, _) = key_of(&keys, TENANT_SCOPES.to_vec());
            refused(
                VICTIM,
                Cred::Basic(id, UNKNOWN_KEY),
                401,
                "Basic, wrong secret",
            )
            .await;
            refused(
                VICTIM,
                Cred::Basic(&mallory_id, &mallory),
                403,
                "Basic, foreign",
            )
            .await;
            if let Some((id, secret)) = &lacking {
                refused(VICTIM, Cred::Basic(id, secret), 403, "Basic, no scope").await;
            }
        }
    }

    let after = snapshot(&srv, &f).await;
    for (what, was) in &before {
        assert_eq!(&after[what], was, "the matrix changed {what}");
    }
    // Spelled out, what the comparison implies.
    assert_eq!(after["tenant"]["body"]["suspended"], false);
    assert_eq!(after["tenant made by the matrix"]["status"], 404);
    assert_eq!(after["revocations"]["body"]["items"], json!([]));
    assert_eq!(
        after["sessions of the matrix actor"]["body"]["items"],
        json!([])
    );
    assert_eq!(after["verify the token"]["active"], true);
    assert_eq!(after["introspect the token"]["active"], true);

    // Replayed with keys that may make each request, every row succeeds: its request is valid
    // and its scope is the one the contract names. The refresh token is rotated (so the matrix
    // had not rotated it) and the pre-login state is handed out (so it had not been spent).
    let mut allowed = 0;
    for row in &rows {
        let creds: Vec<String> = match row.need.granted() {
            None => vec![ADMIN.to_owned()],
            Some(sets) => sets
                .into_iter()
                .map(|s| key_of(&keys, s).1.clone())
                .collect(),
        };
        for secret in &creds {
            let r = send(&srv, row, VICTIM, &row.body, Cred::Bearer(secret)).await;
            assert_eq!(
                r.status.as_u16(),
                row.ok,
                "{} with its scope: {}",
                row.label(),
                r.text
            );
            allowed += 1;
        }
    }
    eprintln!(
        "isolation matrix: {} routes, {} refused requests, {allowed} allowed ones",
        rows.len(),
        requests.get()
    );
}

/// A tenant's key on its own tenant's routes, fed the victim's tokens, cookies and ids: each
/// request is answered as about something the tenant does not hold, and the victim's state is
/// untouched (its refresh token, session and pre-login state are still usable afterwards).
#[tokio::test]
async fn a_tenant_cannot_reach_another_tenants_state_through_its_own_routes() {
    let (srv, f, (_, mallory)) = victim_and_mallory().await;
    let before = snapshot(&srv, &f).await;

    // Here `ok` is the answer mallory gets on its own tenant, and `need` plays no part.
    let any = Need::Member;
    let sid = &f.session_id;
    let rows = [
        Row::new("POST", "/v1/tenants/{tenant}/revocations", any, 400)
            .json(json!({"token": f.token})),
        Row::new("POST", "/v1/tenants/{tenant}/revocations/batch", any, 400)
            .json(json!({"revocations": [{"token": f.token}]})),
        // The same jti is a record of the caller's tenant only.
        Row::new("POST", "/v1/tenants/{tenant}/revocations", any, 201).json(json!({"jti": f.jti})),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/subjects/{sub}/revoke-all",
            any,
            200,
        )
        .at("sub", "alice"),
        Row::new("POST", "/v1/tenants/{tenant}/tokens/verify", any, 200)
            .json(json!({"token": f.token})),
        Row::new("POST", "/t/{tenant}/oauth2/introspect", any, 200).form(&f.token),
        Row::new("POST", "/t/{tenant}/oauth2/revoke", any, 200).form(&f.token),
        Row::new("POST", "/t/{tenant}/oauth2/revoke", any, 200).form(&f.refresh),
        Row::new("POST", "/v1/tenants/{tenant}/tokens/refresh", any, 401)
            .json(json!({"refresh_token": f.refresh})),
        Row::new("POST", "/t/{tenant}/oauth2/token", any, 400).form_pairs(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &f.refresh),
        ]),
        Row::new("POST", "/v1/tenants/{tenant}/tokens", any, 400)
            .json(json!({"sub": "alice", "sid": sid})),
        Row::new("POST", "/v1/tenants/{tenant}/sessions/validate", any, 401)
            .json(json!({"cookie": f.cookie, "csrf_token": f.csrf})),
        Row::new("GET", "/v1/tenants/{tenant}/sessions/{id}", any, 404).at("id", sid),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/sessions/{id}/revoke",
            any,
            404,
        )
        .at("id", sid),
        Row::new(
            "POST",
            "/v1/tenants/{tenant}/actors/{actor_type}/{actor_id}/sessions/revoke-all",
            any,
            200,
        )
        .at("actor_type", "user")
        .at("actor_id", "alice"),
        Row::new("POST", "/v1/tenants/{tenant}/prelogin/consume", any, 410)
            .json(json!({"cookie": f.prelogin, "state": PRELOGIN_STATE})),
        Row::new("POST", "/v1/tenants/{tenant}/prelogin/consume", any, 410)
            .json(json!({"cookie": f.prelogin, "state": "a wrong state"})),
        Row::new("POST", "/v1/tenants/{tenant}/keys/{kid}/revoke", any, 404)
            .at("kid", &f.spare_kid),
        Row::new("DELETE", "/v1/tenants/{tenant}/api-keys/{id}", any, 404)
            .at("id", &f.spare_api_key),
    ];
    for row in &rows {
        let r = send(&srv, row, MALLORY, &row.body, Cred::Bearer(&mallory)).await;
        assert_eq!(r.status.as_u16(), row.ok, "{}: {}", row.label(), r.text);
        if r.json.get("active").is_some() {
            assert_eq!(r.json["active"], false, "{}: {}", row.label(), r.text);
        }
        if row.template.ends_with("/oauth2/revoke") {
            // Self-logout at the wrong tenant: 200, and nothing revoked.
            let r = send(&srv, row, MALLORY, &row.body, Cred::None).await;
            assert_eq!(r.status, StatusCode::OK, "{}: {}", row.label(), r.text);
        }
    }

    let after = snapshot(&srv, &f).await;
    for (what, was) in &before {
        assert_eq!(
            &after[what], was,
            "{MALLORY}'s requests changed {VICTIM}'s {what}"
        );
    }
    let t = format!("/v1/tenants/{VICTIM}");
    srv.post(
        &format!("{t}/tokens/refresh"),
        json!({"refresh_token": f.refresh}),
    )
    .await
    .expect(StatusCode::OK);
    let r = srv
        .post(
            &format!("{t}/sessions/validate"),
            json!({"cookie": f.cookie, "csrf_token": f.csrf}),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(r["session"]["revoked_at"], json!(null));
    srv.post(
        &format!("{t}/prelogin/consume"),
        json!({"cookie": f.prelogin, "state": PRELOGIN_STATE}),
    )
    .await
    .expect(StatusCode::OK);
}

/// Whether an OpenAPI operation takes credentials.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Security {
    Public,
    /// Credentials or none (RFC 7009 self-logout).
    Optional,
    Required,
}

/// `(METHOD, path) → Security` of every operation `/openapi.json` describes.
fn documented(doc: &Value) -> BTreeMap<(String, String), Security> {
    let global = &doc["security"];
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let reqs = op.get("security").unwrap_or(global);
            let reqs = reqs.as_array().map(Vec::as_slice).unwrap_or_default();
            let empty = |r: &Value| r.as_object().is_some_and(|o| o.is_empty());
            let security = match (reqs.iter().any(empty), reqs.iter().all(empty)) {
                (_, true) => Security::Public,
                (true, false) => Security::Optional,
                (false, false) => Security::Required,
            };
            out.insert((method.to_uppercase(), path.clone()), security);
        }
    }
    out
}

/// `(METHOD, path)` of every `.route(…)` of the router's source.
fn routed() -> BTreeSet<(String, String)> {
    let src = include_str!("../../veto-server/src/routes/mod.rs");
    let src = &src[src.find("Router::new()").expect("the router")..];
    let src = &src[..src.find(".fallback(").expect("the fallback")];
    let mut out = BTreeSet::new();
    for route in src.split(".route(").skip(1) {
        let path = route.split('"').nth(1).expect("a path literal");
        for method in ["get", "post", "put", "patch", "delete"] {
            let call = format!("{method}(");
            let mut rest = route;
            while let Some(i) = rest.find(&call) {
                let before = rest[..i].chars().last();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    out.insert((method.to_uppercase(), path.to_owned()));
                }
                rest = &rest[i + call.len()..];
            }
        }
    }
    out
}

#[tokio::test]
async fn the_matrix_has_a_row_for_every_route_that_takes_credentials() {
    let srv = Server::start().await;
    let doc = srv.get_public("/openapi.json").await.expect(StatusCode::OK);
    let ops = documented(&doc);

    // The router serves exactly what the document describes (the document itself is mounted
    // next to the router, by `veto_server::app`).
    let served = routed();
    let described: BTreeSet<_> = ops.keys().cloned().collect();
    assert_eq!(served, described, "router and /openapi.json disagree");

    let dummy = Fixture {
        token: "t".into(),
        jti: "j".into(),
        refresh: "r".into(),
        spare_kid: "k".into(),
        spare_api_key: "a".into(),
        session_id: "s".into(),
        cookie: "c".into(),
        csrf: "x".into(),
        prelogin: "p".into(),
    };
    let rows: BTreeMap<_, _> = table(&dummy)
        .into_iter()
        .map(|r| {
            let security = if r.self_logout {
                Security::Optional
            } else {
                Security::Required
            };
            ((r.method.to_owned(), r.template.to_owned()), security)
        })
        .collect();
    let guarded: BTreeMap<_, _> = ops
        .iter()
        .filter(|(_, s)| **s != Security::Public)
        .map(|(k, s)| (k.clone(), *s))
        .collect();
    assert_eq!(
        rows, guarded,
        "the isolation matrix and the routes that take credentials differ"
    );

    // The public routes need no credentials indeed.
    srv.create_tenant(VICTIM).await;
    for ((method, path), _) in ops.iter().filter(|(_, s)| **s == Security::Public) {
        assert_eq!(method, "GET", "a public {method} {path}");
        let r = srv.get_public(&path.replace("{tenant}", VICTIM)).await;
        assert!(
            ![401, 403].contains(&r.status.as_u16()),
            "public {path}: {} {}",
            r.status,
            r.text
        );
    }
}
