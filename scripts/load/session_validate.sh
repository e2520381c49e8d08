#!/usr/bin/env bash
# Load test of session validation: POST /v1/tenants/<tenant>/sessions/validate with the session
# cookie and its CSRF token, keep-alive, Bearer API key with sessions:write. `touch` is on (the
# default): the idle expiry slides in memory, and is written back at most once a minute. After
# the first validation the session row comes from the node's session cache, not the store.
#
# Builds and starts a release veto on an ephemeral loopback port with a throwaway data dir (or
# on PostgreSQL when VETO_DATABASE_URL is set), creates a session, runs wrk, prints its report,
# and stops the server.
#
#   ./scripts/load/session_validate.sh                 # wrk -t2 -c64 -d10s
#   VETO_BIN=target/release/veto ./scripts/load/session_validate.sh   # skip the build
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

load_prelude

section "set up tenant $TENANT, an API key with sessions:write and a session"
KEY=$(api POST "/v1/tenants/$TENANT/api-keys" '{"name":"load sessions","scopes":["sessions:write"]}' | json_field key)
created=$(api POST "/v1/tenants/$TENANT/sessions" '{"actor_id":"user-1","actor_type":"user","ip_address":"203.0.113.7","user_agent":"load"}' "$KEY")
COOKIE=$(printf '%s' "$created" | json_field cookie)
CSRF=$(printf '%s' "$created" | json_field csrf_token)
BODY="{\"cookie\":\"$COOKIE\",\"csrf_token\":\"$CSRF\",\"touch\":true}"
api POST "/v1/tenants/$TENANT/sessions/validate" "$BODY" "$KEY" >/dev/null
note "session validates"

LUA="$VETO_RUN_DIR/validate.lua"
cat >"$LUA" <<'LUA'
wrk.method = "POST"
wrk.body = os.getenv("VETO_LOAD_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("VETO_LOAD_KEY")
-- (wrk itself reports any "Non-2xx or 3xx responses" in its summary.)
LUA

section "wrk -t$THREADS -c$CONNECTIONS -d$DURATION POST /v1/tenants/$TENANT/sessions/validate"
VETO_LOAD_BODY=$BODY VETO_LOAD_KEY=$KEY \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$VETO_URL/v1/tenants/$TENANT/sessions/validate"

api POST "/v1/tenants/$TENANT/sessions/validate" "$BODY" "$KEY" >/dev/null
section "done (server stopped)"
