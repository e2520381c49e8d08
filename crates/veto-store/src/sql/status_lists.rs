//! The status list statements both backends run word for word (issue 14): a child module of
//! `sql`, on the same [`Conn`] and with the same rules. `backend/store.rs` begins the
//! transaction through the backend (with the keys it locks), calls in here, and commits.
use veto_core::audit::AuditEvent;

use super::{Arg, BoundedDelete, Conn, insert_audit, insert_change, one};
use crate::change::ChangeKind;
use crate::rows::{
    Cols, STATUS_ENTRY_COLUMNS, STATUS_LIST_COLUMNS, conflict_or_unavailable,
    missing_tenant_or_unavailable, status_entry_from_row, status_list_from_row, ts, unavailable,
};
use crate::status_list::{NewStatusEntry, NewStatusList, StatusEntry, StatusListInfo};
use crate::{Result, StoreError};

use Arg::{Flag, Int, OptText, Text};

/// The tenant's current list (its newest): (id, size).
async fn current_list<C: Conn>(c: &mut C, tenant: &str) -> Result<Option<(String, u32)>> {
    let sql = format!(
        "SELECT {STATUS_LIST_COLUMNS} FROM status_lists WHERE tenant = $1 ORDER BY seq DESC LIMIT 1"
    );
    one(c, &sql, vec![Text(tenant)])
        .await
        .map_err(unavailable)?
        .map(|r| status_list_from_row(&r).map(|l| (l.id, l.size)))
        .transpose()
}

/// Inserts the entry at `idx` of `list` unless that index is taken (a concurrent insert of the
/// same index is waited for: PostgreSQL's unique index, SQLite's single writer); appends its
/// change when inserted.
async fn insert_entry<C: Conn>(
    c: &mut C,
    e: &NewStatusEntry<'_>,
    list: &str,
    idx: u32,
) -> Result<Option<StatusEntry>> {
    let sql = format!(
        "INSERT INTO status_entries ({STATUS_ENTRY_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (tenant, list, idx) DO NOTHING RETURNING idx"
    );
    let args = vec![
        Text(e.tenant),
        Text(list),
        Int(i64::from(idx)),
        Text(e.jti),
        OptText(e.sub),
        OptText(e.sid),
        Text(e.kid),
        OptText(e.fam),
        Int(e.iat),
        Int(e.exp),
    ];
    let inserted = one(c, &sql, args)
        .await
        .map_err(|err| missing_tenant_or_unavailable(err, e.tenant))?
        .is_some();
    if !inserted {
        return Ok(None);
    }
    let entry = e.at(list, idx);
    let list = entry.list.clone();
    insert_change(c, e.tenant, ChangeKind::StatusEntryAllocated { list, idx }).await?;
    Ok(Some(entry))
}

/// The first of `candidates` (each `% size`) free in the tenant's current list, taken; `None`
/// when the tenant has no list or none of them is free there (nothing written).
pub(crate) async fn take_free_entry<C: Conn>(
    c: &mut C,
    e: &NewStatusEntry<'_>,
    candidates: &[u32],
) -> Result<Option<StatusEntry>> {
    let Some((list, size)) = current_list(c, e.tenant).await? else {
        return Ok(None);
    };
    for &candidate in candidates {
        if let Some(entry) = insert_entry(c, e, &list, candidate % size).await? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Creates `new` as the tenant's current list (the next `seq`) and takes `candidate % size`
/// there. `NotFound` for an unknown tenant, `Conflict` for a list id the tenant has.
pub(crate) async fn take_in_new_list<C: Conn>(
    c: &mut C,
    e: &NewStatusEntry<'_>,
    candidate: u32,
    new: &NewStatusList<'_>,
) -> Result<StatusEntry> {
    c.exec(
        "INSERT INTO status_lists (tenant, id, seq, size, created_at) \
         SELECT $1, $2, coalesce(max(seq), 0) + 1, $3, $4 FROM status_lists WHERE tenant = $1",
        vec![
            Text(e.tenant),
            Text(new.id),
            Int(i64::from(new.size)),
            Int(ts(new.created_at)),
        ],
    )
    .await
    .map_err(|err| match &err {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            missing_tenant_or_unavailable(err, e.tenant)
        }
        _ => conflict_or_unavailable(err, || {
            format!("status list {:?} of tenant {:?} exists", new.id, e.tenant)
        }),
    })?;
    let id = new.id.to_owned();
    insert_change(c, e.tenant, ChangeKind::StatusListCreated { id }).await?;
    insert_entry(c, e, new.id, candidate % new.size)
        .await?
        .ok_or_else(|| crate::Unavailable::new("a new status list had its index taken").into())
}

pub(crate) async fn status_entry<C: Conn>(
    c: &mut C,
    tenant: &str,
    list: &str,
    idx: u32,
) -> Result<Option<StatusEntry>> {
    let sql = format!(
        "SELECT {STATUS_ENTRY_COLUMNS} FROM status_entries \
         WHERE tenant = $1 AND list = $2 AND idx = $3"
    );
    one(c, &sql, vec![Text(tenant), Text(list), Int(i64::from(idx))])
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(status_entry_from_row)
        .transpose()
}

/// The tenant's lists, newest first (every tenant's when `tenant` is `None`, each tenant's
/// newest last, as `load_state` gives them).
pub(crate) async fn status_lists<C: Conn>(
    c: &mut C,
    tenant: Option<&str>,
) -> Result<Vec<StatusListInfo>> {
    let (filter, order, args) = match tenant {
        Some(t) => ("WHERE tenant = $1", "seq DESC", vec![Text(t)]),
        None => ("", "tenant, seq", vec![]),
    };
    let sql = format!("SELECT {STATUS_LIST_COLUMNS} FROM status_lists {filter} ORDER BY {order}");
    c.rows(&sql, args)
        .await
        .map_err(unavailable)?
        .iter()
        .map(status_list_from_row)
        .collect()
}

/// Every stored entry (start-up).
pub(crate) async fn all_status_entries<C: Conn>(c: &mut C) -> Result<Vec<StatusEntry>> {
    let sql = format!("SELECT {STATUS_ENTRY_COLUMNS} FROM status_entries");
    c.rows(&sql, vec![])
        .await
        .map_err(unavailable)?
        .iter()
        .map(status_entry_from_row)
        .collect()
}

/// The tenants whose `status_list` setting is on (start-up).
pub(crate) async fn status_list_tenants<C: Conn>(c: &mut C) -> Result<Vec<String>> {
    c.rows(
        "SELECT id FROM tenants WHERE status_list = $1 ORDER BY id",
        vec![Flag(true)],
    )
    .await
    .map_err(unavailable)?
    .iter()
    .map(|r| r.text_at(0))
    .collect()
}

pub(crate) async fn tenant_status_list<C: Conn>(c: &mut C, tenant: &str) -> Result<Option<bool>> {
    one(
        c,
        "SELECT status_list FROM tenants WHERE id = $1",
        vec![Text(tenant)],
    )
    .await
    .map_err(unavailable)?
    .map(|r| r.flag_at(0))
    .transpose()
}

/// `NotFound` for an unknown tenant.
pub(crate) async fn set_tenant_status_list<C: Conn>(
    c: &mut C,
    tenant: &str,
    on: bool,
    audit: &AuditEvent,
) -> Result<()> {
    one(
        c,
        "UPDATE tenants SET status_list = $1 WHERE id = $2 RETURNING id",
        vec![Flag(on), Text(tenant)],
    )
    .await
    .map_err(unavailable)?
    .ok_or_else(|| StoreError::NotFound(format!("tenant {tenant:?}")))?;
    insert_audit(c, audit).await?;
    insert_change(c, tenant, ChangeKind::TenantStatusList { on }).await
}

/// Deletes at most `limit` entries whose token expired before `before`; returns their (tenant,
/// list, idx), for the caller's `status_entry.purge` changes. The caller holds what keeps other
/// writers off the victims (as for `purge_expired`).
pub(crate) async fn purge_status_entries<C: Conn>(
    c: &mut C,
    bounded: BoundedDelete,
    before: i64,
    limit: i64,
) -> Result<Vec<(String, String, i64)>> {
    let sql = bounded("status_entries", "exp < $1", "RETURNING tenant, list, idx");
    c.rows(&sql, vec![Int(before), Int(limit)])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((r.text_at(0)?, r.text_at(1)?, r.int_at(2)?)))
        .collect()
}
