#!/usr/bin/env bash
# Load test of RFC 7662 introspection: POST /t/<tenant>/oauth2/introspect with keep-alive,
# Bearer-authenticated, one HS256 token. Budget (design): >= 20,000 req/s on the 2-core machine.
#
# Builds and starts a release veto on an ephemeral loopback port with a throwaway data dir,
# creates a tenant, an HS256 key, a token and an API key with tokens:verify, runs wrk, prints
# its report, and stops the server.
#
#   ./scripts/load/introspect.sh                 # wrk -t2 -c64 -d10s
#   THREADS=2 CONNECTIONS=128 DURATION=30s ./scripts/load/introspect.sh
#   VETO_BIN=target/release/veto ./scripts/load/introspect.sh   # skip the build
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

load_prelude

section "set up tenant $TENANT: HS256 key, token, API key with tokens:verify"
api POST "/v1/tenants/$TENANT/keys" '{"alg":"HS256"}' >/dev/null
TOKEN=$(api POST "/v1/tenants/$TENANT/tokens" '{"sub":"load-user","aud":"api","alg":"HS256","ttl_seconds":3600}' | json_field token)
VERIFY_KEY=$(api POST "/v1/tenants/$TENANT/api-keys" '{"name":"load introspect","scopes":["tokens:verify"]}' | json_field key)
# One request by hand: the token must be active, or the run would measure the wrong path.
answer=$(curl -sS -H "Authorization: Bearer $VERIFY_KEY" --data-urlencode "token=$TOKEN" \
  "$VETO_URL/t/$TENANT/oauth2/introspect")
case $answer in
  *'"active":true'*) note "introspection answers active: $answer" ;;
  *) die "the token does not introspect as active: $answer" ;;
esac

LUA="$VETO_RUN_DIR/introspect.lua"
cat >"$LUA" <<'LUA'
-- Every request: the same form POST, Bearer API key, keep-alive (wrk's default).
wrk.method = "POST"
wrk.body = "token=" .. os.getenv("VETO_LOAD_TOKEN") .. "&token_type_hint=access_token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("VETO_LOAD_KEY")
LUA

section "wrk -t$THREADS -c$CONNECTIONS -d$DURATION POST /t/$TENANT/oauth2/introspect"
VETO_LOAD_TOKEN=$TOKEN VETO_LOAD_KEY=$VERIFY_KEY \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$VETO_URL/t/$TENANT/oauth2/introspect"

# Still active afterwards (nothing in the run revoked or broke it).
answer=$(curl -sS -H "Authorization: Bearer $VERIFY_KEY" --data-urlencode "token=$TOKEN" \
  "$VETO_URL/t/$TENANT/oauth2/introspect")
case $answer in
  *'"active":true'*) ;;
  *) die "after the run the token introspects as: $answer" ;;
esac
section "done (server stopped)"
