-- veto embedded schema. Times are INTEGER unix seconds (UTC): every time veto stores has second
-- precision, and integers compare and index cheaply.
--
-- Kept close to portable SQL (no SQLite-only types, no WITHOUT ROWID, partial indexes and
-- ON CONFLICT work the same in PostgreSQL) so the PostgreSQL migrations can follow it table by
-- table. The exceptions are AUTOINCREMENT (a sequence there) and BLOB (bytea there).

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    suspended     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

-- Tenant-wide (sub = '') and subject cutoffs: tokens with iat < not_before_iat are rejected.
CREATE TABLE cutoffs (
    tenant          TEXT NOT NULL REFERENCES tenants(id),
    sub             TEXT NOT NULL,
    not_before_iat  INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, sub)
);
CREATE INDEX cutoffs_expires ON cutoffs (expires_at);

-- API keys: only the SHA-256 of the secret. tenant NULL = admin key.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT REFERENCES tenants(id),
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,  -- scope names separated by spaces, as in OAuth's `scope`
    key_hash    BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at DESC, id DESC);

-- Signing keys: private material AES-256-GCM under the master key, (tenant, kid) as AAD.
CREATE TABLE signing_keys (
    tenant             TEXT NOT NULL REFERENCES tenants(id),
    kid                TEXT NOT NULL,
    alg                TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
    audience           TEXT,
    created_at         INTEGER NOT NULL,
    retain_until       INTEGER,
    revoked_at         INTEGER,
    revoke_reason      TEXT,
    encrypted_private  BLOB NOT NULL,
    public_jwk         TEXT,
    PRIMARY KEY (tenant, kid)
);

-- The ledger. (tenant, jti) is the key: a repeated revocation is a no-op (idempotent).
CREATE TABLE revocations (
    tenant      TEXT NOT NULL REFERENCES tenants(id),
    jti         TEXT NOT NULL,
    sub         TEXT,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER NOT NULL,
    reason      TEXT,
    revoked_by  TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    until       INTEGER,
    PRIMARY KEY (tenant, jti)
);
-- (tenant, sub) lookups, and subject-filtered lists in page order without a sort.
CREATE INDEX revocations_sub ON revocations (tenant, sub, revoked_at DESC, jti DESC);
CREATE INDEX revocations_recent ON revocations (tenant, revoked_at DESC, jti DESC);
CREATE INDEX revocations_expires ON revocations (expires_at);
-- Purge also drops suspensions whose `until` has passed; partial, because most rows are
-- permanent (until NULL) and need no entry.
CREATE INDEX revocations_until ON revocations (until) WHERE until IS NOT NULL;

CREATE TABLE audit_events (
    id        TEXT PRIMARY KEY,
    tenant    TEXT NOT NULL,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    reason    TEXT,
    metadata  TEXT NOT NULL
);
CREATE INDEX audit_recent ON audit_events (tenant, at DESC, id DESC);
-- `?action=` lists: without it a rare action means scanning a tenant's whole trail.
CREATE INDEX audit_action ON audit_events (tenant, action, at DESC, id DESC);

-- Ordered log of changes to what nodes hold in memory (revocations, lifts, cutoffs, tenant, key
-- and API key state), written in the same transaction as the change:
-- the feed other nodes catch up from (by position).
CREATE TABLE changes (
    position  INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant    TEXT NOT NULL,
    kind      TEXT NOT NULL,
    key       TEXT NOT NULL,
    at        INTEGER NOT NULL
);
