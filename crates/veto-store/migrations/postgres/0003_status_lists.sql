-- The OAuth Token Status List (issue 14): migrations/sqlite/0005_status_lists.sql table by
-- table, index by index. Times bigint unix seconds, key columns `COLLATE "C"`, as in 0001.
-- Sizes and indexes are bigint: a list may hold up to 2^32 entries (u32), beyond int4.

-- When on, every token the tenant issues gets an entry.
ALTER TABLE tenants ADD COLUMN status_list boolean NOT NULL DEFAULT false;

-- `seq` numbers a tenant's lists in creation order (the store assigns it): the current list is
-- the one with the highest, whatever the clock said when each was created.
CREATE TABLE status_lists (
    tenant      text COLLATE "C" NOT NULL REFERENCES tenants(id),
    id          text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    size        bigint NOT NULL CHECK (size > 0),
    created_at  bigint NOT NULL,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, seq)
);

-- (tenant, list, idx) is the key: an index is never given twice while its row exists. The row
-- lives until the token's expiry plus the purge's margin; then the purge deletes it and the index
-- returns to the pool.
CREATE TABLE status_entries (
    tenant  text COLLATE "C" NOT NULL,
    list    text COLLATE "C" NOT NULL,
    idx     bigint NOT NULL CHECK (idx >= 0),
    jti     text COLLATE "C" NOT NULL,
    sub     text COLLATE "C",
    sid     text COLLATE "C",
    kid     text COLLATE "C" NOT NULL,
    fam     text COLLATE "C",
    iat     bigint NOT NULL,
    exp     bigint NOT NULL,
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
