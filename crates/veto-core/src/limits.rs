//! How much caller input may hold: one table for the domain rules and the HTTP layer alike, so
//! that the same kind of field has the same limit wherever it is accepted (a reason is a reason,
//! whether it ends a token, a session or a key). Bytes, not characters: the limit is what a row
//! costs, whatever the script.

/// Every free-text `reason`: revocations and suspensions, revoke-all, tenant suspension, key,
/// session and refresh-family revocations.
pub const REASON: usize = 500;
/// Identifiers that end up in keys and lookups: jti, sub, sid, kid, audience, client_id, and a
/// session's actor type and id.
pub const IDENTIFIER: usize = 256;
/// Names people read: a tenant's display name, an API key's name.
pub const NAME: usize = 200;
/// A session's user agent is stored cut to this (longer ones are truncated, not refused).
pub const USER_AGENT: usize = 512;
