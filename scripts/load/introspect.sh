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
#   SUBSCRIBERS=1000 ./scripts/load/introspect.sh   # with 1,000 idle revocation streams open
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SUBSCRIBERS=${SUBSCRIBERS:-0}
# Every subscriber is a connection from the one loopback address: lift the per-address cap.
[ "$SUBSCRIBERS" -gt 0 ] && export VETO_MAX_CONNECTIONS_PER_IP=0
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

if [ "$SUBSCRIBERS" -gt 0 ]; then
  section "hold $SUBSCRIBERS idle revocation streams open"
  ulimit -n 8192 2>/dev/null || true
  python3 scripts/load/subscribers.py "$VETO_URL" "$TENANT" "$VERIFY_KEY" "$SUBSCRIBERS" \
    >"$VETO_RUN_DIR/subscribers.log" 2>&1 &
  SUBS_PID=$!
  for _ in $(seq 600); do grep -q '^open' "$VETO_RUN_DIR/subscribers.log" && break; sleep 0.1; done
  grep -q '^open' "$VETO_RUN_DIR/subscribers.log" || die "subscribers did not open: $(cat "$VETO_RUN_DIR/subscribers.log")"
  note "$(cat "$VETO_RUN_DIR/subscribers.log")"
fi

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
if [ "$SUBSCRIBERS" -gt 0 ]; then
  kill -TERM "$SUBS_PID" 2>/dev/null || true
  wait "$SUBS_PID" 2>/dev/null || true
  note "subscribers: $(tr '\n' ' ' <"$VETO_RUN_DIR/subscribers.log")"
fi
section "done (server stopped)"
