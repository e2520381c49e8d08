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

/// What one tenant key may make a tenant hold, so that a tenant (or a leaked key of it) cannot
/// grow a node's memory and its lists without bound: every key is held decrypted in memory by
/// every node. Counted over the stored keys of every status (signing keys revoked are kept as the
/// record of the revocation; retired ones go with the purge after their retention). Beyond: 409.
/// Two nodes creating at the same moment can each pass the count, so a cap may be exceeded by a
/// few; it bounds growth, it is not an exact quota.
pub const SIGNING_KEYS_PER_TENANT: usize = 1_000;
/// API keys of one tenant (admin keys are not counted: only an admin can make them).
pub const API_KEYS_PER_TENANT: usize = 1_000;
/// Session keys of one tenant (each rotation adds one; retired ones go after 24 h).
pub const SESSION_KEYS_PER_TENANT: usize = 100;
