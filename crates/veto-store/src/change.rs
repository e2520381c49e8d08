//! The change log: what every write that alters a node's in-memory state appends, in the same
//! transaction as the write (docs/architecture.md, "The change feed").
//!
//! A change is read in two places: by the node that wrote it, which gets it back from the store
//! method that wrote it ([`Written`]) and applies it before answering its client, and by every
//! node following the feed (`Store::changes_after`). Both hand it to the same function in the
//! server, so the kind is a closed enum: a new kind is a compile error wherever it is not
//! handled. In the database a change is a row of (kind name, key, value); this module is the one
//! place that translates between the two.
use crate::FeedCursor;

/// One change-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Where it sits in the feed. Per entity (see [`Change::entity`]) cursor order is commit
    /// order in both backends, which is what lets a node ignore a change older than the state
    /// it already holds.
    pub cursor: FeedCursor,
    pub tenant: String,
    pub kind: ChangeKind,
    /// Unix seconds when written.
    pub at: i64,
}

/// What changed, with the state after the change where a row says it. Kinds whose state holds
/// more than a row of the log can carry (a tenant, key material, an API key) name the row, and
/// appliers read it from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    TenantCreated,
    TenantSuspended,
    TenantResumed,
    /// The tenant-wide cutoff after the write: the stored maximum, not the request's value.
    TenantCutoff {
        not_before_iat: i64,
    },
    SubjectCutoff {
        sub: String,
        not_before_iat: i64,
    },
    /// A jti revoked; `until` (unix seconds) for a temporary suspension.
    Revoked {
        jti: String,
        until: Option<i64>,
    },
    /// A temporary suspension lifted early (its row deleted).
    Lifted {
        jti: String,
    },
    /// A revocation row deleted by the purge (expired).
    RevocationPurged {
        jti: String,
    },
    /// A cutoff row deleted by the purge (every token it could reject has expired): `sub` is
    /// empty for the tenant-wide cutoff.
    CutoffPurged {
        sub: String,
    },
    SigningKeyInserted {
        kid: String,
    },
    SigningKeyRetired {
        kid: String,
    },
    SigningKeyRevoked {
        kid: String,
    },
    ApiKeyInserted {
        id: String,
    },
    ApiKeyDeleted {
        id: String,
    },
    /// A session opened; its stored idle expiry (unix seconds), which never passes the absolute
    /// one.
    SessionCreated {
        id: String,
        idle_expires_at: i64,
    },
    /// A session's activity written back; its stored idle expiry after the write.
    SessionTouched {
        id: String,
        idle_expires_at: i64,
    },
    SessionRevoked {
        id: String,
    },
    /// A session row deleted by the purge.
    SessionPurged {
        id: String,
    },
    /// A session cookie key inserted (the first one, or a rotation).
    SessionKeyInserted {
        kid: String,
    },
    RefreshFamilyRevoked {
        family: String,
    },
    RefreshFamilyPurged {
        family: String,
    },
    /// A status list created (the tenant's current list from now on); appliers read it with
    /// `Store::status_lists`.
    StatusListCreated {
        id: String,
    },
    /// A token given index `idx` of status list `list`; appliers read the entry with
    /// `Store::status_entry`.
    StatusEntryAllocated {
        list: String,
        idx: u32,
    },
    /// A status list entry deleted by the purge (its token expired): the index is free again.
    StatusEntryPurged {
        list: String,
        idx: u32,
    },
    /// The tenant's `status_list` setting after the write.
    TenantStatusList {
        on: bool,
    },
    /// A row this version cannot read: a kind written by a newer veto, or one without the
    /// value its kind needs. Appliers say so loudly; a restart loads the state it describes.
    Unreadable {
        name: String,
        key: String,
        value: Option<i64>,
    },
}

/// What a change is about: the unit whose changes come in commit order and of which only the
/// newest state counts. Scoped by the change's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity<'a> {
    /// The tenant row (existence, suspension).
    Tenant,
    /// A cutoff: the tenant's (`None`) or a subject's. Cutoffs only rise, so their order does
    /// not matter; they are entities all the same.
    Cutoff(Option<&'a str>),
    Jti(&'a str),
    /// All signing keys of the tenant, as one: appliers reload them together.
    SigningKeys,
    ApiKey(&'a str),
    Session(&'a str),
    /// All session cookie keys of the tenant, as one.
    SessionKeys,
    RefreshFamily(&'a str),
    /// A status list (its creation).
    StatusList(&'a str),
    /// One index of one status list: allocated, purged, allocated again.
    StatusEntry(&'a str, u32),
    /// The tenant's `status_list` setting: apart from [`Entity::Tenant`], so that within one
    /// feed read the newest setting never hides a suspension (only the last change per entity
    /// is applied).
    TenantStatusList,
    Unreadable(&'a str),
}

/// The names rows carry in the `kind` column. Besides this module, only the backends' bulk
/// inserts (many rows of one kind in one statement) and the conformance suites, which check
/// the stored form, use them.
pub mod names {
    pub const TENANT_CREATE: &str = "tenant.create";
    pub const TENANT_SUSPEND: &str = "tenant.suspend";
    pub const TENANT_RESUME: &str = "tenant.resume";
    pub const TENANT_CUTOFF: &str = "tenant.cutoff";
    pub const SUBJECT_CUTOFF: &str = "subject.cutoff";
    pub const REVOCATION: &str = "revocation";
    pub const REVOCATION_LIFT: &str = "revocation.lift";
    pub const REVOCATION_PURGE: &str = "revocation.purge";
    pub const CUTOFF_PURGE: &str = "cutoff.purge";
    pub const KEY_INSERT: &str = "key.insert";
    pub const KEY_RETIRE: &str = "key.retire";
    pub const KEY_REVOKE: &str = "key.revoke";
    pub const API_KEY_INSERT: &str = "api_key.insert";
    pub const API_KEY_DELETE: &str = "api_key.delete";
    pub const SESSION_CREATE: &str = "session.create";
    pub const SESSION_TOUCH: &str = "session.touch";
    pub const SESSION_REVOKE: &str = "session.revoke";
    pub const SESSION_PURGE: &str = "session.purge";
    pub const SESSION_KEY_INSERT: &str = "session_key.insert";
    pub const REFRESH_REVOKE: &str = "refresh.revoke";
    pub const REFRESH_PURGE: &str = "refresh.purge";
    pub const STATUS_LIST_CREATE: &str = "status_list.create";
    pub const STATUS_ENTRY_ALLOCATE: &str = "status_entry.allocate";
    pub const STATUS_ENTRY_PURGE: &str = "status_entry.purge";
    pub const TENANT_STATUS_LIST: &str = "tenant.status_list";
}

impl ChangeKind {
    /// Decodes a stored row. Never fails: what it cannot read becomes `Unreadable`.
    pub(crate) fn from_row(name: String, key: String, value: Option<i64>) -> ChangeKind {
        use ChangeKind::*;
        use names::*;
        match (name.as_str(), value) {
            (TENANT_CREATE, _) => TenantCreated,
            (TENANT_SUSPEND, _) => TenantSuspended,
            (TENANT_RESUME, _) => TenantResumed,
            (TENANT_CUTOFF, Some(not_before_iat)) => TenantCutoff { not_before_iat },
            (SUBJECT_CUTOFF, Some(not_before_iat)) => SubjectCutoff {
                sub: key,
                not_before_iat,
            },
            (REVOCATION, until) => Revoked { jti: key, until },
            (REVOCATION_LIFT, _) => Lifted { jti: key },
            (REVOCATION_PURGE, _) => RevocationPurged { jti: key },
            (CUTOFF_PURGE, _) => CutoffPurged { sub: key },
            (KEY_INSERT, _) => SigningKeyInserted { kid: key },
            (KEY_RETIRE, _) => SigningKeyRetired { kid: key },
            (KEY_REVOKE, _) => SigningKeyRevoked { kid: key },
            (API_KEY_INSERT, _) => ApiKeyInserted { id: key },
            (API_KEY_DELETE, _) => ApiKeyDeleted { id: key },
            (SESSION_CREATE, Some(idle_expires_at)) => SessionCreated {
                id: key,
                idle_expires_at,
            },
            (SESSION_TOUCH, Some(idle_expires_at)) => SessionTouched {
                id: key,
                idle_expires_at,
            },
            (SESSION_REVOKE, _) => SessionRevoked { id: key },
            (SESSION_PURGE, _) => SessionPurged { id: key },
            (SESSION_KEY_INSERT, _) => SessionKeyInserted { kid: key },
            (REFRESH_REVOKE, _) => RefreshFamilyRevoked { family: key },
            (REFRESH_PURGE, _) => RefreshFamilyPurged { family: key },
            (STATUS_LIST_CREATE, _) => StatusListCreated { id: key },
            (STATUS_ENTRY_ALLOCATE, Some(v)) if u32::try_from(v).is_ok() => StatusEntryAllocated {
                list: key,
                idx: v as u32,
            },
            (STATUS_ENTRY_PURGE, Some(v)) if u32::try_from(v).is_ok() => StatusEntryPurged {
                list: key,
                idx: v as u32,
            },
            (TENANT_STATUS_LIST, Some(v @ (0 | 1))) => TenantStatusList { on: v == 1 },
            _ => Unreadable { name, key, value },
        }
    }

    /// The row that stores this change: (kind name, key, value). The key of a tenant-level
    /// change is ''.
    pub fn to_row(&self) -> (&str, &str, Option<i64>) {
        use ChangeKind::*;
        use names::*;
        match self {
            TenantCreated => (TENANT_CREATE, "", None),
            TenantSuspended => (TENANT_SUSPEND, "", None),
            TenantResumed => (TENANT_RESUME, "", None),
            TenantCutoff { not_before_iat } => (TENANT_CUTOFF, "", Some(*not_before_iat)),
            SubjectCutoff {
                sub,
                not_before_iat,
            } => (SUBJECT_CUTOFF, sub, Some(*not_before_iat)),
            Revoked { jti, until } => (REVOCATION, jti, *until),
            Lifted { jti } => (REVOCATION_LIFT, jti, None),
            RevocationPurged { jti } => (REVOCATION_PURGE, jti, None),
            CutoffPurged { sub } => (CUTOFF_PURGE, sub, None),
            SigningKeyInserted { kid } => (KEY_INSERT, kid, None),
            SigningKeyRetired { kid } => (KEY_RETIRE, kid, None),
            SigningKeyRevoked { kid } => (KEY_REVOKE, kid, None),
            ApiKeyInserted { id } => (API_KEY_INSERT, id, None),
            ApiKeyDeleted { id } => (API_KEY_DELETE, id, None),
            SessionCreated {
                id,
                idle_expires_at,
            } => (SESSION_CREATE, id, Some(*idle_expires_at)),
            SessionTouched {
                id,
                idle_expires_at,
            } => (SESSION_TOUCH, id, Some(*idle_expires_at)),
            SessionRevoked { id } => (SESSION_REVOKE, id, None),
            SessionPurged { id } => (SESSION_PURGE, id, None),
            SessionKeyInserted { kid } => (SESSION_KEY_INSERT, kid, None),
            RefreshFamilyRevoked { family } => (REFRESH_REVOKE, family, None),
            RefreshFamilyPurged { family } => (REFRESH_PURGE, family, None),
            StatusListCreated { id } => (STATUS_LIST_CREATE, id, None),
            StatusEntryAllocated { list, idx } => {
                (STATUS_ENTRY_ALLOCATE, list, Some(i64::from(*idx)))
            }
            StatusEntryPurged { list, idx } => (STATUS_ENTRY_PURGE, list, Some(i64::from(*idx))),
            TenantStatusList { on } => (TENANT_STATUS_LIST, "", Some(i64::from(*on))),
            Unreadable { name, key, value } => (name, key, *value),
        }
    }

    /// The stored kind name (`revocation`, `tenant.suspend`, …), for logs and metrics.
    pub fn name(&self) -> &str {
        self.to_row().0
    }

    pub fn entity(&self) -> Entity<'_> {
        use ChangeKind::*;
        match self {
            TenantCreated | TenantSuspended | TenantResumed => Entity::Tenant,
            TenantCutoff { .. } => Entity::Cutoff(None),
            SubjectCutoff { sub, .. } => Entity::Cutoff(Some(sub)),
            CutoffPurged { sub } if sub.is_empty() => Entity::Cutoff(None),
            CutoffPurged { sub } => Entity::Cutoff(Some(sub)),
            Revoked { jti, .. } | Lifted { jti } | RevocationPurged { jti } => Entity::Jti(jti),
            SigningKeyInserted { .. } | SigningKeyRetired { .. } | SigningKeyRevoked { .. } => {
                Entity::SigningKeys
            }
            ApiKeyInserted { id } | ApiKeyDeleted { id } => Entity::ApiKey(id),
            SessionCreated { id, .. }
            | SessionTouched { id, .. }
            | SessionRevoked { id }
            | SessionPurged { id } => Entity::Session(id),
            SessionKeyInserted { .. } => Entity::SessionKeys,
            RefreshFamilyRevoked { family } | RefreshFamilyPurged { family } => {
                Entity::RefreshFamily(family)
            }
            StatusListCreated { id } => Entity::StatusList(id),
            StatusEntryAllocated { list, idx } | StatusEntryPurged { list, idx } => {
                Entity::StatusEntry(list, *idx)
            }
            TenantStatusList { .. } => Entity::TenantStatusList,
            Unreadable { name, .. } => Entity::Unreadable(name),
        }
    }
}

impl Change {
    /// Decodes a stored row (see [`ChangeKind::from_row`]).
    pub(crate) fn from_row(
        cursor: FeedCursor,
        tenant: String,
        (name, key, value): (String, String, Option<i64>),
        at: i64,
    ) -> Change {
        Change {
            cursor,
            tenant,
            kind: ChangeKind::from_row(name, key, value),
            at,
        }
    }

    pub fn entity(&self) -> Entity<'_> {
        self.kind.entity()
    }

    /// The row key: the jti, subject, kid, API key, session, family or status list id ('' for
    /// the tenant).
    pub fn key(&self) -> &str {
        self.kind.to_row().1
    }
}

/// What a write returns: its result, and the change-log entries it appended, in feed order. The
/// node that wrote them applies exactly these to its memory before it answers (read-your-writes),
/// through the same function that applies the feed; empty when the write changed nothing (an
/// idempotent repeat).
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub value: T,
    pub changes: Vec<Change>,
}

impl<T> Written<T> {
    pub(crate) fn new(value: T, changes: Vec<Change>) -> Self {
        Written { value, changes }
    }

    /// The result, for callers that keep no in-memory state (the CLI, tests).
    pub fn into_value(self) -> T {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<ChangeKind> {
        use ChangeKind::*;
        let s = || "x".to_owned();
        vec![
            TenantCreated,
            TenantSuspended,
            TenantResumed,
            TenantCutoff { not_before_iat: 5 },
            SubjectCutoff {
                sub: s(),
                not_before_iat: 6,
            },
            Revoked {
                jti: s(),
                until: None,
            },
            Revoked {
                jti: s(),
                until: Some(7),
            },
            Lifted { jti: s() },
            RevocationPurged { jti: s() },
            CutoffPurged { sub: s() },
            CutoffPurged { sub: String::new() },
            SigningKeyInserted { kid: s() },
            SigningKeyRetired { kid: s() },
            SigningKeyRevoked { kid: s() },
            ApiKeyInserted { id: s() },
            ApiKeyDeleted { id: s() },
            SessionCreated {
                id: s(),
                idle_expires_at: 8,
            },
            SessionTouched {
                id: s(),
                idle_expires_at: 9,
            },
            SessionRevoked { id: s() },
            SessionPurged { id: s() },
            SessionKeyInserted { kid: s() },
            RefreshFamilyRevoked { family: s() },
            RefreshFamilyPurged { family: s() },
            StatusListCreated { id: s() },
            StatusEntryAllocated { list: s(), idx: 0 },
            StatusEntryAllocated {
                list: s(),
                idx: u32::MAX,
            },
            StatusEntryPurged { list: s(), idx: 3 },
            TenantStatusList { on: true },
            TenantStatusList { on: false },
        ]
    }

    #[test]
    fn every_kind_survives_its_row() {
        for k in every_kind() {
            let (name, key, value) = k.to_row();
            let back = ChangeKind::from_row(name.to_owned(), key.to_owned(), value);
            assert_eq!(back, k);
        }
    }

    #[test]
    fn status_list_entities_are_their_own() {
        use ChangeKind::*;
        let entry = |idx| StatusEntryAllocated {
            list: "l1".into(),
            idx,
        };
        let purged = StatusEntryPurged {
            list: "l1".into(),
            idx: 3,
        };
        // One index's allocation and purge are one entity; another index is another.
        assert_eq!(entry(3).entity(), purged.entity());
        assert_ne!(entry(3).entity(), entry(4).entity());
        // Within one feed read only the last change per entity is applied: the setting must
        // never hide a suspension.
        let setting = TenantStatusList { on: true }.entity();
        assert_ne!(setting, TenantSuspended.entity());
        assert_ne!(setting, TenantCreated.entity());
    }

    #[test]
    fn rows_it_cannot_read_stay_visible_as_unreadable() {
        for (name, value) in [
            ("session.teleport", None),
            ("tenant.cutoff", None),
            ("status_entry.allocate", None),
            ("status_entry.allocate", Some(-1)),
            ("status_entry.allocate", Some(1 << 32)),
            ("status_entry.purge", None),
            ("status_entry.purge", Some(-5)),
            ("tenant.status_list", None),
            ("tenant.status_list", Some(2)),
        ] {
            let k = ChangeKind::from_row(name.to_owned(), "k".to_owned(), value);
            assert!(matches!(k, ChangeKind::Unreadable { .. }), "{name}");
            assert_eq!(k.name(), name);
        }
    }
}
