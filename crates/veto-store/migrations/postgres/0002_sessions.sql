-- Server-side sessions, their signing keys, pre-login state and refresh-token families
-- (`SessionStore`): migrations/sqlite/0003_sessions.sql table by table, index by index.
-- Times are bigint unix seconds, secrets bytea; ids that keyset pages order and compare
-- (session ids, with `created_at`) and every key column are `COLLATE "C"`, as in 0001, so that
-- both backends page in the same (bytewise) order and a cursor means the same place in either.

-- One row per session, kept after revocation or expiry until the purge: tokens carrying the
-- session's id as `sid` must keep failing until they have expired themselves.
CREATE TABLE sessions (
    tenant                text COLLATE "C" NOT NULL REFERENCES tenants(id),
    id                    text COLLATE "C" NOT NULL,
    actor_type            text COLLATE "C" NOT NULL,
    actor_id              text COLLATE "C" NOT NULL,
    created_at            bigint NOT NULL,
    last_seen_at          bigint NOT NULL,
    -- Slides forward on touch (written back at most once a minute), never past the absolute
    -- expiry, so it alone says when the session ends.
    idle_expires_at       bigint NOT NULL,
    absolute_expires_at   bigint NOT NULL,
    -- What a touch slides the idle expiry by: the idle timeout the session was opened with.
    idle_timeout_seconds  bigint NOT NULL,
    ip_address            text,
    user_agent            text,
    revoked_at            bigint,
    revoke_reason         text,
    -- SHA-256 of the CSRF token; the token itself is never stored.
    csrf_hash             bytea NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- An actor's sessions (list, revoke-all), in page order without a sort.
CREATE INDEX sessions_actor ON sessions (tenant, actor_type, actor_id, created_at DESC, id DESC);
-- The purge deletes by absolute expiry (see `purge_sessions_batch` for why not the idle one).
CREATE INDEX sessions_absolute_expires ON sessions (absolute_expires_at);

-- HMAC keys that sign session and pre-login cookies: 256-bit secrets, AES-256-GCM under the
-- master key, bound to tenant and kid.
CREATE TABLE session_keys (
    tenant            text COLLATE "C" NOT NULL REFERENCES tenants(id),
    kid               text COLLATE "C" NOT NULL,
    status            text NOT NULL CHECK (status IN ('active', 'retired')),
    created_at        bigint NOT NULL,
    retain_until      bigint,
    encrypted_secret  bytea NOT NULL,
    PRIMARY KEY (tenant, kid)
);
CREATE INDEX session_keys_retired ON session_keys (retain_until) WHERE status = 'retired';

-- OIDC pre-login state: consumed (deleted) exactly once, or purged after its 10 minutes.
CREATE TABLE prelogin (
    tenant                   text COLLATE "C" NOT NULL REFERENCES tenants(id),
    id                       text COLLATE "C" NOT NULL,
    state                    text NOT NULL,
    nonce                    text NOT NULL,
    -- The PKCE verifier, AES-256-GCM under the master key, bound to tenant and id.
    encrypted_pkce_verifier  bytea NOT NULL,
    redirect_uri             text,
    created_at               bigint NOT NULL,
    expires_at               bigint NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX prelogin_expires ON prelogin (expires_at);

-- One row per refresh-token family, however often it rotates (design.md): `current_gen` is the
-- generation of the one token that may still be used; rotation is a compare-and-swap on it.
CREATE TABLE refresh_families (
    tenant         text COLLATE "C" NOT NULL REFERENCES tenants(id),
    id             text COLLATE "C" NOT NULL,
    sub            text COLLATE "C" NOT NULL,
    current_gen    bigint NOT NULL,
    revoked_at     bigint,
    revoke_reason  text,
    expires_at     bigint NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX refresh_families_expires ON refresh_families (expires_at);
-- Start-up loads the revoked families; partial, because most families are never revoked.
CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at) WHERE revoked_at IS NOT NULL;
