//! Keyset pages, newest first: a child module of `sql`, on the same [`Conn`] as every other
//! shared statement, so that a backend serves them from a reader connection like any single
//! read. Only the filters given become conditions, so the statement's text varies with the
//! request and its arguments are numbered as they are added ([`Select`]).
use std::fmt::Write as _;

use time::OffsetDateTime;
use veto_core::apikey::ApiKeyRecord;
use veto_core::audit::AuditEvent;
use veto_core::revocation::{Revocation, RevocationFilter};
use veto_core::session::SessionRecord;

use super::{Arg, Conn};
use crate::cursor::Cursor;
use crate::rows::{
    API_KEY_COLUMNS, AUDIT_COLUMNS, REVOCATION_COLUMNS, SESSION_COLUMNS, api_key_from_row,
    audit_from_row, revocation_from_row, session_from_row, ts, unavailable,
};
use crate::{Page, PageRequest, Result};

/// A `SELECT` being written: its text, and its arguments as `$1, $2, …` in the order added.
struct Select<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

impl<'a> Select<'a> {
    /// `SELECT columns FROM table WHERE tenant = $1`: every page is one tenant's.
    fn of_tenant(columns: &str, table: &str, tenant: &'a str) -> Self {
        let mut s = Select {
            sql: format!("SELECT {columns} FROM {table} WHERE tenant = "),
            args: Vec::new(),
        };
        s.bind(Arg::Text(tenant));
        s
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends the placeholder of `arg`.
    fn bind(&mut self, arg: Arg<'a>) -> &mut Self {
        self.args.push(arg);
        // Writing to a String cannot fail.
        let _ = write!(self.sql, "${}", self.args.len());
        self
    }

    /// `AND col = $n`.
    fn and_eq(&mut self, col: &str, arg: Arg<'a>) -> &mut Self {
        let _ = write!(self.sql, " AND {col} = ");
        self.bind(arg)
    }
}

fn page_limit(p: &PageRequest) -> u32 {
    // The HTTP layer validates 1..=1000; clamping here keeps a stray 0 or a huge value from
    // returning an empty page with no cursor or from reading a whole table.
    p.limit.clamp(1, 1000)
}

/// One keyset page of `select` (a `SELECT … WHERE …` without order or limit) ordered by
/// `(at_col DESC, id_col DESC)`, newest first.
///
/// The "strictly after the cursor" condition is written as `at <= c AND (at < c OR id < c_id)`
/// rather than a row-value comparison, so that both SQLite and PostgreSQL use the index range on
/// `at_col`. The id columns compare bytewise in both backends (SQLite's BINARY collation;
/// `COLLATE "C"` in PostgreSQL), so the same cursor means the same place in either.
async fn list<C: Conn, T>(
    c: &mut C,
    select: Select<'_>,
    (at_col, id_col): (&str, &str),
    p: &PageRequest,
    from_row: impl Fn(&C::Row) -> Result<T>,
    cursor_of: impl Fn(&T) -> Cursor,
) -> Result<Page<T>> {
    // Decode before touching the database: a bad cursor is the caller's error (400).
    let after = p.cursor.as_deref().map(Cursor::decode).transpose()?;
    // A binding of its own, so that it may borrow `after`, which lives shorter than the caller's.
    let mut select: Select<'_> = select;
    if let Some(after) = &after {
        select
            .push(&format!(" AND {at_col} <= "))
            .bind(Arg::Int(after.at))
            .push(&format!(" AND ({at_col} < "))
            .bind(Arg::Int(after.at))
            .push(&format!(" OR {id_col} < "))
            .bind(Arg::Text(&after.id))
            .push(")");
    }
    let limit = page_limit(p);
    select
        .push(&format!(" ORDER BY {at_col} DESC, {id_col} DESC LIMIT "))
        .bind(Arg::Int(i64::from(limit) + 1));
    let rows = c
        .rows(&select.sql, select.args)
        .await
        .map_err(unavailable)?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    // The extra row only tells whether another page exists.
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|i| cursor_of(i).encode())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// Revocations of a tenant, newest first. Only the filters given become conditions (rather than
/// `($n IS NULL OR sub = $n)`), so the planner can use the (tenant, sub) index for a subject
/// filter.
pub(crate) async fn list_revocations<C: Conn>(
    c: &mut C,
    tenant: &str,
    f: &RevocationFilter,
    p: &PageRequest,
) -> Result<Page<Revocation>> {
    let mut select = Select::of_tenant(REVOCATION_COLUMNS, "revocations", tenant);
    for (col, val) in [
        ("sub", &f.sub),
        ("reason", &f.reason),
        ("revoked_by", &f.revoked_by),
    ] {
        if let Some(v) = val {
            select.and_eq(col, Arg::Text(v));
        }
    }
    list(
        c,
        select,
        ("revoked_at", "jti"),
        p,
        revocation_from_row,
        |r| Cursor::new(ts(r.revoked_at), &r.jti),
    )
    .await
}

/// A tenant's audit trail, newest first, optionally one action only.
pub(crate) async fn list_audit<C: Conn>(
    c: &mut C,
    tenant: &str,
    action: Option<&str>,
    p: &PageRequest,
) -> Result<Page<AuditEvent>> {
    let mut select = Select::of_tenant(AUDIT_COLUMNS, "audit_events", tenant);
    if let Some(a) = action {
        select.and_eq("action", Arg::Text(a));
    }
    list(c, select, ("at", "id"), p, audit_from_row, |e| {
        Cursor::new(ts(e.at), &e.id)
    })
    .await
}

/// The actor's sessions neither revoked nor expired at `now`, newest first.
pub(crate) async fn list_active_sessions<C: Conn>(
    c: &mut C,
    (tenant, actor_type, actor_id): (&str, &str, &str),
    now: OffsetDateTime,
    p: &PageRequest,
) -> Result<Page<SessionRecord>> {
    let mut select = Select::of_tenant(SESSION_COLUMNS, "sessions", tenant);
    select
        .and_eq("actor_type", Arg::Text(actor_type))
        .and_eq("actor_id", Arg::Text(actor_id))
        // The idle expiry never passes the absolute one: one comparison covers both.
        .push(" AND revoked_at IS NULL AND idle_expires_at > ")
        .bind(Arg::Int(ts(now)));
    let from_row = |r: &C::Row| session_from_row(r).map(|s| s.record);
    list(c, select, ("created_at", "id"), p, from_row, |s| {
        Cursor::new(ts(s.created_at), &s.id)
    })
    .await
}

/// A tenant's API keys, newest first.
pub(crate) async fn list_api_keys<C: Conn>(
    c: &mut C,
    tenant: &str,
    p: &PageRequest,
) -> Result<Page<ApiKeyRecord>> {
    let select = Select::of_tenant(API_KEY_COLUMNS, "api_keys", tenant);
    list(c, select, ("created_at", "id"), p, api_key_from_row, |k| {
        Cursor::new(ts(k.created_at), &k.id)
    })
    .await
}
