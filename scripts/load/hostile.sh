#!/usr/bin/env bash
# A normal client's latency while hostile clients hold thousands of connections (issue 11,
# finding 1): HOSTILE connections (default 5,000) from several loopback addresses, half with
# headers that never finish, half with form bodies that never finish, reopened whenever veto
# closes them (scripts/load/hostile.py); meanwhile wrk, as the normal client, introspects a token
# (keep-alive, Bearer key) and reports its latency distribution. Target: p99 under 50 ms.
# With BATCHES=1, a third client of another tenant also sends RS512 batches of 1,000 tokens
# in a loop (finding 3: signing must not stall other tenants' checks).
#
#   ./scripts/load/hostile.sh                              # 5,000 hostile, wrk -t1 -c4 -d20s
#   HOSTILE=2000 DURATION=30s BATCHES=1 ./scripts/load/hostile.sh
#   VETO_BIN=target/release/veto ./scripts/load/hostile.sh # skip the build
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

HOSTILE=${HOSTILE:-5000}
BATCHES=${BATCHES:-0}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-4}
DURATION=${DURATION:-20s}
# The hostile client and veto each need a descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((HOSTILE + 512)) ] || die "ulimit -n is $(ulimit -n); $HOSTILE hostile connections need more (raise the hard limit)"
load_prelude

section "set up tenant $TENANT: HS256 key, token, API key with tokens:verify"
api POST "/v1/tenants/$TENANT/keys" '{"alg":"HS256"}' >/dev/null
TOKEN=$(api POST "/v1/tenants/$TENANT/tokens" '{"sub":"load-user","alg":"HS256","ttl_seconds":3600}' | json_field token)
VERIFY_KEY=$(api POST "/v1/tenants/$TENANT/api-keys" '{"name":"load","scopes":["tokens:verify"]}' | json_field key)

seconds=${DURATION%s}
section "hostile: $HOSTILE connections held for $((seconds + 10)) s"
python3 scripts/load/hostile.py "${VETO_URL#http://}" "$TENANT" "$HOSTILE" $((seconds + 10)) >"$VETO_RUN_DIR/hostile.json" &
HOSTILE_PID=$!
on_exit "kill $HOSTILE_PID 2>/dev/null || true"

if [ "$BATCHES" = 1 ]; then
  section "another tenant sends RS512 batches of 1,000 in a loop"
  api POST /v1/tenants '{"id":"batcher","display_name":"batcher"}' >/dev/null
  api POST /v1/tenants/batcher/keys '{"alg":"RS512"}' >/dev/null
  BATCH_KEY=$(api POST /v1/tenants/batcher/api-keys '{"name":"batch","scopes":["tokens:issue"]}' | json_field key)
  python3 - "$VETO_URL" "$BATCH_KEY" >"$VETO_RUN_DIR/batch.out" 2>&1 <<'PY' &
import json, sys, urllib.request
url, key = sys.argv[1], sys.argv[2]
body = json.dumps({"requests": [{"sub": f"u{i}", "alg": "RS512"} for i in range(1000)]}).encode()
n = 0
while True:
    req = urllib.request.Request(f"{url}/v1/tenants/batcher/tokens/batch", data=body, method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    n += 1
    print(n, flush=True)
PY
  BATCH_PID=$!
  on_exit "kill $BATCH_PID 2>/dev/null || true"
fi

sleep 5  # let the hostile connections pile up
held=$(curl -sS "$VETO_URL/metrics" | awk '/^veto_connections_open /{print $2}')
note "veto holds $held connections before the measured run"

LUA="$VETO_RUN_DIR/introspect.lua"
cat >"$LUA" <<'LUA'
wrk.method = "POST"
wrk.body = "token=" .. os.getenv("VETO_LOAD_TOKEN")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("VETO_LOAD_KEY")
LUA
section "normal client: wrk -t$THREADS -c$CONNECTIONS -d$DURATION POST /t/$TENANT/oauth2/introspect"
VETO_LOAD_TOKEN=$TOKEN VETO_LOAD_KEY=$VERIFY_KEY \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$VETO_URL/t/$TENANT/oauth2/introspect"

section "what veto saw"
curl -sS "$VETO_URL/metrics" | grep -E '^veto_connections_(open|refused_total)' || true
wait "$HOSTILE_PID" || true
note "hostile client: $(cat "$VETO_RUN_DIR/hostile.json")"
if [ "$BATCHES" = 1 ]; then note "RS512 batches of 1,000 completed meanwhile: $(tail -1 "$VETO_RUN_DIR/batch.out")"; fi
curl -sf "$VETO_URL/healthz" >/dev/null || die "veto no longer answers /healthz"
section "done (server stopped)"
