-- Server-side sessions, their signing keys, pre-login state and refresh-token families
-- (`SessionStore`). Times are INTEGER unix seconds, as everywhere else.

-- One row per session, kept after revocation or expiry until the purge: tokens carrying the
-- session's id as `sid` must keep failing until they have expired themselves.
CREATE TABLE sessions (
    tenant                TEXT NOT NULL REFERENCES tenants(id),
    id                    TEXT NOT NULL,
    actor_type            TEXT NOT NULL,
    actor_id              TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    last_seen_at          INTEGER NOT NULL,
    -- Slides forward on touch (written back at most once a minute), never past the absolute
    -- expiry, so it alone says when the session ends.
    idle_expires_at       INTEGER NOT NULL,
    absolute_expires_at   INTEGER NOT NULL,
    -- What a touch slides the idle expiry by: the idle timeout the session was opened with.
    idle_timeout_seconds  INTEGER NOT NULL,
    ip_address            TEXT,
    user_agent            TEXT,
    revoked_at            INTEGER,
    revoke_reason         TEXT,
    -- SHA-256 of the CSRF token; the token itself is never stored.
    csrf_hash             BLOB NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- An actor's sessions (list, revoke-all), in page order without a sort.
CREATE INDEX sessions_actor ON sessions (tenant, actor_type, actor_id, created_at DESC, id DESC);
-- The purge deletes by absolute expiry (see `purge_sessions_batch` for why not the idle one).
CREATE INDEX sessions_absolute_expires ON sessions (absolute_expires_at);

-- HMAC keys that sign session and pre-login cookies: 256-bit secrets, AES-256-GCM under the
-- master key, bound to tenant and kid.
CREATE TABLE session_keys (
    tenant            TEXT NOT NULL REFERENCES tenants(id),
    kid               TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at        INTEGER NOT NULL,
    retain_until      INTEGER,
    encrypted_secret  BLOB NOT NULL,
    PRIMARY KEY (tenant, kid)
);
CREATE INDEX session_keys_retired ON session_keys (retain_until) WHERE status = 'retired';

-- OIDC pre-login state: consumed (deleted) exactly once, or purged after its 10 minutes.
CREATE TABLE prelogin (
    tenant                   TEXT NOT NULL REFERENCES tenants(id),
    id                       TEXT NOT NULL,
    state                    TEXT NOT NULL,
    nonce                    TEXT NOT NULL,
    -- The PKCE verifier, AES-256-GCM under the master key, bound to tenant and id.
    encrypted_pkce_verifier  BLOB NOT NULL,
    redirect_uri             TEXT,
    created_at               INTEGER NOT NULL,
    expires_at               INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX prelogin_expires ON prelogin (expires_at);

-- One row per refresh-token family, however often it rotates (design.md): `current_gen` is the
-- generation of the one token that may still be used; rotation is a compare-and-swap on it.
CREATE TABLE refresh_families (
    tenant         TEXT NOT NULL REFERENCES tenants(id),
    id             TEXT NOT NULL,
    sub            TEXT NOT NULL,
    current_gen    INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoke_reason  TEXT,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX refresh_families_expires ON refresh_families (expires_at);
-- Start-up loads the revoked families; partial, because most families are never revoked.
CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at) WHERE revoked_at IS NOT NULL;
