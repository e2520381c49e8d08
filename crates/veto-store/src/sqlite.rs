//! The embedded store: SQLite in WAL mode with `synchronous=FULL`, so a committed revocation
//! survives power loss, not only a process crash (design.md: "acknowledged only after it is
//! durable").
//!
//! Two pools: one connection for writes, several for reads. SQLite allows one writer at a time
//! anyway; funnelling writes through one connection makes them queue in the pool instead of
//! racing for the file lock (where a deferred transaction that upgrades to a write can fail with
//! SQLITE_BUSY without waiting). WAL lets the readers proceed while the writer commits.
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;
use veto_core::apikey::{ApiKeyRecord, Scope};
use veto_core::audit::AuditEvent;
use veto_core::keys::{KeyStatus, SigningKeyRecord};
use veto_core::revocation::{
    Cutoff, Revocation, RevocationFilter, RevocationStats, RevocationStatus,
};
use veto_core::tenant::Tenant;

use crate::cursor::Cursor;
use crate::{
    IndexedRevocation, LiftOutcome, Page, PageRequest, PurgeCounts, Result, RevokeOutcome,
    StateSnapshot, Store, StoreError,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ts(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_ts(secs: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| StoreError::Unavailable(format!("stored time {secs} is out of range")))
}

fn opt_from_ts(secs: Option<i64>) -> Result<Option<OffsetDateTime>> {
    secs.map(from_ts).transpose()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`. Call `migrate` before use.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(unavailable)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await
            .map_err(unavailable)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(false))
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore { writer, reader })
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer.begin().await.map_err(unavailable)
    }
}

async fn insert_audit(tx: &mut Transaction<'static, Sqlite>, e: &AuditEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, tenant, at, actor, action, target, reason, metadata) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.id)
    .bind(&e.tenant)
    .bind(ts(e.at))
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.reason)
    .bind(e.metadata.to_string())
    .execute(&mut **tx)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn insert_change(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: &str,
    kind: &str,
    key: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO changes (tenant, kind, key, at) VALUES (?, ?, ?, ?)")
        .bind(tenant)
        .bind(kind)
        .bind(key)
        .bind(ts(veto_core::timeutil::now()))
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

fn tenant_from_row(r: &SqliteRow) -> Result<Tenant> {
    Ok(Tenant {
        id: r.try_get("id").map_err(unavailable)?,
        display_name: r.try_get("display_name").map_err(unavailable)?,
        suspended: r.try_get::<i64, _>("suspended").map_err(unavailable)? != 0,
        created_at: from_ts(r.try_get("created_at").map_err(unavailable)?)?,
    })
}

fn revocation_from_row(r: &SqliteRow) -> Result<Revocation> {
    let until = opt_from_ts(r.try_get("until").map_err(unavailable)?)?;
    let metadata: String = r.try_get("metadata").map_err(unavailable)?;
    Ok(Revocation {
        jti: r.try_get("jti").map_err(unavailable)?,
        tenant: r.try_get("tenant").map_err(unavailable)?,
        sub: r.try_get("sub").map_err(unavailable)?,
        expires_at: from_ts(r.try_get("expires_at").map_err(unavailable)?)?,
        revoked_at: from_ts(r.try_get("revoked_at").map_err(unavailable)?)?,
        reason: r.try_get("reason").map_err(unavailable)?,
        revoked_by: r.try_get("revoked_by").map_err(unavailable)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
        until,
        status: RevocationStatus::of(until),
    })
}

fn api_key_from_row(r: &SqliteRow) -> Result<ApiKeyRecord> {
    let scopes: String = r.try_get("scopes").map_err(unavailable)?;
    let hash: Vec<u8> = r.try_get("key_hash").map_err(unavailable)?;
    Ok(ApiKeyRecord {
        id: r.try_get("id").map_err(unavailable)?,
        tenant: r.try_get("tenant").map_err(unavailable)?,
        name: r.try_get("name").map_err(unavailable)?,
        // Unknown scope names (from a newer version) are dropped: a key never gains a scope
        // it was not given.
        scopes: scopes.split(' ').filter_map(Scope::parse).collect(),
        key_hash: hash.as_slice().try_into().map_err(|_| {
            StoreError::Unavailable("stored API key hash has the wrong length".into())
        })?,
        created_at: from_ts(r.try_get("created_at").map_err(unavailable)?)?,
    })
}

fn signing_key_from_row(r: &SqliteRow) -> Result<SigningKeyRecord> {
    let alg: String = r.try_get("alg").map_err(unavailable)?;
    let status: String = r.try_get("status").map_err(unavailable)?;
    let jwk: Option<String> = r.try_get("public_jwk").map_err(unavailable)?;
    Ok(SigningKeyRecord {
        kid: r.try_get("kid").map_err(unavailable)?,
        tenant: r.try_get("tenant").map_err(unavailable)?,
        alg: alg
            .parse()
            .map_err(|_| StoreError::Unavailable(format!("stored key has unknown alg {alg:?}")))?,
        status: KeyStatus::parse(&status).ok_or_else(|| {
            StoreError::Unavailable(format!("stored key has unknown status {status:?}"))
        })?,
        audience: r.try_get("audience").map_err(unavailable)?,
        created_at: from_ts(r.try_get("created_at").map_err(unavailable)?)?,
        retain_until: opt_from_ts(r.try_get("retain_until").map_err(unavailable)?)?,
        revoked_at: opt_from_ts(r.try_get("revoked_at").map_err(unavailable)?)?,
        revoke_reason: r.try_get("revoke_reason").map_err(unavailable)?,
        encrypted_private: r.try_get("encrypted_private").map_err(unavailable)?,
        public_jwk: jwk.and_then(|j| serde_json::from_str(&j).ok()),
    })
}

fn audit_from_row(r: &SqliteRow) -> Result<AuditEvent> {
    let metadata: String = r.try_get("metadata").map_err(unavailable)?;
    Ok(AuditEvent {
        id: r.try_get("id").map_err(unavailable)?,
        tenant: r.try_get("tenant").map_err(unavailable)?,
        at: from_ts(r.try_get("at").map_err(unavailable)?)?,
        actor: r.try_get("actor").map_err(unavailable)?,
        action: r.try_get("action").map_err(unavailable)?,
        target: r.try_get("target").map_err(unavailable)?,
        reason: r.try_get("reason").map_err(unavailable)?,
        metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
    })
}

async fn insert_revocation_row(
    tx: &mut Transaction<'static, Sqlite>,
    rec: &Revocation,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO revocations (tenant, jti, sub, expires_at, revoked_at, reason, revoked_by, metadata, until) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, jti) DO NOTHING",
    )
    .bind(&rec.tenant)
    .bind(&rec.jti)
    .bind(&rec.sub)
    .bind(ts(rec.expires_at))
    .bind(ts(rec.revoked_at))
    .bind(&rec.reason)
    .bind(&rec.revoked_by)
    .bind(rec.metadata.to_string())
    .bind(rec.until.map(ts))
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if matches!(&e, sqlx::Error::Database(d) if d.is_foreign_key_violation()) {
            StoreError::NotFound(format!("tenant {:?}", rec.tenant))
        } else {
            unavailable(e)
        }
    })?;
    Ok(done.rows_affected() == 1)
}

/// Builds a keyset page from `limit + 1` fetched rows.
fn page<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|i| cursor_of(i).encode())
    } else {
        None
    };
    Page { items, next_cursor }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn create_tenant(&self, t: &Tenant, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO tenants (id, display_name, suspended, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.display_name)
        .bind(t.suspended as i64)
        .bind(ts(t.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("tenant {:?} already exists", t.id))
            } else {
                unavailable(e)
            }
        })?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>> {
        sqlx::query("SELECT * FROM tenants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
    }

    async fn set_tenant_suspended(
        &self,
        id: &str,
        suspended: bool,
        audit: &AuditEvent,
    ) -> Result<Tenant> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("UPDATE tenants SET suspended = ? WHERE id = ? RETURNING *")
            .bind(suspended as i64)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::NotFound(format!("tenant {id:?}")))?;
        let tenant = tenant_from_row(&row)?;
        insert_audit(&mut tx, audit).await?;
        insert_change(
            &mut tx,
            id,
            if suspended {
                "tenant.suspend"
            } else {
                "tenant.resume"
            },
            id,
        )
        .await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(tenant)
    }

    async fn set_cutoff(&self, c: &Cutoff, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        let sub = c.sub.as_deref().unwrap_or("");
        sqlx::query(
            "INSERT INTO cutoffs (tenant, sub, not_before_iat, expires_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant, sub) DO UPDATE SET \
               not_before_iat = max(not_before_iat, excluded.not_before_iat), \
               expires_at = max(expires_at, excluded.expires_at)",
        )
        .bind(&c.tenant)
        .bind(sub)
        .bind(c.not_before_iat)
        .bind(ts(c.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        insert_audit(&mut tx, audit).await?;
        let kind = if c.sub.is_some() {
            "subject.cutoff"
        } else {
            "tenant.cutoff"
        };
        insert_change(&mut tx, &c.tenant, kind, sub).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn insert_api_key(&self, k: &ApiKeyRecord, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
        sqlx::query("INSERT INTO api_keys (id, tenant, name, scopes, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&k.id)
            .bind(&k.tenant)
            .bind(&k.name)
            .bind(scopes.join(" "))
            .bind(k.key_hash.as_slice())
            .bind(ts(k.created_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("an API key with this secret or id already exists".into())
                } else {
                    unavailable(e)
                }
            })?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn list_api_keys(&self, tenant: &str, p: &PageRequest) -> Result<Page<ApiKeyRecord>> {
        let c = p.cursor.as_deref().map(Cursor::decode).transpose()?;
        let (at, id) = c.map_or((i64::MAX, String::new()), |c| (c.at, c.id));
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE tenant = ? AND (created_at < ? OR (created_at = ? AND id < ?) OR ? = '') \
             ORDER BY created_at DESC, id DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(at)
        .bind(at)
        .bind(&id)
        .bind(&id)
        .bind(i64::from(p.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?;
        let items = rows
            .iter()
            .map(api_key_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, p.limit, |k| {
            Cursor::new(ts(k.created_at), &k.id)
        }))
    }

    async fn delete_api_key(&self, tenant: &str, id: &str, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "API key {id:?} in tenant {tenant:?}"
            )));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn find_api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(hash.as_slice())
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
    }

    async fn has_admin_key(&self) -> Result<bool> {
        let row =
            sqlx::query("SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant IS NULL) AS present")
                .fetch_one(&self.reader)
                .await
                .map_err(unavailable)?;
        Ok(row.try_get::<i64, _>("present").map_err(unavailable)? != 0)
    }

    async fn insert_signing_key(
        &self,
        k: &SigningKeyRecord,
        retire_others_until: Option<OffsetDateTime>,
        audit: &AuditEvent,
    ) -> Result<Vec<SigningKeyRecord>> {
        let mut tx = self.begin().await?;
        let mut retired = Vec::new();
        if let Some(until) = retire_others_until {
            let rows = sqlx::query(
                "UPDATE signing_keys SET status = 'retired', retain_until = ? \
                 WHERE tenant = ? AND alg = ? AND status = 'active' AND audience IS ? RETURNING *",
            )
            .bind(ts(until))
            .bind(&k.tenant)
            .bind(k.alg.as_str())
            .bind(&k.audience)
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
            retired = rows
                .iter()
                .map(signing_key_from_row)
                .collect::<Result<Vec<_>>>()?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (tenant, kid, alg, status, audience, created_at, retain_until, revoked_at, \
             revoke_reason, encrypted_private, public_jwk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&k.tenant)
        .bind(&k.kid)
        .bind(k.alg.as_str())
        .bind(k.status.as_str())
        .bind(&k.audience)
        .bind(ts(k.created_at))
        .bind(k.retain_until.map(ts))
        .bind(k.revoked_at.map(ts))
        .bind(&k.revoke_reason)
        .bind(&k.encrypted_private)
        .bind(k.public_jwk.as_ref().map(|j| j.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("key {:?} already exists", k.kid))
            } else {
                unavailable(e)
            }
        })?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(retired)
    }

    async fn list_signing_keys(&self, tenant: &str) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM signing_keys WHERE tenant = ? ORDER BY created_at DESC, kid DESC",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn revoke_signing_key(
        &self,
        tenant: &str,
        kid: &str,
        reason: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<SigningKeyRecord> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE signing_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, ?), \
             revoke_reason = coalesce(revoke_reason, ?) WHERE tenant = ? AND kid = ? RETURNING *",
        )
        .bind(ts(veto_core::timeutil::now()))
        .bind(reason)
        .bind(tenant)
        .bind(kid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| StoreError::NotFound(format!("key {kid:?} in tenant {tenant:?}")))?;
        let rec = signing_key_from_row(&row)?;
        insert_audit(&mut tx, audit).await?;
        insert_change(&mut tx, tenant, "key.revoke", kid).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(rec)
    }

    async fn insert_revocation(
        &self,
        rec: &Revocation,
        audit: &AuditEvent,
    ) -> Result<RevokeOutcome> {
        let mut tx = self.begin().await?;
        if insert_revocation_row(&mut tx, rec).await? {
            insert_audit(&mut tx, audit).await?;
            insert_change(&mut tx, &rec.tenant, "revocation", &rec.jti).await?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(RevokeOutcome {
                record: rec.clone(),
                created: true,
            });
        }
        let row = sqlx::query("SELECT * FROM revocations WHERE tenant = ? AND jti = ?")
            .bind(&rec.tenant)
            .bind(&rec.jti)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        let original = revocation_from_row(&row)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(RevokeOutcome {
            record: original,
            created: false,
        })
    }

    async fn insert_revocations(
        &self,
        recs: &[(Revocation, AuditEvent)],
    ) -> Result<(u64, u64, Vec<Revocation>)> {
        let mut tx = self.begin().await?;
        let mut created = Vec::new();
        for (rec, audit) in recs {
            if insert_revocation_row(&mut tx, rec).await? {
                insert_audit(&mut tx, audit).await?;
                insert_change(&mut tx, &rec.tenant, "revocation", &rec.jti).await?;
                created.push(rec.clone());
            }
        }
        tx.commit().await.map_err(unavailable)?;
        let n = created.len() as u64;
        Ok((n, recs.len() as u64 - n, created))
    }

    async fn get_revocation(&self, tenant: &str, jti: &str) -> Result<Option<Revocation>> {
        sqlx::query("SELECT * FROM revocations WHERE tenant = ? AND jti = ?")
            .bind(tenant)
            .bind(jti)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(revocation_from_row)
            .transpose()
    }

    async fn list_revocations(
        &self,
        tenant: &str,
        f: &RevocationFilter,
        p: &PageRequest,
    ) -> Result<Page<Revocation>> {
        let c = p.cursor.as_deref().map(Cursor::decode).transpose()?;
        let (at, id) = c.map_or((i64::MAX, String::new()), |c| (c.at, c.id));
        let rows = sqlx::query(
            "SELECT * FROM revocations WHERE tenant = ? \
             AND (? IS NULL OR sub = ?) AND (? IS NULL OR reason = ?) AND (? IS NULL OR revoked_by = ?) \
             AND (revoked_at < ? OR (revoked_at = ? AND jti < ?) OR ? = '') \
             ORDER BY revoked_at DESC, jti DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(&f.sub)
        .bind(&f.sub)
        .bind(&f.reason)
        .bind(&f.reason)
        .bind(&f.revoked_by)
        .bind(&f.revoked_by)
        .bind(at)
        .bind(at)
        .bind(&id)
        .bind(&id)
        .bind(i64::from(p.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?;
        let items = rows
            .iter()
            .map(revocation_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, p.limit, |r| {
            Cursor::new(ts(r.revoked_at), &r.jti)
        }))
    }

    async fn revocation_stats(&self, tenant: &str, now: OffsetDateTime) -> Result<RevocationStats> {
        let now = ts(now);
        let row = sqlx::query(
            "SELECT \
               coalesce(sum(CASE WHEN until IS NULL THEN 1 ELSE 0 END), 0) AS revoked, \
               coalesce(sum(CASE WHEN until > ? THEN 1 ELSE 0 END), 0) AS suspended, \
               coalesce(sum(CASE WHEN revoked_at > ? THEN 1 ELSE 0 END), 0) AS last_24h \
             FROM revocations WHERE tenant = ?",
        )
        .bind(now)
        .bind(now - 86_400)
        .bind(tenant)
        .fetch_one(&self.reader)
        .await
        .map_err(unavailable)?;
        let reasons = sqlx::query(
            "SELECT coalesce(reason, 'unspecified') AS reason, count(*) AS n FROM revocations \
             WHERE tenant = ? GROUP BY 1",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?;
        let mut by_reason = std::collections::BTreeMap::new();
        for r in &reasons {
            let n: i64 = r.try_get("n").map_err(unavailable)?;
            by_reason.insert(r.try_get("reason").map_err(unavailable)?, n.max(0) as u64);
        }
        let get = |c: &str| -> Result<u64> {
            Ok(row.try_get::<i64, _>(c).map_err(unavailable)?.max(0) as u64)
        };
        Ok(RevocationStats {
            revoked: get("revoked")?,
            suspended: get("suspended")?,
            by_reason,
            last_24h: get("last_24h")?,
        })
    }

    async fn lift_suspension(
        &self,
        tenant: &str,
        jti: &str,
        audit: &AuditEvent,
    ) -> Result<LiftOutcome> {
        let mut tx = self.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM revocations WHERE tenant = ? AND jti = ?")
            .bind(tenant)
            .bind(jti)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?
        else {
            return Ok(LiftOutcome::NotFound);
        };
        let rec = revocation_from_row(&row)?;
        if rec.until.is_none() {
            return Ok(LiftOutcome::Permanent(rec));
        }
        sqlx::query("DELETE FROM revocations WHERE tenant = ? AND jti = ?")
            .bind(tenant)
            .bind(jti)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        insert_audit(&mut tx, audit).await?;
        insert_change(&mut tx, tenant, "revocation.lift", jti).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(LiftOutcome::Lifted(rec))
    }

    async fn list_audit(
        &self,
        tenant: &str,
        action: Option<&str>,
        p: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        let c = p.cursor.as_deref().map(Cursor::decode).transpose()?;
        let (at, id) = c.map_or((i64::MAX, String::new()), |c| (c.at, c.id));
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE tenant = ? AND (? IS NULL OR action = ?) \
             AND (at < ? OR (at = ? AND id < ?) OR ? = '') ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(action)
        .bind(action)
        .bind(at)
        .bind(at)
        .bind(&id)
        .bind(&id)
        .bind(i64::from(p.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?;
        let items = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, p.limit, |e| Cursor::new(ts(e.at), &e.id)))
    }

    async fn purge_batch(
        &self,
        before: OffsetDateTime,
        batch: u32,
    ) -> Result<(PurgeCounts, Vec<(String, String)>)> {
        let before = ts(before);
        let limit = i64::from(batch.max(1));
        let mut tx = self.begin().await?;
        // rowid-limited deletes: SQLite has no DELETE … LIMIT by default, and a bounded batch
        // keeps each write transaction (and so the wait of every other writer) short.
        let rows = sqlx::query(
            "DELETE FROM revocations WHERE rowid IN (SELECT rowid FROM revocations \
               WHERE expires_at < ? OR (until IS NOT NULL AND until < ?) LIMIT ?) RETURNING tenant, jti",
        )
        .bind(before)
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut jtis = Vec::with_capacity(rows.len());
        for r in &rows {
            jtis.push((
                r.try_get::<String, _>("tenant").map_err(unavailable)?,
                r.try_get::<String, _>("jti").map_err(unavailable)?,
            ));
        }
        let cutoffs = sqlx::query(
            "DELETE FROM cutoffs WHERE rowid IN (SELECT rowid FROM cutoffs WHERE expires_at < ? LIMIT ?)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        // Retired keys past retention verify nothing any more. Revoked keys are kept: their
        // row is the record that the key was revoked, and they are few.
        let keys = sqlx::query(
            "DELETE FROM signing_keys WHERE rowid IN (SELECT rowid FROM signing_keys \
               WHERE status = 'retired' AND retain_until < ? LIMIT ?)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        tx.commit().await.map_err(unavailable)?;
        Ok((
            PurgeCounts {
                revocations: jtis.len() as u64,
                cutoffs,
                signing_keys: keys,
            },
            jtis,
        ))
    }

    async fn load_state(&self, _now: OffsetDateTime) -> Result<StateSnapshot> {
        // One read transaction: every table is read at the same snapshot, consistent with the
        // change position read inside it.
        let mut tx = self.reader.begin().await.map_err(unavailable)?;
        let position: i64 = sqlx::query("SELECT coalesce(max(position), 0) AS p FROM changes")
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?
            .try_get("p")
            .map_err(unavailable)?;
        let tenant_rows = sqlx::query(
            "SELECT t.*, c.not_before_iat AS cutoff FROM tenants t \
             LEFT JOIN cutoffs c ON c.tenant = t.id AND c.sub = ''",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut tenants = Vec::with_capacity(tenant_rows.len());
        for r in &tenant_rows {
            tenants.push((
                tenant_from_row(r)?,
                r.try_get::<Option<i64>, _>("cutoff").map_err(unavailable)?,
            ));
        }
        let cutoff_rows = sqlx::query("SELECT * FROM cutoffs WHERE sub <> ''")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        let mut subject_cutoffs = Vec::with_capacity(cutoff_rows.len());
        for r in &cutoff_rows {
            subject_cutoffs.push(Cutoff {
                tenant: r.try_get("tenant").map_err(unavailable)?,
                sub: Some(r.try_get("sub").map_err(unavailable)?),
                not_before_iat: r.try_get("not_before_iat").map_err(unavailable)?,
                expires_at: from_ts(r.try_get("expires_at").map_err(unavailable)?)?,
            });
        }
        // Every revocation row still in the ledger is enforced until the purge removes it: an
        // `expires_at` given too early by a caller must not re-validate a live token on restart.
        let rev_rows = sqlx::query("SELECT tenant, jti, until FROM revocations")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        let mut revocations = Vec::with_capacity(rev_rows.len());
        for r in &rev_rows {
            revocations.push(IndexedRevocation {
                tenant: r.try_get("tenant").map_err(unavailable)?,
                jti: r.try_get("jti").map_err(unavailable)?,
                until: r.try_get("until").map_err(unavailable)?,
            });
        }
        let key_rows = sqlx::query("SELECT * FROM signing_keys")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        let signing_keys = key_rows
            .iter()
            .map(signing_key_from_row)
            .collect::<Result<Vec<_>>>()?;
        let api_rows = sqlx::query("SELECT * FROM api_keys")
            .fetch_all(&mut *tx)
            .await
            .map_err(unavailable)?;
        let api_keys = api_rows
            .iter()
            .map(api_key_from_row)
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await.map_err(unavailable)?;
        Ok(StateSnapshot {
            tenants,
            subject_cutoffs,
            revocations,
            signing_keys,
            api_keys,
            position,
        })
    }
}
