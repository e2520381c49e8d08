//! The statements both backends run word for word, and the logic around them, written once.
//!
//! Everything here works on a [`Conn`]: a connection (usually inside a transaction the backend
//! began, with its own locks) that runs SQL with `Arg`s bound by number. The placeholders are
//! PostgreSQL's `$1, $2, …`, which sqlx's SQLite driver also binds by number, and the SQL keeps to
//! what both dialects share (`RETURNING`, `ON CONFLICT`, `IS NOT DISTINCT FROM`, `CASE` rather
//! than SQLite's two-argument `max` or PostgreSQL's `GREATEST`). What the dialects do
//! differently (multi-row inserts, how a delete is bounded, the change feed) stays in the
//! backends, as do transactions: the generic methods of `backend` begin one through the backend,
//! call in here, and commit (through [`commit_if`] where a write may turn out to have changed
//! nothing).
use std::future::Future;

use time::OffsetDateTime;
use veto_core::apikey::ApiKeyRecord;
use veto_core::audit::AuditEvent;
use veto_core::keys::SigningKeyRecord;
use veto_core::revocation::{Cutoff, Revocation, RevocationStats};
use veto_core::tenant::Tenant;

use crate::change::{Change, ChangeKind, Written};
use crate::rows::{
    API_KEY_COLUMNS, Cols, REVOCATION_COLUMNS, SIGNING_KEY_COLUMNS, TENANT_COLUMNS,
    api_key_from_row, api_key_insert_error, as_stored, audit_conflict, conflict_or_unavailable,
    missing_tenant_or_unavailable, now_ts, revocation_from_row, scopes_to_text,
    signing_key_from_row, signing_key_insert_error, tenant_from_row, ts, unavailable, vanished,
};
use crate::{
    CHANGE_RETENTION_SECS, IndexedRevocation, LiftOutcome, PurgeCounts, Resealed, Result,
    RevokeOutcome, SealedBlob, SealedKind, StateSnapshot, StoreError, TenantRevocationState,
    Unavailable,
};

/// A bound value.
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
    Flag(bool),
}

/// A connection of either backend. The futures are `Send` so that the store's own (`Send`)
/// futures can await them.
pub(crate) trait Conn: Send {
    type Row: Cols + Send;
    /// Runs `sql` and returns every row it produced.
    fn rows<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> impl Future<Output = std::result::Result<Vec<Self::Row>, sqlx::Error>> + Send + 'a;
    /// Runs `sql` and returns how many rows it changed.
    fn exec<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Arg<'a>>,
    ) -> impl Future<Output = std::result::Result<u64, sqlx::Error>> + Send + 'a;
}

macro_rules! conn_for {
    ($conn:ty, $db:ty, $bind:ident) => {
        fn $bind<'q>(
            sql: &'q str,
            args: Vec<Arg<'q>>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            let mut q = sqlx::query::<$db>(sqlx::AssertSqlSafe(sql));
            for a in args {
                q = match a {
                    Arg::Int(v) => q.bind(v),
                    Arg::OptInt(v) => q.bind(v),
                    Arg::Text(v) => q.bind(v),
                    Arg::OptText(v) => q.bind(v),
                    Arg::Bytes(v) => q.bind(v),
                    Arg::Flag(v) => q.bind(v),
                };
            }
            q
        }

        impl Conn for $conn {
            type Row = <$db as sqlx::Database>::Row;

            fn rows<'a>(
                &'a mut self,
                sql: &'a str,
                args: Vec<Arg<'a>>,
            ) -> impl Future<Output = std::result::Result<Vec<Self::Row>, sqlx::Error>> + Send + 'a
            {
                $bind(sql, args).fetch_all(self)
            }

            fn exec<'a>(
                &'a mut self,
                sql: &'a str,
                args: Vec<Arg<'a>>,
            ) -> impl Future<Output = std::result::Result<u64, sqlx::Error>> + Send + 'a {
                let q = $bind(sql, args);
                async move { Ok(q.execute(self).await?.rows_affected()) }
            }
        }
    };
}

conn_for!(sqlx::SqliteConnection, sqlx::Sqlite, sqlite_query);
conn_for!(sqlx::PgConnection, sqlx::Postgres, pg_query);

use Arg::{Bytes, Flag, Int, OptInt, OptText, Text};

/// A backend's write transaction, begun the way that backend's writes need (SQLite's write lock,
/// PostgreSQL's key locks).
pub(crate) trait WriteTx: Send {
    /// Commits, returning the changes this transaction appended, in feed order (PostgreSQL also
    /// announces them).
    fn commit_changes(self) -> impl Future<Output = Result<Vec<Change>>> + Send;
    /// Commits a write that appended no changes: nothing to read back or announce.
    fn commit_plain(self) -> impl Future<Output = Result<()>> + Send;
}

/// `value` and the changes `tx` appended, committed only if `wrote(&value)`: a write that turned
/// out to change nothing (a repeat, an unknown row) is dropped, which rolls back a transaction
/// that wrote nothing, and returns no changes.
pub(crate) async fn commit_if<W: WriteTx, T>(
    tx: W,
    value: T,
    wrote: impl FnOnce(&T) -> bool,
) -> Result<Written<T>> {
    let changes = if wrote(&value) {
        tx.commit_changes().await?
    } else {
        Vec::new()
    };
    Ok(Written::new(value, changes))
}

/// The keyset pages (`list_*`), written once in the same way.
pub(crate) mod pages;
/// The `SessionStore` statements, written once in the same way.
pub(crate) mod sessions;
/// The status list statements, written once in the same way.
pub(crate) mod status_lists;

async fn one<C: Conn>(
    c: &mut C,
    sql: &str,
    args: Vec<Arg<'_>>,
) -> std::result::Result<Option<C::Row>, sqlx::Error> {
    Ok(c.rows(sql, args).await?.into_iter().next())
}

// ---- rows every write appends ---------------------------------------------------------------

pub(crate) async fn insert_audit<C: Conn>(c: &mut C, e: &AuditEvent) -> Result<()> {
    let metadata = e.metadata.to_string();
    c.exec(
        "INSERT INTO audit_events (id, tenant, at, actor, action, target, reason, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        vec![
            Text(&e.id),
            Text(&e.tenant),
            Int(ts(e.at)),
            Text(&e.actor),
            Text(&e.action),
            Text(&e.target),
            OptText(e.reason.as_deref()),
            Text(&metadata),
        ],
    )
    .await
    .map_err(audit_conflict)?;
    Ok(())
}

/// Appends one change-log row. PostgreSQL fills in `xid` itself (column default).
pub(crate) async fn insert_change<C: Conn>(
    c: &mut C,
    tenant: &str,
    change: ChangeKind,
) -> Result<()> {
    let (kind, key, value) = change.to_row();
    c.exec(
        "INSERT INTO changes (tenant, kind, key, value, at) VALUES ($1, $2, $3, $4, $5)",
        vec![
            Text(tenant),
            Text(kind),
            Text(key),
            OptInt(value),
            Int(now_ts()),
        ],
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}

// ---- tenants and cutoffs ----------------------------------------------------------------------

pub(crate) async fn get_tenant<C: Conn>(c: &mut C, id: &str) -> Result<Option<Tenant>> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
    one(c, &sql, vec![Text(id)])
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(tenant_from_row)
        .transpose()
}

pub(crate) async fn create_tenant<C: Conn>(
    c: &mut C,
    t: &Tenant,
    audit: &AuditEvent,
) -> Result<()> {
    c.exec(
        "INSERT INTO tenants (id, display_name, suspended, created_at) VALUES ($1, $2, $3, $4)",
        vec![
            Text(&t.id),
            Text(&t.display_name),
            Flag(t.suspended),
            Int(ts(t.created_at)),
        ],
    )
    .await
    .map_err(|e| conflict_or_unavailable(e, || format!("tenant {:?} already exists", t.id)))?;
    insert_audit(c, audit).await?;
    insert_change(c, &t.id, ChangeKind::TenantCreated).await
}

/// `NotFound` for an unknown tenant; otherwise the updated tenant.
pub(crate) async fn set_tenant_suspended<C: Conn>(
    c: &mut C,
    id: &str,
    suspended: bool,
    audit: &AuditEvent,
) -> Result<Tenant> {
    let sql = format!("UPDATE tenants SET suspended = $1 WHERE id = $2 RETURNING {TENANT_COLUMNS}");
    let row = one(c, &sql, vec![Flag(suspended), Text(id)])
        .await
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::NotFound(format!("tenant {id:?}")))?;
    let tenant = tenant_from_row(&row)?;
    insert_audit(c, audit).await?;
    let kind = if suspended {
        ChangeKind::TenantSuspended
    } else {
        ChangeKind::TenantResumed
    };
    insert_change(c, id, kind).await?;
    Ok(tenant)
}

pub(crate) async fn set_cutoff<C: Conn>(c: &mut C, cut: &Cutoff, audit: &AuditEvent) -> Result<()> {
    // '' stands for "the whole tenant": a NULL in a primary key would not conflict with itself,
    // so ON CONFLICT could never merge two tenant-wide cutoffs.
    let sub = cut.sub.as_deref().unwrap_or("");
    // Max wins, for both columns: a late-arriving older cutoff (a retry, a clock behind) must
    // never re-admit tokens a newer one rejects, nor shorten how long it is kept. RETURNING
    // gives the stored maximum, which the change row carries: a node applying it gets the value
    // the store holds, not this (possibly older) request's.
    let row = one(
        c,
        "INSERT INTO cutoffs (tenant, sub, not_before_iat, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant, sub) DO UPDATE SET \
           not_before_iat = CASE WHEN excluded.not_before_iat > cutoffs.not_before_iat \
                            THEN excluded.not_before_iat ELSE cutoffs.not_before_iat END, \
           expires_at = CASE WHEN excluded.expires_at > cutoffs.expires_at \
                        THEN excluded.expires_at ELSE cutoffs.expires_at END \
         RETURNING not_before_iat",
        vec![
            Text(&cut.tenant),
            Text(sub),
            Int(cut.not_before_iat),
            Int(ts(cut.expires_at)),
        ],
    )
    .await
    .map_err(|e| missing_tenant_or_unavailable(e, &cut.tenant))?
    .ok_or_else(|| Unavailable::new("an upsert returned no row"))?;
    let stored = row.int_at(0)?;
    insert_audit(c, audit).await?;
    let kind = match &cut.sub {
        Some(sub) => ChangeKind::SubjectCutoff {
            sub: sub.clone(),
            not_before_iat: stored,
        },
        None => ChangeKind::TenantCutoff {
            not_before_iat: stored,
        },
    };
    insert_change(c, &cut.tenant, kind).await
}

// ---- API keys ---------------------------------------------------------------------------------

pub(crate) async fn insert_api_key<C: Conn>(
    c: &mut C,
    k: &ApiKeyRecord,
    audit: &AuditEvent,
) -> Result<()> {
    let scopes = scopes_to_text(&k.scopes);
    c.exec(
        "INSERT INTO api_keys (id, tenant, name, scopes, key_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            Text(&k.id),
            OptText(k.tenant.as_deref()),
            Text(&k.name),
            Text(&scopes),
            Bytes(k.key_hash.as_slice()),
            Int(ts(k.created_at)),
        ],
    )
    .await
    .map_err(|e| api_key_insert_error(e, k.tenant.as_deref()))?;
    insert_audit(c, audit).await?;
    let tenant = k.tenant.as_deref().unwrap_or("");
    let id = k.id.clone();
    insert_change(c, tenant, ChangeKind::ApiKeyInserted { id }).await
}

/// The API key whose `col` (`id` or `key_hash`, ours, never input) is `value`.
pub(crate) async fn api_key_by<C: Conn>(
    c: &mut C,
    col: &str,
    value: Arg<'_>,
) -> Result<Option<ApiKeyRecord>> {
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE {col} = $1");
    one(c, &sql, vec![value])
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(api_key_from_row)
        .transpose()
}

/// `NotFound` when no key of that id belongs to that tenant.
pub(crate) async fn delete_api_key<C: Conn>(
    c: &mut C,
    tenant: &str,
    id: &str,
    audit: &AuditEvent,
) -> Result<()> {
    let deleted = c
        .exec(
            "DELETE FROM api_keys WHERE tenant = $1 AND id = $2",
            vec![Text(tenant), Text(id)],
        )
        .await
        .map_err(unavailable)?;
    if deleted == 0 {
        return Err(StoreError::NotFound(format!(
            "API key {id:?} in tenant {tenant:?}"
        )));
    }
    insert_audit(c, audit).await?;
    let id = id.to_owned();
    insert_change(c, tenant, ChangeKind::ApiKeyDeleted { id }).await
}

pub(crate) async fn has_admin_key<C: Conn>(c: &mut C) -> Result<bool> {
    let row = one(
        c,
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant IS NULL)",
        vec![],
    )
    .await
    .map_err(unavailable)?
    .ok_or_else(|| Unavailable::new("EXISTS returned no row"))?;
    row.flag_at(0)
}

// ---- signing keys -----------------------------------------------------------------------------

/// Inserts `k`; with `retire_others_until`, first retires the tenant's other active keys of the
/// same alg and audience binding (rotation). Returns the retired keys.
pub(crate) async fn insert_signing_key<C: Conn>(
    c: &mut C,
    k: &SigningKeyRecord,
    retire_others_until: Option<OffsetDateTime>,
    audit: &AuditEvent,
) -> Result<Vec<SigningKeyRecord>> {
    let mut retired = Vec::new();
    if let Some(until) = retire_others_until {
        // IS NOT DISTINCT FROM: null-safe equality, so a key bound to no audience is rotated
        // together with the other unbound keys only.
        let sql = format!(
            "UPDATE signing_keys SET status = 'retired', retain_until = $1 \
             WHERE tenant = $2 AND alg = $3 AND status = 'active' \
               AND audience IS NOT DISTINCT FROM $4 \
             RETURNING {SIGNING_KEY_COLUMNS}"
        );
        let args = vec![
            Int(ts(until)),
            Text(&k.tenant),
            Text(k.alg.as_str()),
            OptText(k.audience.as_deref()),
        ];
        retired = c
            .rows(&sql, args)
            .await
            .map_err(unavailable)?
            .iter()
            .map(signing_key_from_row)
            .collect::<Result<Vec<_>>>()?;
    }
    let jwk = k.public_jwk.as_ref().map(|j| j.to_string());
    let sql = format!(
        "INSERT INTO signing_keys ({SIGNING_KEY_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    );
    let args = vec![
        Text(&k.tenant),
        Text(&k.kid),
        Text(k.alg.as_str()),
        Text(k.status.as_str()),
        OptText(k.audience.as_deref()),
        Int(ts(k.created_at)),
        OptInt(k.retain_until.map(ts)),
        OptInt(k.revoked_at.map(ts)),
        OptText(k.revoke_reason.as_deref()),
        Bytes(&k.encrypted_private),
        OptText(jwk.as_deref()),
    ];
    c.exec(&sql, args)
        .await
        .map_err(|e| signing_key_insert_error(e, k))?;
    insert_audit(c, audit).await?;
    for r in &retired {
        let kid = r.kid.clone();
        insert_change(c, &k.tenant, ChangeKind::SigningKeyRetired { kid }).await?;
    }
    let kid = k.kid.clone();
    insert_change(c, &k.tenant, ChangeKind::SigningKeyInserted { kid }).await?;
    Ok(retired)
}

pub(crate) async fn list_signing_keys<C: Conn>(
    c: &mut C,
    tenant: &str,
) -> Result<Vec<SigningKeyRecord>> {
    let sql = format!(
        "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys WHERE tenant = $1 \
         ORDER BY created_at DESC, kid DESC"
    );
    c.rows(&sql, vec![Text(tenant)])
        .await
        .map_err(unavailable)?
        .iter()
        .map(signing_key_from_row)
        .collect()
}

/// Marks the key revoked; returns it and whether anything changed. Only a key not yet revoked
/// changes; a repeat reads the record back unchanged and, like a repeated revocation, writes no
/// audit event or change. `NotFound` for an unknown kid of that tenant.
pub(crate) async fn revoke_signing_key<C: Conn>(
    c: &mut C,
    tenant: &str,
    kid: &str,
    reason: Option<&str>,
    audit: &AuditEvent,
) -> Result<(SigningKeyRecord, bool)> {
    let sql = format!(
        "UPDATE signing_keys SET status = 'revoked', revoked_at = $1, revoke_reason = $2 \
         WHERE tenant = $3 AND kid = $4 AND status <> 'revoked' RETURNING {SIGNING_KEY_COLUMNS}"
    );
    let args = vec![Int(now_ts()), OptText(reason), Text(tenant), Text(kid)];
    if let Some(row) = one(c, &sql, args).await.map_err(unavailable)? {
        let rec = signing_key_from_row(&row)?;
        insert_audit(c, audit).await?;
        let kid = kid.to_owned();
        insert_change(c, tenant, ChangeKind::SigningKeyRevoked { kid }).await?;
        return Ok((rec, true));
    }
    let sql =
        format!("SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys WHERE tenant = $1 AND kid = $2");
    let row = one(c, &sql, vec![Text(tenant), Text(kid)])
        .await
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::NotFound(format!("key {kid:?} in tenant {tenant:?}")))?;
    Ok((signing_key_from_row(&row)?, false))
}

// ---- revocations ------------------------------------------------------------------------------

pub(crate) async fn select_revocation<C: Conn>(
    c: &mut C,
    tenant: &str,
    jti: &str,
) -> Result<Option<Revocation>> {
    let sql =
        format!("SELECT {REVOCATION_COLUMNS} FROM revocations WHERE tenant = $1 AND jti = $2");
    one(c, &sql, vec![Text(tenant), Text(jti)])
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(revocation_from_row)
        .transpose()
}

/// Inserts one revocation (idempotently) with its audit event and change row. A repeat returns
/// the stored original with `created: false` and writes nothing, unless it is permanent and the
/// original a suspension: then the suspension becomes permanent ([`make_permanent`]).
pub(crate) async fn insert_revocation<C: Conn>(
    c: &mut C,
    rec: &Revocation,
    audit: &AuditEvent,
) -> Result<RevokeOutcome> {
    let metadata = rec.metadata.to_string();
    let sql = format!(
        "INSERT INTO revocations ({REVOCATION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant, jti) DO NOTHING"
    );
    let args = vec![
        Text(&rec.tenant),
        Text(&rec.jti),
        OptText(rec.sub.as_deref()),
        Int(ts(rec.expires_at)),
        Int(ts(rec.revoked_at)),
        OptText(rec.reason.as_deref()),
        Text(&rec.revoked_by),
        Text(&metadata),
        OptInt(rec.until.map(ts)),
    ];
    let inserted = c
        .exec(&sql, args)
        .await
        .map_err(|e| missing_tenant_or_unavailable(e, &rec.tenant))?;
    if inserted == 1 {
        insert_audit(c, audit).await?;
        let kind = ChangeKind::Revoked {
            jti: rec.jti.clone(),
            until: rec.until.map(ts),
        };
        insert_change(c, &rec.tenant, kind).await?;
        return Ok(RevokeOutcome {
            record: as_stored(rec),
            created: true,
            made_permanent: false,
        });
    }
    repeated_revocation(c, rec, audit).await
}

/// The answer to a revocation of a jti already in the ledger: the original, unchanged, read
/// inside the same transaction, so it is the row that made the insert a no-op (in PostgreSQL's
/// READ COMMITTED, this new statement sees the concurrent insert ON CONFLICT waited for); or, for
/// a permanent revocation of a suspended jti, the record made permanent.
pub(crate) async fn repeated_revocation<C: Conn>(
    c: &mut C,
    rec: &Revocation,
    audit: &AuditEvent,
) -> Result<RevokeOutcome> {
    if rec.until.is_none()
        && let Some(record) = make_permanent(c, rec, audit).await?
    {
        return Ok(RevokeOutcome {
            record,
            created: false,
            made_permanent: true,
        });
    }
    let original = select_revocation(c, &rec.tenant, &rec.jti)
        .await?
        .ok_or_else(vanished)?;
    Ok(RevokeOutcome {
        record: original,
        created: false,
        made_permanent: false,
    })
}

/// The permanent revocations among `recs` whose jti is suspended right now (in this
/// transaction): the repeats of a batch that [`make_permanent`] must handle. One query per
/// tenant and 500 jtis, so that a batch of repeats does not cost a statement per item.
pub(crate) async fn suspended_among<'r, C: Conn>(
    c: &mut C,
    recs: impl Iterator<Item = &'r Revocation>,
) -> Result<Vec<&'r Revocation>> {
    let mut by_tenant: std::collections::BTreeMap<&str, Vec<&Revocation>> = Default::default();
    for r in recs.filter(|r| r.until.is_none()) {
        by_tenant.entry(r.tenant.as_str()).or_default().push(r);
    }
    let mut out = Vec::new();
    for (tenant, recs) in by_tenant {
        for chunk in recs.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT jti FROM revocations WHERE tenant = $1 AND until IS NOT NULL \
                 AND jti IN ({})",
                marks.join(", ")
            );
            let mut args = vec![Text(tenant)];
            args.extend(chunk.iter().map(|r| Text(r.jti.as_str())));
            let rows = c.rows(&sql, args).await.map_err(unavailable)?;
            let suspended: std::collections::HashSet<String> =
                rows.iter().map(|r| r.text_at(0)).collect::<Result<_>>()?;
            out.extend(chunk.iter().filter(|r| suspended.contains(&r.jti)));
        }
    }
    Ok(out)
}

/// Turns a temporary suspension of `rec`'s jti into the permanent revocation `rec`: a later
/// permanent revocation supersedes a suspension (otherwise the token would come back to life
/// when `until` passes). The record takes the new revocation's time, reason, author and
/// metadata, and keeps the later of the two expiries. Audited as `revocation.make_permanent`,
/// announced as a new permanent revocation. `None` when the jti is not suspended (permanent
/// already, or absent): nothing is written.
pub(crate) async fn make_permanent<C: Conn>(
    c: &mut C,
    rec: &Revocation,
    audit: &AuditEvent,
) -> Result<Option<Revocation>> {
    let metadata = rec.metadata.to_string();
    let sql = format!(
        "UPDATE revocations SET until = NULL, revoked_at = $3, reason = $4, revoked_by = $5, \
         metadata = $6, expires_at = CASE WHEN expires_at < $7 THEN $7 ELSE expires_at END \
         WHERE tenant = $1 AND jti = $2 AND until IS NOT NULL RETURNING {REVOCATION_COLUMNS}"
    );
    let args = vec![
        Text(&rec.tenant),
        Text(&rec.jti),
        Int(ts(rec.revoked_at)),
        OptText(rec.reason.as_deref()),
        Text(&rec.revoked_by),
        Text(&metadata),
        Int(ts(rec.expires_at)),
    ];
    let Some(row) = one(c, &sql, args).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let record = revocation_from_row(&row)?;
    let mut event = audit.clone();
    event.action = "revocation.make_permanent".into();
    insert_audit(c, &event).await?;
    let kind = ChangeKind::Revoked {
        jti: rec.jti.clone(),
        until: None,
    };
    insert_change(c, &rec.tenant, kind).await?;
    Ok(Some(record))
}

/// Deletes a temporary suspension; permanent records are left alone. The caller commits only
/// on `Lifted` (otherwise nothing was written).
pub(crate) async fn lift_suspension<C: Conn>(
    c: &mut C,
    tenant: &str,
    jti: &str,
    audit: &AuditEvent,
) -> Result<LiftOutcome> {
    let sql = format!(
        "DELETE FROM revocations WHERE tenant = $1 AND jti = $2 AND until IS NOT NULL \
         RETURNING {REVOCATION_COLUMNS}"
    );
    let Some(row) = one(c, &sql, vec![Text(tenant), Text(jti)])
        .await
        .map_err(unavailable)?
    else {
        return Ok(match select_revocation(c, tenant, jti).await? {
            None => LiftOutcome::NotFound,
            Some(rec) => LiftOutcome::Permanent(rec),
        });
    };
    let rec = revocation_from_row(&row)?;
    insert_audit(c, audit).await?;
    let jti = jti.to_owned();
    insert_change(c, tenant, ChangeKind::Lifted { jti }).await?;
    Ok(LiftOutcome::Lifted(rec))
}

/// Call inside one read transaction (snapshot), so that the counts agree with each other.
pub(crate) async fn revocation_stats<C: Conn>(
    c: &mut C,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<RevocationStats> {
    let now = ts(now);
    let totals = one(
        c,
        "SELECT \
           coalesce(sum(CASE WHEN until IS NULL THEN 1 ELSE 0 END), 0), \
           coalesce(sum(CASE WHEN until > $1 THEN 1 ELSE 0 END), 0), \
           coalesce(sum(CASE WHEN revoked_at > $2 THEN 1 ELSE 0 END), 0) \
         FROM revocations WHERE tenant = $3",
        vec![Int(now), Int(now - 86_400), Text(tenant)],
    )
    .await
    .map_err(unavailable)?
    .ok_or_else(|| Unavailable::new("an aggregate returned no row"))?;
    let reasons = c
        .rows(
            "SELECT coalesce(reason, 'unspecified'), count(*) FROM revocations \
             WHERE tenant = $1 GROUP BY coalesce(reason, 'unspecified')",
            vec![Text(tenant)],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((r.text_at(0)?, r.int_at(1)?)))
        .collect::<Result<Vec<_>>>()?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(RevocationStats {
        revoked: count(totals.int_at(0)?),
        suspended: count(totals.int_at(1)?),
        by_reason: reasons.into_iter().map(|(r, n)| (r, count(n))).collect(),
        last_24h: count(totals.int_at(2)?),
    })
}

// ---- purge ------------------------------------------------------------------------------------

/// How a backend writes "delete at most `$2` rows of `table` matching `condition` (on `$1`), then
/// `returning`": neither dialect has `DELETE … LIMIT`, and each limits through its own row
/// address (SQLite's rowid, PostgreSQL's ctid).
pub(crate) type BoundedDelete = fn(table: &str, condition: &str, returning: &str) -> String;

/// Deletes at most `limit` rows of `table` matching `condition` (on `$1` = `value`); returns how
/// many.
async fn delete_bounded<C: Conn>(
    c: &mut C,
    bounded: BoundedDelete,
    (table, condition): (&str, &str),
    value: i64,
    limit: i64,
) -> Result<u64> {
    let sql = bounded(table, condition, "");
    c.exec(&sql, vec![Int(value), Int(limit)])
        .await
        .map_err(unavailable)
}

/// Runs a bounded delete (`$1` the time bound, `$2` the batch) that returns two text columns:
/// the (tenant, key) pairs it deleted, for the caller's change rows.
async fn deleted_pairs<C: Conn>(
    c: &mut C,
    sql: &str,
    before: i64,
    limit: i64,
) -> Result<Vec<(String, String)>> {
    c.rows(sql, vec![Int(before), Int(limit)])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((r.text_at(0)?, r.text_at(1)?)))
        .collect()
}

/// What one pass of `purge_expired` deleted: the counts, and the keys of the rows other nodes
/// hold in memory, for the caller's change rows.
pub(crate) struct Purged {
    pub(crate) counts: PurgeCounts,
    /// (tenant, jti) of the revocations deleted.
    pub(crate) jtis: Vec<(String, String)>,
    /// (tenant, sub) of the cutoffs deleted ('' for a tenant-wide one).
    pub(crate) cutoffs: Vec<(String, String)>,
    /// (tenant, list, idx) of the status list entries deleted.
    pub(crate) status_entries: Vec<(String, String, i64)>,
}

/// One bounded pass of `Store::purge_batch` over the rows it deletes, at most `batch` of each
/// kind, found through the expiry indexes. Returns the counts and the keys of every revocation,
/// cutoff and status list entry deleted: the caller appends their purge changes (in bulk, its
/// own way) in the same transaction. The caller holds whatever keeps other writers off the
/// victims (SQLite's write lock, PostgreSQL's whole-store lock).
pub(crate) async fn purge_expired<C: Conn>(
    c: &mut C,
    bounded: BoundedDelete,
    before: OffsetDateTime,
    batch: u32,
) -> Result<Purged> {
    let before = ts(before);
    let limit = i64::from(batch.max(1));
    // Old change rows go first, so that this pass never deletes the `revocation.purge` rows the
    // caller appends afterwards (with a `before` ahead of the clock it otherwise could).
    let retention_start = before.saturating_sub(CHANGE_RETENTION_SECS);
    let changes =
        delete_bounded(c, bounded, ("changes", "at < $1"), retention_start, limit).await?;
    // A suspension whose `until` has passed no longer rejects anything, whatever its
    // `expires_at`: it goes too.
    let sql = bounded(
        "revocations",
        "expires_at < $1 OR (until IS NOT NULL AND until < $1)",
        "RETURNING tenant, jti",
    );
    let jtis = deleted_pairs(c, &sql, before, limit).await?;
    // Tenant-wide and subject cutoffs alike: past `expires_at` every token they could reject has
    // expired on its own.
    let sql = bounded("cutoffs", "expires_at < $1", "RETURNING tenant, sub");
    let purged_cutoffs = deleted_pairs(c, &sql, before, limit).await?;
    let cutoffs = purged_cutoffs.len() as u64;
    // Retired keys past retention verify nothing any more. Active keys are never purged. Revoked
    // keys are kept: their row is the record that (and when, and why) the key was revoked, they
    // are few, and dropping one would turn `key_revoked` into `unknown_key`.
    let retired = ("signing_keys", "status = 'retired' AND retain_until < $1");
    let signing_keys = delete_bounded(c, bounded, retired, before, limit).await?;
    // A status list entry matters until its token has expired (the margin is in `before`);
    // then its index is free for another token.
    let status_entries = status_lists::purge_status_entries(c, bounded, before, limit).await?;
    let counts = PurgeCounts {
        revocations: jtis.len() as u64,
        cutoffs,
        signing_keys,
        status_entries: status_entries.len() as u64,
        changes,
    };
    Ok(Purged {
        counts,
        jtis,
        cutoffs: purged_cutoffs,
        status_entries,
    })
}

// ---- start-up ---------------------------------------------------------------------------------

/// Everything `load_state` returns but the cursor (the backend knows where its snapshot is).
/// Call inside one read transaction, so that the tables agree with each other and the cursor.
pub(crate) async fn read_state<C: Conn>(c: &mut C, now: OffsetDateTime) -> Result<StateSnapshot> {
    let tenants = c
        .rows(
            "SELECT t.id, t.display_name, t.suspended, t.created_at, \
                    c.not_before_iat AS cutoff \
             FROM tenants t LEFT JOIN cutoffs c ON c.tenant = t.id AND c.sub = ''",
            vec![],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| Ok((tenant_from_row(r)?, r.opt_int("cutoff")?)))
        .collect::<Result<Vec<_>>>()?;
    let subject_cutoffs = c
        .rows(
            "SELECT tenant, sub, not_before_iat, expires_at FROM cutoffs WHERE sub <> ''",
            vec![],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| {
            Ok(Cutoff {
                tenant: r.text_at(0)?,
                sub: Some(r.text_at(1)?),
                not_before_iat: r.int_at(2)?,
                expires_at: crate::rows::from_ts(r.int_at(3)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Every permanent row still in the ledger is loaded, even one whose `expires_at` has
    // passed: `expires_at` may come from a caller (a bare jti), and an early one must not
    // re-validate a live token because the node restarted. Such rows leave the index when the
    // purge (with its safety margin) deletes them, exactly as on a node that never restarted.
    // Suspensions whose `until` has passed reject nothing and are skipped. Columns by position
    // rather than by name: this runs over millions of rows at start-up.
    let revocations = c
        .rows(
            "SELECT tenant, jti, until FROM revocations WHERE until IS NULL OR until > $1",
            vec![Int(ts(now))],
        )
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| {
            Ok(IndexedRevocation {
                tenant: r.text_at(0)?,
                jti: r.text_at(1)?,
                until: r.opt_int_at(2)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sql = format!("SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys");
    let signing_keys = c
        .rows(&sql, vec![])
        .await
        .map_err(unavailable)?
        .iter()
        .map(signing_key_from_row)
        .collect::<Result<Vec<_>>>()?;
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys");
    let api_keys = c
        .rows(&sql, vec![])
        .await
        .map_err(unavailable)?
        .iter()
        .map(api_key_from_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(StateSnapshot {
        tenants,
        subject_cutoffs,
        revocations,
        signing_keys,
        api_keys,
        status_lists: status_lists::status_lists(c, None).await?,
        status_entries: status_lists::all_status_entries(c).await?,
        status_list_tenants: status_lists::status_list_tenants(c).await?,
        cursor: Default::default(),
        included_after: Vec::new(),
    })
}

/// One tenant's part of what `read_state` and `read_sessions` read (a revocation stream's
/// snapshot); `None` for an unknown tenant. Cursor left default: the caller reads it in the same
/// snapshot.
pub(crate) async fn read_tenant_state<C: Conn>(
    c: &mut C,
    tenant: &str,
    now: OffsetDateTime,
) -> Result<Option<TenantRevocationState>> {
    let sql = format!(
        "SELECT {TENANT_COLUMNS}, (SELECT not_before_iat FROM cutoffs \
           WHERE cutoffs.tenant = tenants.id AND cutoffs.sub = '') AS cutoff \
         FROM tenants WHERE id = $1"
    );
    let rows = c
        .rows(&sql, vec![Text(tenant)])
        .await
        .map_err(unavailable)?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let mut state = TenantRevocationState {
        suspended: tenant_from_row(row)?.suspended,
        tenant_cutoff: row.opt_int("cutoff")?,
        ..Default::default()
    };
    let pairs = |rows: Vec<C::Row>| -> Result<Vec<(String, i64)>> {
        rows.iter()
            .map(|r| Ok((r.text_at(0)?, r.int_at(1)?)))
            .collect()
    };
    let texts =
        |rows: Vec<C::Row>| -> Result<Vec<String>> { rows.iter().map(|r| r.text_at(0)).collect() };
    let q = "SELECT sub, not_before_iat FROM cutoffs WHERE tenant = $1 AND sub <> ''";
    state.subject_cutoffs = pairs(c.rows(q, vec![Text(tenant)]).await.map_err(unavailable)?)?;
    // As `read_state`: every permanent row, and the suspensions still running.
    let q =
        "SELECT jti, until FROM revocations WHERE tenant = $1 AND (until IS NULL OR until > $2)";
    let rows = c
        .rows(q, vec![Text(tenant), Int(ts(now))])
        .await
        .map_err(unavailable)?;
    state.revocations = rows
        .iter()
        .map(|r| Ok((r.text_at(0)?, r.opt_int_at(1)?)))
        .collect::<Result<_>>()?;
    let q = "SELECT kid FROM signing_keys WHERE tenant = $1 AND status = 'revoked'";
    state.revoked_keys = texts(c.rows(q, vec![Text(tenant)]).await.map_err(unavailable)?)?;
    let q = "SELECT id, idle_expires_at FROM sessions WHERE tenant = $1 AND revoked_at IS NULL";
    state.sessions = pairs(c.rows(q, vec![Text(tenant)]).await.map_err(unavailable)?)?;
    let q = "SELECT id FROM sessions WHERE tenant = $1 AND revoked_at IS NOT NULL";
    state.revoked_sessions = texts(c.rows(q, vec![Text(tenant)]).await.map_err(unavailable)?)?;
    let q = "SELECT id FROM refresh_families WHERE tenant = $1 AND revoked_at IS NOT NULL";
    state.revoked_families = texts(c.rows(q, vec![Text(tenant)]).await.map_err(unavailable)?)?;
    Ok(Some(state))
}

// ---- master key rotation ---------------------------------------------------------------------

/// Table, id column and blob column of each kind of sealed blob.
fn sealed_columns(kind: SealedKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        SealedKind::SigningKey => ("signing_keys", "kid", "encrypted_private"),
        SealedKind::SessionKey => ("session_keys", "kid", "encrypted_secret"),
        SealedKind::PreloginVerifier => ("prelogin", "id", "encrypted_pkce_verifier"),
    }
}

pub(crate) async fn sealed_page<C: Conn>(
    c: &mut C,
    kind: SealedKind,
    after: Option<(&str, &str)>,
    limit: u32,
) -> Result<Vec<SealedBlob>> {
    let (table, id, blob) = sealed_columns(kind);
    // Tenant ids are never empty, so ("", "") is before every row.
    let (t, i) = after.unwrap_or(("", ""));
    let sql = format!(
        "SELECT tenant, {id} AS id, {blob} AS sealed FROM {table} \
         WHERE tenant > $1 OR (tenant = $1 AND {id} > $2) ORDER BY tenant, {id} LIMIT $3"
    );
    let rows = c
        .rows(&sql, vec![Text(t), Text(i), Int(i64::from(limit.max(1)))])
        .await
        .map_err(unavailable)?;
    rows.iter()
        .map(|r| {
            Ok(SealedBlob {
                tenant: r.text("tenant")?,
                id: r.text("id")?,
                sealed: r.bytes("sealed")?,
            })
        })
        .collect()
}

pub(crate) async fn reseal<C: Conn>(
    c: &mut C,
    kind: SealedKind,
    blobs: &[Resealed],
) -> Result<u64> {
    let (table, id, blob) = sealed_columns(kind);
    let sql =
        format!("UPDATE {table} SET {blob} = $1 WHERE tenant = $2 AND {id} = $3 AND {blob} = $4");
    let mut n = 0;
    for b in blobs {
        n += c
            .exec(
                &sql,
                vec![Bytes(&b.new), Text(&b.tenant), Text(&b.id), Bytes(&b.old)],
            )
            .await
            .map_err(unavailable)?;
    }
    Ok(n)
}
