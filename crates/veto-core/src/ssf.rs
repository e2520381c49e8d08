//! Shared Signals: the Security Event Tokens veto pushes to receivers when it revokes something.
//!
//! What is here is pure: which event a revocation becomes, which subject it names, the SET's
//! claims, and their signature. Streams, the outbox and delivery (push, RFC 8935; poll,
//! RFC 8936) live in the server and use this module; nothing here knows about them.
//!
//! The specifications, and the names their rules are cited by below:
//! - RFC 8417, Security Event Token (SET);
//! - RFC 9493, Subject Identifiers for Security Event Tokens;
//! - OpenID Shared Signals Framework Specification 1.0 (final, 29 August 2025), "SSF";
//! - OpenID Continuous Access Evaluation Profile 1.0 (final, 29 August 2025), "CAEP".
//!
//! SSF and CAEP sections are cited by their titles (their numbers moved between drafts).
//!
//! # One cause, one event, one SET per stream
//!
//! A [`Cause`] is what happened in veto (a session revoked, a tenant cut off, ...). It decides
//! the event type, the subject and CAEP's `initiating_entity`, so those decisions are made once,
//! here, and not by each route. An [`Event`] adds when it happened and why. [`issue_set`] turns
//! an event into one signed SET for one stream: every stream gets its own SET (its own `aud`
//! and `jti`), and every SET of one cause carries the same `txn` (SSF "The "txn" claim").
//!
//! | cause | event type | `sub_id` | `initiating_entity` |
//! |---|---|---|---|
//! | one session revoked | CAEP `session-revoked` | complex: `user` (`iss_sub`) + `session` (`opaque`) | `admin` |
//! | actor revoke-all, subject revoke-all | CAEP `session-revoked` | complex: `user` | `admin` |
//! | device revoke-all | CAEP `session-revoked` | complex: `user` + `device` (`opaque`) | `admin` |
//! | tenant revoke-all | CAEP `session-revoked` | complex: `tenant` (`opaque`) | `admin` |
//! | refresh family revoked | CAEP `credential-change` (`refresh_token`, `revoke`) | `iss_sub` | `policy` on reuse, else `admin` / `user` |
//! | one token revoked or suspended | [`VETO_TOKEN_REVOKED`] | `iss_sub`, or `jwt_id` without a subject | `admin` / `user` |
//! | signing key revoked | [`VETO_SIGNING_KEY_REVOKED`] | complex: `tenant` | `admin` |
//!
//! Events that concern a whole tenant name it as a complex subject with only `tenant`. Under
//! SSF's "Subject Matching" a member that one side leaves out matches anything, so such a
//! subject matches every complex subject a receiver may have added to its stream; the delivery
//! layer should also send it to streams that added simple subjects (SSF defines no matching
//! between a simple and a complex subject, and a tenant-wide cutoff concerns every one of them).
use serde_json::{Map, Value, json};

use crate::Alg;
use crate::keys::LoadedKey;
use crate::seal::KeyError;
use crate::token::{Audience, new_jti, sign_jws};

/// The JOSE `typ` of every SET (RFC 8417 §2.3 "Explicit Typing of SETs"; SSF "Explicit Typing
/// of SETs" makes it a MUST).
pub const SET_TYP: &str = "secevent+jwt";

/// CAEP "Session Revoked".
pub const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// CAEP "Credential Change".
pub const CAEP_CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";

/// Where veto's own event types live. CAEP has no event for one access token or for a signing
/// key, so veto defines two; an event type is a URI (RFC 8417 §2.2, "events"), and a URI under
/// a name veto controls cannot collide with anyone else's. Changing these after a release breaks
/// every receiver that matches on them: they are part of the contract, documented in
/// docs/conformance.md.
pub const VETO_EVENT_NAMESPACE: &str = "https://veto.dev/secevent/";

/// One token revoked (by jti) or suspended until a given time. Members: `jti`, `until` for a
/// suspension, and CAEP's optional event claims.
pub const VETO_TOKEN_REVOKED: &str = "https://veto.dev/secevent/token-revoked";

/// A signing key revoked: every token it signed is rejected, and it has left the JWKS. Members:
/// `kid`, and CAEP's optional event claims.
pub const VETO_SIGNING_KEY_REVOKED: &str = "https://veto.dev/secevent/signing-key-revoked";

/// CAEP "Credential Change" requires `credential_type`, one of its list "or any other credential
/// type supported mutually by the Transmitter and the Receiver". A refresh token is none of the
/// listed ones (they are authenticators: passwords, PINs, certificates, FIDO keys, phones; `app`
/// is an authenticator app), and calling it one of them would mislead a receiver that acts on
/// the type. So veto sends a type of its own, spelt as the OAuth Token Type Hints registry spells
/// a refresh token (RFC 7009 §4.1.2), the name receivers that are OAuth clients already know.
pub const CREDENTIAL_TYPE_REFRESH_TOKEN: &str = "refresh_token";

/// CAEP "Credential Change" `change_type` for a family that can no longer be used.
pub const CHANGE_TYPE_REVOKE: &str = "revoke";

/// The language tag of `reason_admin` and `reason_user`, which CAEP ("Optional Event Claims")
/// keys by BCP 47 tag. veto does not know the language of a reason an operator typed; the
/// contract's reason vocabulary (`logout`, `compromised`, ...) is English, so it is `en`.
pub const REASON_LANGUAGE: &str = "en";

/// The event types veto emits. Closed: a receiver can be told the whole list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    SessionRevoked,
    CredentialChange,
    TokenRevoked,
    SigningKeyRevoked,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::SessionRevoked,
        EventType::CredentialChange,
        EventType::TokenRevoked,
        EventType::SigningKeyRevoked,
    ];

    /// The event type URI: the key of the event in the SET's `events` claim.
    pub fn uri(self) -> &'static str {
        match self {
            EventType::SessionRevoked => CAEP_SESSION_REVOKED,
            EventType::CredentialChange => CAEP_CREDENTIAL_CHANGE,
            EventType::TokenRevoked => VETO_TOKEN_REVOKED,
            EventType::SigningKeyRevoked => VETO_SIGNING_KEY_REVOKED,
        }
    }
}

/// CAEP's `initiating_entity` ("Optional Event Claims"): exactly these four strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InitiatingEntity {
    Admin,
    User,
    Policy,
    /// No cause of veto's is a system assertion today; the value is CAEP's, kept so the enum is
    /// CAEP's whole list.
    System,
}

impl InitiatingEntity {
    pub fn as_str(self) -> &'static str {
        match self {
            InitiatingEntity::Admin => "admin",
            InitiatingEntity::User => "user",
            InitiatingEntity::Policy => "policy",
            InitiatingEntity::System => "system",
        }
    }
}

/// Who asked veto to revoke, where more than one kind of caller can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestedBy {
    /// A caller holding an API key (the management API, RFC 7009 with client credentials, the
    /// admin console, which signs in with one). CAEP `admin`: an API key is an administrative
    /// credential. veto cannot tell an operator's action from an application revoking because its
    /// user pressed "log out", and claiming the user acted when an operator did would mislead.
    ApiKey,
    /// The token's own holder presenting it to RFC 7009 revocation without client credentials
    /// (self-logout). CAEP `user`: the end user's side ended its own access.
    SelfLogout,
}

impl RequestedBy {
    fn initiating_entity(self) -> InitiatingEntity {
        match self {
            RequestedBy::ApiKey => InitiatingEntity::Admin,
            RequestedBy::SelfLogout => InitiatingEntity::User,
        }
    }
}

/// Why a refresh family was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyRevocation {
    /// An already rotated token came back (`refresh::RotateDecision::Reuse`). CAEP `policy`:
    /// nobody asked; veto's reuse rule (RFC 9700 §4.14.2) decided.
    ReuseDetected,
    /// Revoked on request (RFC 7009, or the management API).
    Requested(RequestedBy),
}

/// What happened in veto that receivers must hear about. Each variant is one cause; the server
/// maps its revocations onto them one to one, and everything else (event type, subject,
/// `initiating_entity`) follows from the variant.
///
/// `sub` is the subject as veto's tokens carry it in their `sub` claim. For a session (and an
/// actor revoke-all) it is the session's `actor_id`: veto does not tie the `sub` of a token
/// issued with `sid` to its session's actor, so the actor is the only user a session names.
/// The actor type is not sent: `iss_sub` has no place for it, and an `actor_id` that means
/// different principals under two actor types would be ambiguous to a receiver anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause<'a> {
    /// One session revoked.
    Session { sub: &'a str, session_id: &'a str },
    /// Every session of an actor revoked (`.../actors/{type}/{id}/sessions/revoke-all`).
    ActorRevokeAll { sub: &'a str },
    /// Every token of a subject issued up to now rejected, and its sessions ended
    /// (`.../subjects/{sub}/revoke-all`, logout everywhere).
    SubjectRevokeAll { sub: &'a str },
    /// Every token of a subject carrying one `device_id`, and that device's sessions
    /// (`.../subjects/{sub}/devices/{device_id}/revoke-all`).
    DeviceRevokeAll { sub: &'a str, device_id: &'a str },
    /// Every token of the tenant issued up to now rejected (`/v1/tenants/{tenant}/revoke-all`).
    TenantRevokeAll,
    /// A refresh family revoked: no token of it can be used any more.
    RefreshFamily { sub: &'a str, how: FamilyRevocation },
    /// One token revoked by its jti, or suspended until `until` (NumericDate) when that is set.
    /// `sub` is absent when the revocation named a bare jti without one.
    Token {
        jti: &'a str,
        sub: Option<&'a str>,
        until: Option<i64>,
        by: RequestedBy,
    },
    /// A signing key revoked.
    SigningKey { kid: &'a str },
}

impl Cause<'_> {
    pub fn event_type(&self) -> EventType {
        match self {
            Cause::Session { .. }
            | Cause::ActorRevokeAll { .. }
            | Cause::SubjectRevokeAll { .. }
            | Cause::DeviceRevokeAll { .. }
            | Cause::TenantRevokeAll => EventType::SessionRevoked,
            Cause::RefreshFamily { .. } => EventType::CredentialChange,
            Cause::Token { .. } => EventType::TokenRevoked,
            Cause::SigningKey { .. } => EventType::SigningKeyRevoked,
        }
    }

    pub fn initiating_entity(&self) -> InitiatingEntity {
        match self {
            // Only callers with an API key can revoke sessions, cut off a subject, a device or
            // the tenant, or revoke a key: operator actions.
            Cause::Session { .. }
            | Cause::ActorRevokeAll { .. }
            | Cause::SubjectRevokeAll { .. }
            | Cause::DeviceRevokeAll { .. }
            | Cause::TenantRevokeAll
            | Cause::SigningKey { .. } => InitiatingEntity::Admin,
            Cause::RefreshFamily {
                how: FamilyRevocation::ReuseDetected,
                ..
            } => InitiatingEntity::Policy,
            Cause::RefreshFamily {
                how: FamilyRevocation::Requested(by),
                ..
            }
            | Cause::Token { by, .. } => by.initiating_entity(),
        }
    }

    /// The event's primary subject, the SET's `sub_id` (SSF "Subject Members": a top-level
    /// `sub_id` MUST describe it). `issuer` is the tenant's `iss`, `tenant` its id.
    pub fn subject(&self, issuer: &str, tenant: &str) -> Subject {
        let user = |sub: &str| SubjectId::iss_sub(issuer, sub);
        let tenant_only = || {
            Subject::Complex(ComplexSubject {
                tenant: Some(SubjectId::opaque(tenant)),
                ..ComplexSubject::default()
            })
        };
        match *self {
            // CAEP "Session Revoked": a complex subject "applies to any session derived from
            // matching those combined claims". With `user` and `session` it is that one session;
            // the session id is the `sid` claim of the tokens issued for it, which is how a
            // receiver finds what to end. `opaque` (RFC 9493 §3.2.4): the id means nothing
            // beyond identifying the session.
            Cause::Session { sub, session_id } => Subject::Complex(ComplexSubject {
                user: Some(user(sub)),
                session: Some(SubjectId::opaque(session_id)),
                ..ComplexSubject::default()
            }),
            // With `user` alone, every session of that user. Complex rather than a simple
            // `iss_sub`: CAEP states what a complex subject of a session-revoked event covers,
            // and a simple subject there is read as identifying one session.
            Cause::ActorRevokeAll { sub } | Cause::SubjectRevokeAll { sub } => {
                Subject::Complex(ComplexSubject {
                    user: Some(user(sub)),
                    ..ComplexSubject::default()
                })
            }
            // Every session of that user on that device: CAEP's user + device example.
            Cause::DeviceRevokeAll { sub, device_id } => Subject::Complex(ComplexSubject {
                user: Some(user(sub)),
                device: Some(SubjectId::opaque(device_id)),
                ..ComplexSubject::default()
            }),
            // No single user: the tenant, as SSF's complex subject names one ("tenant"), with
            // the tenant's id as CAEP's examples spell it (`opaque`).
            Cause::TenantRevokeAll | Cause::SigningKey { .. } => tenant_only(),
            // The user whose credential changed, as in CAEP's credential-change example: a
            // simple `iss_sub` (RFC 9493 §3.2.3), whose `iss` is the tenant's issuer, so the
            // pair is exactly the `iss` and `sub` of the user's tokens.
            Cause::RefreshFamily { sub, .. } => Subject::Simple(user(sub)),
            Cause::Token { sub: Some(sub), .. } => Subject::Simple(user(sub)),
            // A revocation by bare jti may not know whose token it was; then the subject is the
            // token itself, in SSF's "JWT ID Subject Identifier Format".
            Cause::Token { sub: None, jti, .. } => Subject::Simple(SubjectId::JwtId {
                iss: issuer.to_owned(),
                jti: jti.to_owned(),
            }),
        }
    }

    /// The members this event type defines (CAEP's event-specific claims, or veto's).
    fn specific_members(&self, members: &mut Map<String, Value>) {
        match *self {
            Cause::RefreshFamily { .. } => {
                members.insert(
                    "credential_type".into(),
                    CREDENTIAL_TYPE_REFRESH_TOKEN.into(),
                );
                members.insert("change_type".into(), CHANGE_TYPE_REVOKE.into());
            }
            Cause::Token { jti, until, .. } => {
                members.insert("jti".into(), jti.into());
                if let Some(until) = until {
                    members.insert("until".into(), until.into());
                }
            }
            Cause::SigningKey { kid } => {
                members.insert("kid".into(), kid.into());
            }
            // CAEP "Session Revoked": "There are no event-specific claims for this event type."
            Cause::Session { .. }
            | Cause::ActorRevokeAll { .. }
            | Cause::SubjectRevokeAll { .. }
            | Cause::DeviceRevokeAll { .. }
            | Cause::TenantRevokeAll => {}
        }
    }
}

/// A cause with when and why: one event, which becomes one SET per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub cause: Cause<'a>,
    /// When the revocation took effect (NumericDate): CAEP's `event_timestamp`, which for these
    /// events "MUST represent the time at which" the revocation (or change) occurred.
    pub at: i64,
    /// The revocation's reason, sent as `reason_admin` ("intended for logging and auditing").
    /// None or empty: no `reason_admin` (an empty message says nothing a receiver could log).
    pub reason: Option<&'a str>,
    /// A message for the end user, sent as `reason_user`. veto's API has no such field today.
    pub reason_user: Option<&'a str>,
}

impl Event<'_> {
    /// The event object: the value under the event type URI in `events`.
    pub fn members(&self) -> Value {
        let mut m = Map::new();
        self.cause.specific_members(&mut m);
        // CAEP "Optional Event Claims", which veto's own event types use too, so that a
        // receiver reads time, initiator and reason the same way from every event veto sends.
        m.insert("event_timestamp".into(), self.at.into());
        m.insert(
            "initiating_entity".into(),
            self.cause.initiating_entity().as_str().into(),
        );
        for (name, text) in [
            ("reason_admin", self.reason),
            ("reason_user", self.reason_user),
        ] {
            if let Some(text) = text.filter(|t| !t.is_empty()) {
                m.insert(name.into(), json!({ REASON_LANGUAGE: text }));
            }
        }
        Value::Object(m)
    }
}

/// A Subject Identifier (RFC 9493 §3), in the formats veto uses: two of RFC 9493's and one
/// of SSF's ("Additional Subject Identifier Formats").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectId {
    /// RFC 9493 §3.2.3, "iss_sub": both members REQUIRED, not null or empty.
    IssSub { iss: String, sub: String },
    /// RFC 9493 §3.2.4, "opaque": `id` REQUIRED, not null or empty.
    Opaque { id: String },
    /// SSF "JWT ID Subject Identifier Format", "jwt_id": `iss` and `jti` REQUIRED.
    JwtId { iss: String, jti: String },
}

impl SubjectId {
    pub fn iss_sub(iss: &str, sub: &str) -> SubjectId {
        SubjectId::IssSub {
            iss: iss.to_owned(),
            sub: sub.to_owned(),
        }
    }

    pub fn opaque(id: &str) -> SubjectId {
        SubjectId::Opaque { id: id.to_owned() }
    }

    /// The JSON object, or the member that is empty where its format forbids that.
    pub fn to_json(&self) -> Result<Value, SetError> {
        let present = |name: &'static str, v: &str| {
            if v.is_empty() {
                Err(SetError::Empty(name))
            } else {
                Ok(())
            }
        };
        Ok(match self {
            SubjectId::IssSub { iss, sub } => {
                present("sub_id iss", iss)?;
                present("sub_id sub", sub)?;
                json!({"format": "iss_sub", "iss": iss, "sub": sub})
            }
            SubjectId::Opaque { id } => {
                present("sub_id id", id)?;
                json!({"format": "opaque", "id": id})
            }
            SubjectId::JwtId { iss, jti } => {
                present("sub_id iss", iss)?;
                present("sub_id jti", jti)?;
                json!({"format": "jwt_id", "iss": iss, "jti": jti})
            }
        })
    }
}

/// SSF "Complex Subject Members": several identifiers of one subject principal, each member at
/// most once, at least one present. Only the members veto uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ComplexSubject {
    pub user: Option<SubjectId>,
    pub device: Option<SubjectId>,
    pub session: Option<SubjectId>,
    pub tenant: Option<SubjectId>,
}

/// The value of `sub_id`: SSF "Subject Member Values", a simple or a complex subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Simple(SubjectId),
    Complex(ComplexSubject),
}

impl Subject {
    pub fn to_json(&self) -> Result<Value, SetError> {
        match self {
            Subject::Simple(id) => id.to_json(),
            Subject::Complex(c) => {
                let mut m = Map::new();
                m.insert("format".into(), "complex".into());
                for (name, id) in [
                    ("user", &c.user),
                    ("device", &c.device),
                    ("session", &c.session),
                    ("tenant", &c.tenant),
                ] {
                    if let Some(id) = id {
                        m.insert(name.into(), id.to_json()?);
                    }
                }
                // "a JSON object that has a format field, and one or more Simple Subject Members"
                if m.len() == 1 {
                    return Err(SetError::Empty("sub_id (a complex subject with no member)"));
                }
                Ok(Value::Object(m))
            }
        }
    }
}

/// The SET's envelope: who sends it, to whom, when, and for which cause.
#[derive(Debug, Clone, Copy)]
pub struct SetInput<'a> {
    /// The tenant's issuer (`<public url>/t/<tenant>`): SSF "The "iss" Claim" requires the
    /// stream's `iss`, which is the tenant's.
    pub issuer: &'a str,
    /// The tenant's id, for subjects that name the tenant.
    pub tenant: &'a str,
    /// The stream's `aud`, one string or several (SSF "The "aud" Claim").
    pub audience: &'a Audience,
    /// When the SET is made (NumericDate); the event's own time is [`Event::at`].
    pub iat: i64,
    /// The same for every SET of one cause, different for every cause (SSF "The "txn"
    /// claim"); the caller makes one per cause (its audit event id, or a fresh UUID).
    pub txn: &'a str,
}

/// A signed SET and its `jti`, which the outbox keys it by (and a receiver's ack names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSet {
    pub token: String,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// Receivers verify SETs against the tenant's JWKS (SSF "Signature Key Resolution"), where
    /// an HMAC key never appears: a SET signed with one could not be verified by anyone.
    #[error(
        "{0} is an HMAC algorithm: SETs are signed with an asymmetric key of the tenant's JWKS"
    )]
    SymmetricKey(Alg),
    /// A retired or revoked key, or one holding only public material: it signs nothing.
    #[error("key {0} cannot sign: only an active key with private material signs SETs")]
    KeyCannotSign(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// SSF "Distinguishing SETs from other Kinds of JWTs": no `sub`, no `exp`.
    #[error("a SET must not carry the {0:?} claim")]
    Forbidden(&'static str),
    /// SSF "The "events" claim": one event per SET (veto has no alternative URIs for one type).
    #[error("a SET carries exactly one event, this one has {0}")]
    EventCount(usize),
    #[error("SET claims malformed: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The claims of the SET telling one stream about `event`, with `jti` as its id.
pub fn set_claims(input: &SetInput<'_>, event: &Event<'_>, jti: &str) -> Result<Value, SetError> {
    let mut claims = Map::new();
    // RFC 8417 §2.2: `iss`, `iat`, `jti` REQUIRED (with their RFC 7519 meanings); `aud`, `txn`
    // OPTIONAL there, and set here because SSF asks for them ("The "aud" Claim", "The "txn"
    // claim"); `events` REQUIRED. No `sub`, no `exp`, no `toe` (CAEP's `event_timestamp`, in
    // the event, says when).
    claims.insert("iss".into(), input.issuer.into());
    claims.insert("iat".into(), input.iat.into());
    claims.insert("jti".into(), jti.into());
    claims.insert("aud".into(), input.audience.to_json());
    claims.insert("txn".into(), input.txn.into());
    claims.insert(
        "sub_id".into(),
        event.cause.subject(input.issuer, input.tenant).to_json()?,
    );
    let mut events = Map::new();
    events.insert(event.cause.event_type().uri().into(), event.members());
    claims.insert("events".into(), Value::Object(events));
    let claims = Value::Object(claims);
    check_set_claims(&claims)?;
    Ok(claims)
}

/// Whether `claims` keep SSF's profile of RFC 8417 ("Security Event Token Profile"). Checked
/// before anything is signed, whoever built the claims.
pub fn check_set_claims(claims: &Value) -> Result<(), SetError> {
    let claims = claims
        .as_object()
        .ok_or(SetError::Malformed("not a JSON object"))?;
    // SSF "SSF Event Subject" and "The "exp" Claim".
    for forbidden in ["sub", "exp"] {
        if claims.contains_key(forbidden) {
            return Err(SetError::Forbidden(forbidden));
        }
    }
    let nonempty_str = |name: &'static str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        Some(Value::String(_)) => Err(SetError::Empty(name)),
        _ => Err(SetError::Malformed(name)),
    };
    nonempty_str("iss")?;
    nonempty_str("jti")?;
    nonempty_str("txn")?;
    if !claims.get("iat").is_some_and(Value::is_i64) {
        return Err(SetError::Malformed("iat (a NumericDate in whole seconds)"));
    }
    match claims.get("aud") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Array(a))
            if !a.is_empty() && a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) => {}
        Some(Value::String(_) | Value::Array(_)) => return Err(SetError::Empty("aud")),
        _ => return Err(SetError::Malformed("aud")),
    }
    // RFC 9493 §3: a Subject Identifier is a JSON object with a `format` member.
    if !claims
        .get("sub_id")
        .and_then(|s| s.get("format"))
        .is_some_and(Value::is_string)
    {
        return Err(SetError::Malformed("sub_id (an object with a format)"));
    }
    let events = claims
        .get("events")
        .and_then(Value::as_object)
        .ok_or(SetError::Malformed("events (an object)"))?;
    if events.len() != 1 {
        return Err(SetError::EventCount(events.len()));
    }
    // RFC 8417 §2.2: each event's value is a JSON object (possibly empty).
    if !events.values().all(Value::is_object) {
        return Err(SetError::Malformed("events (each event is an object)"));
    }
    Ok(())
}

/// Signs checked claims as a SET: JOSE header `typ: secevent+jwt`, the key's `alg` and `kid`,
/// through veto's one JWS writer. Only an active asymmetric key of the tenant signs: receivers
/// verify against its JWKS.
pub fn sign_set(key: &LoadedKey, claims: &Value) -> Result<String, SetError> {
    if key.alg.is_hmac() {
        return Err(SetError::SymmetricKey(key.alg));
    }
    if !key.signs() {
        return Err(SetError::KeyCannotSign(key.kid.clone()));
    }
    check_set_claims(claims)?;
    Ok(sign_jws(key, SET_TYP, claims)?)
}

/// The SET telling one stream about `event`, with a fresh `jti` (a UUID v4, as veto's tokens
/// have: unique without coordination between nodes).
pub fn issue_set(
    key: &LoadedKey,
    input: &SetInput<'_>,
    event: &Event<'_>,
) -> Result<IssuedSet, SetError> {
    issue_set_as(key, input, event, &new_jti())
}

/// [`issue_set`] with the caller's `jti`: for an outbox that allocates the id before signing,
/// or re-signs a SET under the id it already delivered.
pub fn issue_set_as(
    key: &LoadedKey,
    input: &SetInput<'_>,
    event: &Event<'_>,
    jti: &str,
) -> Result<IssuedSet, SetError> {
    let claims = set_claims(input, event, jti)?;
    Ok(IssuedSet {
        token: sign_set(key, &claims)?,
        jti: jti.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;
    use crate::keys::{KeyStatus, MasterKey, generate_signing_key};

    const ISS: &str = "https://veto.example/t/acme";
    const AT: i64 = 1_615_304_991;
    const IAT: i64 = 1_615_305_159;

    fn key(alg: Alg) -> LoadedKey {
        let master = MasterKey::from_bytes([9; 32]);
        let rec =
            generate_signing_key("acme", alg, None, &master, time::OffsetDateTime::UNIX_EPOCH)
                .expect("key");
        LoadedKey::load(&rec, &master).expect("loads")
    }

    fn aud() -> Audience {
        Audience::One("https://receiver.example/caep".into())
    }

    fn input(audience: &Audience) -> SetInput<'_> {
        SetInput {
            issuer: ISS,
            tenant: "acme",
            audience,
            iat: IAT,
            txn: "txn-1",
        }
    }

    fn event<'a>(cause: Cause<'a>, reason: Option<&'a str>) -> Event<'a> {
        Event {
            cause,
            at: AT,
            reason,
            reason_user: None,
        }
    }

    fn claims(cause: Cause<'_>, reason: Option<&'static str>) -> Value {
        let audience = aud();
        set_claims(&input(&audience), &event(cause, reason), "set-1").expect("claims")
    }

    /// The envelope every SET shares, around `sub_id` and one event.
    fn expected(sub_id: Value, uri: &str, members: Value) -> Value {
        json!({
            "iss": ISS,
            "iat": IAT,
            "jti": "set-1",
            "aud": "https://receiver.example/caep",
            "txn": "txn-1",
            "sub_id": sub_id,
            "events": { uri: members },
        })
    }

    fn user(sub: &str) -> Value {
        json!({"format": "iss_sub", "iss": ISS, "sub": sub})
    }

    fn decode(token: &str) -> (Value, Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let part = |i: usize| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[i]).expect("b64")).expect("json")
        };
        (part(0), part(1))
    }

    // CAEP "Session Revoked", the example with a complex subject of user and session (its
    // tenant member aside: veto's `iss` already is the tenant's).
    #[test]
    fn one_session_revoked_is_caep_session_revoked_with_user_and_session() {
        let got = claims(
            Cause::Session {
                sub: "user-1",
                session_id: "ses-abc",
            },
            Some("Landspeed Policy Violation: C076E82F"),
        );
        assert_eq!(
            got,
            expected(
                json!({
                    "format": "complex",
                    "user": user("user-1"),
                    "session": {"format": "opaque", "id": "ses-abc"},
                }),
                "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
                json!({
                    "initiating_entity": "admin",
                    "reason_admin": {"en": "Landspeed Policy Violation: C076E82F"},
                    "event_timestamp": AT,
                }),
            )
        );
    }

    #[test]
    fn revoke_alls_of_a_user_are_session_revoked_for_the_user() {
        for cause in [
            Cause::ActorRevokeAll { sub: "user-1" },
            Cause::SubjectRevokeAll { sub: "user-1" },
        ] {
            assert_eq!(
                claims(cause, Some("logout")),
                expected(
                    json!({"format": "complex", "user": user("user-1")}),
                    CAEP_SESSION_REVOKED,
                    json!({
                        "initiating_entity": "admin",
                        "reason_admin": {"en": "logout"},
                        "event_timestamp": AT,
                    }),
                ),
                "{cause:?}"
            );
        }
    }

    // CAEP's "Complex Subject describing user + device" example.
    #[test]
    fn a_device_revoke_all_names_the_user_and_the_device() {
        assert_eq!(
            claims(
                Cause::DeviceRevokeAll {
                    sub: "user-1",
                    device_id: "laptop-7",
                },
                None,
            ),
            expected(
                json!({
                    "format": "complex",
                    "user": user("user-1"),
                    "device": {"format": "opaque", "id": "laptop-7"},
                }),
                CAEP_SESSION_REVOKED,
                json!({"initiating_entity": "admin", "event_timestamp": AT}),
            )
        );
    }

    // SSF "Complex Subject Members" has a `tenant` member; CAEP's examples spell the tenant
    // `opaque`.
    #[test]
    fn a_tenant_revoke_all_names_only_the_tenant() {
        assert_eq!(
            claims(Cause::TenantRevokeAll, Some("compromised")),
            expected(
                json!({"format": "complex", "tenant": {"format": "opaque", "id": "acme"}}),
                CAEP_SESSION_REVOKED,
                json!({
                    "initiating_entity": "admin",
                    "reason_admin": {"en": "compromised"},
                    "event_timestamp": AT,
                }),
            )
        );
    }

    // CAEP "Credential Change": `credential_type` and `change_type` REQUIRED; the example's
    // simple `iss_sub` subject.
    #[test]
    fn a_refresh_family_revoked_is_a_credential_change_of_a_refresh_token() {
        let got = claims(
            Cause::RefreshFamily {
                sub: "user-1",
                how: FamilyRevocation::ReuseDetected,
            },
            Some("refresh_token_reuse"),
        );
        assert_eq!(
            got,
            expected(
                user("user-1"),
                "https://schemas.openid.net/secevent/caep/event-type/credential-change",
                json!({
                    "credential_type": "refresh_token",
                    "change_type": "revoke",
                    "initiating_entity": "policy",
                    "reason_admin": {"en": "refresh_token_reuse"},
                    "event_timestamp": AT,
                }),
            )
        );
        let entity = |how| {
            Cause::RefreshFamily { sub: "u", how }
                .initiating_entity()
                .as_str()
        };
        assert_eq!(
            entity(FamilyRevocation::Requested(RequestedBy::ApiKey)),
            "admin"
        );
        assert_eq!(
            entity(FamilyRevocation::Requested(RequestedBy::SelfLogout)),
            "user"
        );
    }

    #[test]
    fn a_token_revoked_is_veto_s_event_with_its_jti() {
        let got = claims(
            Cause::Token {
                jti: "0f6c…",
                sub: Some("user-1"),
                until: None,
                by: RequestedBy::SelfLogout,
            },
            None,
        );
        assert_eq!(
            got,
            expected(
                user("user-1"),
                "https://veto.dev/secevent/token-revoked",
                json!({"jti": "0f6c…", "initiating_entity": "user", "event_timestamp": AT}),
            )
        );
        // A suspension says until when; a bare jti without a subject makes the token itself
        // the subject (SSF's `jwt_id`).
        let got = claims(
            Cause::Token {
                jti: "j-2",
                sub: None,
                until: Some(AT + 3600),
                by: RequestedBy::ApiKey,
            },
            Some("fraud review"),
        );
        assert_eq!(
            got,
            expected(
                json!({"format": "jwt_id", "iss": ISS, "jti": "j-2"}),
                VETO_TOKEN_REVOKED,
                json!({
                    "jti": "j-2",
                    "until": AT + 3600,
                    "initiating_entity": "admin",
                    "reason_admin": {"en": "fraud review"},
                    "event_timestamp": AT,
                }),
            )
        );
    }

    #[test]
    fn a_signing_key_revoked_is_veto_s_event_about_the_tenant() {
        assert_eq!(
            claims(Cause::SigningKey { kid: "k_0193" }, Some("compromised")),
            expected(
                json!({"format": "complex", "tenant": {"format": "opaque", "id": "acme"}}),
                "https://veto.dev/secevent/signing-key-revoked",
                json!({
                    "kid": "k_0193",
                    "initiating_entity": "admin",
                    "reason_admin": {"en": "compromised"},
                    "event_timestamp": AT,
                }),
            )
        );
    }

    #[test]
    fn veto_event_uris_live_in_veto_s_namespace_and_all_uris_differ() {
        for uri in [VETO_TOKEN_REVOKED, VETO_SIGNING_KEY_REVOKED] {
            assert!(uri.starts_with(VETO_EVENT_NAMESPACE), "{uri}");
        }
        let uris: std::collections::HashSet<_> = EventType::ALL.iter().map(|t| t.uri()).collect();
        assert_eq!(uris.len(), EventType::ALL.len());
    }

    #[test]
    fn reasons_are_sent_only_when_given() {
        let cause = Cause::SubjectRevokeAll { sub: "u" };
        for reason in [None, Some("")] {
            let c = claims(cause, reason);
            let members = &c["events"][CAEP_SESSION_REVOKED];
            assert!(members.get("reason_admin").is_none(), "{c}");
            assert!(members.get("reason_user").is_none(), "{c}");
        }
        let audience = aud();
        let with_user = Event {
            reason_user: Some("Signed out everywhere."),
            ..event(cause, Some("logout"))
        };
        let c = set_claims(&input(&audience), &with_user, "s").expect("claims");
        assert_eq!(
            c["events"][CAEP_SESSION_REVOKED]["reason_user"],
            json!({"en": "Signed out everywhere."})
        );
    }

    #[test]
    fn no_set_carries_sub_or_exp_and_each_carries_one_event() {
        let causes = [
            Cause::Session {
                sub: "u",
                session_id: "s",
            },
            Cause::ActorRevokeAll { sub: "u" },
            Cause::SubjectRevokeAll { sub: "u" },
            Cause::DeviceRevokeAll {
                sub: "u",
                device_id: "d",
            },
            Cause::TenantRevokeAll,
            Cause::RefreshFamily {
                sub: "u",
                how: FamilyRevocation::ReuseDetected,
            },
            Cause::Token {
                jti: "j",
                sub: None,
                until: None,
                by: RequestedBy::ApiKey,
            },
            Cause::SigningKey { kid: "k" },
        ];
        for cause in causes {
            let c = claims(cause, Some("r"));
            assert!(c.get("sub").is_none() && c.get("exp").is_none(), "{c}");
            let events = c["events"].as_object().expect("events");
            assert_eq!(events.len(), 1);
            assert!(events.contains_key(cause.event_type().uri()));
            // SSF "New Event Types" and "Existing CAEP and RISC Events": the subject is the
            // top-level `sub_id`, never a `subject` inside the event.
            assert!(events.values().all(|e| e.get("subject").is_none()), "{c}");
            assert!(c["sub_id"]["format"].is_string());
        }
    }

    #[test]
    fn claims_outside_ssf_s_profile_are_never_signed() {
        let key = key(Alg::ES256);
        let good = claims(Cause::TenantRevokeAll, None);
        let with = |name: &str, v: Value| {
            let mut c = good.clone();
            c[name] = v;
            c
        };
        let err = |c: &Value| sign_set(&key, c).expect_err("refused");
        assert!(matches!(
            err(&with("sub", json!("u"))),
            SetError::Forbidden("sub")
        ));
        assert!(matches!(
            err(&with("exp", json!(IAT + 60))),
            SetError::Forbidden("exp")
        ));
        assert!(matches!(
            err(&with("events", json!({})),),
            SetError::EventCount(0)
        ));
        assert!(matches!(
            err(&with(
                "events",
                json!({CAEP_SESSION_REVOKED: {}, VETO_TOKEN_REVOKED: {}})
            )),
            SetError::EventCount(2)
        ));
        assert!(matches!(
            err(&with("events", json!({CAEP_SESSION_REVOKED: "x"}))),
            SetError::Malformed(_)
        ));
        assert!(matches!(
            err(&with("aud", json!([]))),
            SetError::Empty("aud")
        ));
        assert!(matches!(
            err(&with("txn", json!(""))),
            SetError::Empty("txn")
        ));
        assert!(matches!(
            err(&with("iat", json!(1.5))),
            SetError::Malformed(_)
        ));
        assert!(matches!(
            err(&with("sub_id", json!({}))),
            SetError::Malformed(_)
        ));
        sign_set(&key, &good).expect("the good claims sign");
    }

    #[test]
    fn empty_identifiers_are_refused() {
        let audience = aud();
        let empty_sub = event(Cause::SubjectRevokeAll { sub: "" }, None);
        assert!(matches!(
            set_claims(&input(&audience), &empty_sub, "j"),
            Err(SetError::Empty("sub_id sub"))
        ));
        let empty_session = event(
            Cause::Session {
                sub: "u",
                session_id: "",
            },
            None,
        );
        assert!(matches!(
            set_claims(&input(&audience), &empty_session, "j"),
            Err(SetError::Empty("sub_id id"))
        ));
        assert!(matches!(
            set_claims(&input(&audience), &event(Cause::TenantRevokeAll, None), ""),
            Err(SetError::Empty("jti"))
        ));
        assert!(matches!(
            Subject::Complex(ComplexSubject::default()).to_json(),
            Err(SetError::Empty(_))
        ));
    }

    #[test]
    fn a_set_is_a_secevent_jwt_signed_by_the_tenant_s_key() {
        for alg in [Alg::ES256, Alg::EdDSA, Alg::RS256] {
            let key = key(alg);
            let audience = Audience::Many(vec!["rp-web".into(), "rp-mobile".into()]);
            let ev = event(
                Cause::Session {
                    sub: "user-1",
                    session_id: "ses-1",
                },
                Some("logout"),
            );
            let issued = issue_set(&key, &input(&audience), &ev).expect("signs");
            let (header, body) = decode(&issued.token);
            assert_eq!(
                header,
                json!({"alg": alg.as_str(), "kid": key.kid, "typ": "secevent+jwt"})
            );
            assert_eq!(body["jti"], issued.jti);
            assert_eq!(body["aud"], json!(["rp-web", "rp-mobile"]));
            uuid::Uuid::parse_str(&issued.jti).expect("a fresh jti is a UUID");
            let (signed, signature) = issued.token.rsplit_once('.').expect("three parts");
            let signature = URL_SAFE_NO_PAD.decode(signature).expect("b64");
            assert!(key.verify_signature(signed.as_bytes(), &signature));

            // And an implementation we did not write agrees, given no `exp` to require.
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.public_jwk.clone().expect("jwk")).expect("jwk");
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
            let mut validation = jsonwebtoken::Validation::new(alg.as_str().parse().expect("alg"));
            validation.required_spec_claims.clear();
            validation.validate_exp = false;
            validation.set_audience(&["rp-mobile"]);
            validation.set_issuer(&[ISS]);
            let data = jsonwebtoken::decode::<Value>(&issued.token, &decoding, &validation)
                .expect("jsonwebtoken verifies the SET");
            assert_eq!(data.header.typ.as_deref(), Some("secevent+jwt"));
            assert_eq!(data.claims, body);
        }
        // Two SETs of one cause: same txn, different jti.
        let key = key(Alg::ES256);
        let audience = aud();
        let ev = event(Cause::TenantRevokeAll, None);
        let a = issue_set(&key, &input(&audience), &ev).expect("signs");
        let b = issue_set(&key, &input(&audience), &ev).expect("signs");
        assert_ne!(a.jti, b.jti);
        assert_eq!(decode(&a.token).1["txn"], decode(&b.token).1["txn"]);
    }

    #[test]
    fn only_an_active_asymmetric_key_signs_sets() {
        let audience = aud();
        let ev = event(Cause::TenantRevokeAll, None);
        let hmac = key(Alg::HS256);
        assert!(matches!(
            issue_set(&hmac, &input(&audience), &ev),
            Err(SetError::SymmetricKey(Alg::HS256))
        ));
        for status in [KeyStatus::Retired, KeyStatus::Revoked] {
            let mut k = key(Alg::ES256);
            k.status = status;
            assert!(matches!(
                issue_set(&k, &input(&audience), &ev),
                Err(SetError::KeyCannotSign(_))
            ));
        }
        let public =
            LoadedKey::from_public_jwk("acme", &key(Alg::EdDSA).public_jwk.clone().expect("jwk"))
                .expect("public key");
        assert!(matches!(
            issue_set(&public, &input(&audience), &ev),
            Err(SetError::KeyCannotSign(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        // Whatever text a reason, a jti or a subject holds (quotes, control characters,
        // non-ASCII, newlines), the receiver reads back exactly that from the signed SET.
        #[test]
        fn reason_jti_and_sub_round_trip_through_a_signed_set(
            reason in "(?s).{1,120}",
            jti in "(?s).{1,80}",
            sub in "(?s).{1,80}",
            set_jti in "[A-Za-z0-9_-]{1,40}",
        ) {
            let key = key(Alg::EdDSA);
            let audience = aud();
            let ev = event(
                Cause::Token { jti: &jti, sub: Some(&sub), until: None, by: RequestedBy::ApiKey },
                None,
            );
            let ev = Event { reason: Some(&reason), ..ev };
            let issued = issue_set_as(&key, &input(&audience), &ev, &set_jti).expect("signs");
            let (_, body) = decode(&issued.token);
            let members = &body["events"][VETO_TOKEN_REVOKED];
            prop_assert_eq!(members["jti"].as_str(), Some(jti.as_str()));
            prop_assert_eq!(members["reason_admin"]["en"].as_str(), Some(reason.as_str()));
            prop_assert_eq!(body["sub_id"]["sub"].as_str(), Some(sub.as_str()));
            prop_assert_eq!(body["jti"].as_str(), Some(set_jti.as_str()));
        }
    }
}
