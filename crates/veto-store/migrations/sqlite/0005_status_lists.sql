-- The OAuth Token Status List (draft-ietf-oauth-status-list-20, issue 14): a tenant's
-- fixed-size lists, and one entry per token issued with a status list entry. Status bits are
-- not stored: every node derives them from its revocation state.

-- When on, every token the tenant issues gets an entry.
ALTER TABLE tenants ADD COLUMN status_list INTEGER NOT NULL DEFAULT 0;

-- `seq` numbers a tenant's lists in creation order (the store assigns it): the current list is
-- the one with the highest, whatever the clock said when each was created.
CREATE TABLE status_lists (
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    size        INTEGER NOT NULL CHECK (size > 0),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, seq)
);

-- (tenant, list, idx) is the key: an index is never given twice while its row exists. The row
-- lives until the token's expiry plus the purge's margin; then the purge deletes it and the index
-- returns to the pool.
CREATE TABLE status_entries (
    tenant  TEXT NOT NULL,
    list    TEXT NOT NULL,
    idx     INTEGER NOT NULL CHECK (idx >= 0),
    jti     TEXT NOT NULL,
    sub     TEXT,
    sid     TEXT,
    kid     TEXT NOT NULL,
    fam     TEXT,
    iat     INTEGER NOT NULL,
    exp     INTEGER NOT NULL,
    PRIMARY KEY (tenant, list, idx),
    FOREIGN KEY (tenant, list) REFERENCES status_lists (tenant, id)
);
-- What a later revocation or cutoff needs to find the entries it concerns. Partial where the
-- claim is optional: a token without it needs no index entry.
CREATE INDEX status_entries_jti ON status_entries (tenant, jti);
CREATE INDEX status_entries_sub ON status_entries (tenant, sub) WHERE sub IS NOT NULL;
CREATE INDEX status_entries_sid ON status_entries (tenant, sid) WHERE sid IS NOT NULL;
CREATE INDEX status_entries_kid ON status_entries (tenant, kid);
CREATE INDEX status_entries_fam ON status_entries (tenant, fam) WHERE fam IS NOT NULL;
-- The purge deletes by expiry, in bounded batches.
CREATE INDEX status_entries_exp ON status_entries (exp);
