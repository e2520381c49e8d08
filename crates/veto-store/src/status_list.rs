//! The stored side of the OAuth Token Status List (draft-ietf-oauth-status-list-20, issue 14):
//! a tenant's fixed-size lists and one entry per token issued with a status list entry.
//!
//! Status bits are not stored: every node derives them from its revocation state. What the
//! store keeps is which index of which list each token holds, and enough of the token (its jti,
//! subject, session, key, family and times) for a later cutoff or revocation to find the entries
//! it concerns. An index is never given twice while its row exists; the purge deletes the row
//! once the token has expired (with the purge's margin), and the index returns to the pool.
use time::OffsetDateTime;
pub use veto_core::status_list::registry::EntryFacts;

/// One token's entry in a status list: where it is, and the token's facts as the registry
/// that judges it holds them (the purge deletes the row once `facts.exp`, plus its margin, has
/// passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub tenant: String,
    /// The list's id.
    pub list: String,
    /// The token's index in the list.
    pub idx: u32,
    pub facts: EntryFacts,
}

/// A token to give an index, before it has one (`Store::allocate_status_entry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewStatusEntry<'a> {
    pub tenant: &'a str,
    pub jti: &'a str,
    pub sub: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub kid: &'a str,
    pub fam: Option<&'a str>,
    pub iat: i64,
    pub exp: i64,
}

/// The list `Store::allocate_status_entry` creates when the tenant has none or its current one
/// is full: id and size are the caller's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewStatusList<'a> {
    pub id: &'a str,
    /// Entries (indexes `0..size`); at least 1.
    pub size: u32,
    pub created_at: OffsetDateTime,
}

/// A stored list. A tenant's current list is its newest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListInfo {
    pub tenant: String,
    pub id: String,
    pub size: u32,
    pub created_at: OffsetDateTime,
}

impl NewStatusEntry<'_> {
    /// The entry it becomes at `idx` of `list`.
    pub(crate) fn at(&self, list: &str, idx: u32) -> StatusEntry {
        StatusEntry {
            tenant: self.tenant.to_owned(),
            list: list.to_owned(),
            idx,
            facts: EntryFacts {
                jti: self.jti.into(),
                sub: self.sub.map(Into::into),
                sid: self.sid.map(Into::into),
                kid: self.kid.into(),
                fam: self.fam.map(Into::into),
                iat: self.iat,
                exp: self.exp,
            },
        }
    }
}
