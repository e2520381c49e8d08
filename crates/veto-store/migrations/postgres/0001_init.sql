-- veto schema for PostgreSQL: the SQLite schema (migrations/sqlite, 0001 + 0002) table by table.
--
-- Times are bigint unix seconds (UTC), as in SQLite: the same values, compared and indexed
-- cheaply, and records read back identically from either backend.
--
-- Identifiers (tenant ids, jtis, kids, subjects, API key and audit ids) are `COLLATE "C"`:
-- keyset pagination orders and compares them (`id < cursor`), and the cursor a client got must
-- mean the same place whatever the database's default locale. "C" is bytewise on UTF-8, which
-- is SQLite's BINARY collation, so both backends page in the same order. It also makes these
-- indexes cheaper (memcmp instead of locale rules).

CREATE TABLE tenants (
    id            text COLLATE "C" PRIMARY KEY,
    display_name  text NOT NULL,
    suspended     boolean NOT NULL DEFAULT false,
    created_at    bigint NOT NULL
);

-- Tenant-wide (sub = '') and subject cutoffs: tokens with iat < not_before_iat are rejected.
-- '' rather than NULL for "the whole tenant": a NULL in the key would never conflict with
-- itself, so ON CONFLICT could not merge two tenant-wide cutoffs.
CREATE TABLE cutoffs (
    tenant          text COLLATE "C" NOT NULL REFERENCES tenants(id),
    sub             text COLLATE "C" NOT NULL,
    not_before_iat  bigint NOT NULL,
    expires_at      bigint NOT NULL,
    PRIMARY KEY (tenant, sub)
);
CREATE INDEX cutoffs_expires ON cutoffs (expires_at);

-- API keys: only the SHA-256 of the secret. tenant NULL = admin key.
CREATE TABLE api_keys (
    id          text COLLATE "C" PRIMARY KEY,
    tenant      text COLLATE "C" REFERENCES tenants(id),
    name        text NOT NULL,
    scopes      text NOT NULL,  -- scope names separated by spaces, as in OAuth's `scope`
    key_hash    bytea NOT NULL UNIQUE,
    created_at  bigint NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at DESC, id DESC);

-- Signing keys: private material AES-256-GCM under the master key, (tenant, kid) as AAD.
CREATE TABLE signing_keys (
    tenant             text COLLATE "C" NOT NULL REFERENCES tenants(id),
    kid                text COLLATE "C" NOT NULL,
    alg                text NOT NULL,
    status             text NOT NULL CHECK (status IN ('active', 'retired', 'revoked')),
    audience           text,
    created_at         bigint NOT NULL,
    retain_until       bigint,
    revoked_at         bigint,
    revoke_reason      text,
    encrypted_private  bytea NOT NULL,
    public_jwk         text,
    PRIMARY KEY (tenant, kid)
);

-- The ledger. (tenant, jti) is the key: a repeated revocation is a no-op (idempotent).
CREATE TABLE revocations (
    tenant      text COLLATE "C" NOT NULL REFERENCES tenants(id),
    jti         text COLLATE "C" NOT NULL,
    sub         text COLLATE "C",
    expires_at  bigint NOT NULL,
    revoked_at  bigint NOT NULL,
    reason      text,
    revoked_by  text NOT NULL,
    metadata    text NOT NULL,
    until       bigint,
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
    id        text COLLATE "C" PRIMARY KEY,
    tenant    text COLLATE "C" NOT NULL,
    at        bigint NOT NULL,
    actor     text NOT NULL,
    action    text COLLATE "C" NOT NULL,
    target    text NOT NULL,
    reason    text,
    metadata  text NOT NULL
);
CREATE INDEX audit_recent ON audit_events (tenant, at DESC, id DESC);
-- `?action=` lists: without it a rare action means scanning a tenant's whole trail.
CREATE INDEX audit_action ON audit_events (tenant, action, at DESC, id DESC);

-- The change feed (see postgres.rs, "The change feed"). `position` comes from a sequence, and
-- sequence values commit out of order between concurrent transactions, so readers order by
-- (xid, position) instead: `xid` is the writing transaction's id, and every row of a transaction
-- older than a snapshot's xmin is final. xid8 as bigint: 64 bits with the epoch, so it never
-- wraps around.
CREATE TABLE changes (
    position  bigserial PRIMARY KEY,
    xid       bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    tenant    text COLLATE "C" NOT NULL,
    kind      text NOT NULL,
    key       text COLLATE "C" NOT NULL,
    value     bigint,
    at        bigint NOT NULL
);
CREATE INDEX changes_feed ON changes (xid, position);
-- Purge deletes old change rows by `at`, in bounded batches.
CREATE INDEX changes_at ON changes (at);
