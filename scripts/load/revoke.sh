#!/usr/bin/env bash
# Load test of the revocation API: POST /v1/tenants/<tenant>/revocations with a distinct jti per
# request (a Lua counter per wrk thread), Bearer API key with tokens:revoke, keep-alive.
# Every 201 is a revocation that is durable in the embedded store. Budget (design): >= 2,000
# acknowledged revocations/s on the 2-core machine.
#
# Builds and starts a release veto on an ephemeral loopback port with a throwaway data dir, runs
# wrk, prints its report and the number of revocations created, checks the ledger agrees, and
# stops the server.
#
#   ./scripts/load/revoke.sh                     # wrk -t2 -c64 -d10s
#   THREADS=2 CONNECTIONS=16 DURATION=30s ./scripts/load/revoke.sh
#   VETO_BIN=target/release/veto ./scripts/load/revoke.sh       # skip the build
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

load_prelude

section "set up tenant $TENANT and an API key with tokens:revoke"
REVOKE_KEY=$(api POST "/v1/tenants/$TENANT/api-keys" '{"name":"load revoke","scopes":["tokens:revoke"]}' | json_field key)

LUA="$VETO_RUN_DIR/revoke.lua"
cat >"$LUA" <<'LUA'
-- Each wrk thread has its own Lua state: setup() numbers the threads, so that
-- "<run>-<thread>-<n>" is a distinct jti across the whole run.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  created = 0
  other = 0
  run = os.getenv("VETO_LOAD_RUN")
  path = os.getenv("VETO_LOAD_PATH")
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("VETO_LOAD_KEY")
end

function request()
  n = n + 1
  local body = string.format('{"jti":"%s-%d-%d","sub":"load-user","reason":"load"}', run, tid, n)
  return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local c, o = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("revocations created (201): %d, %.0f/s; other answers: %d\n", c, c / secs, o))
end
LUA

section "wrk -t$THREADS -c$CONNECTIONS -d$DURATION POST /v1/tenants/$TENANT/revocations"
out="$VETO_RUN_DIR/wrk.out"
VETO_LOAD_KEY=$REVOKE_KEY VETO_LOAD_RUN="run$(date +%s)" VETO_LOAD_PATH="/v1/tenants/$TENANT/revocations" \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$VETO_URL/v1/tenants/$TENANT/revocations" |
  tee "$out"

# The ledger holds what was acknowledged (requests still in flight when wrk stopped may add a few).
created=$(sed -n 's/^revocations created (201): \([0-9]*\).*/\1/p' "$out")
revoked=$(api GET "/v1/tenants/$TENANT/revocations/stats" | json_field revoked)
note "ledger: $revoked permanent revocations; wrk saw $created created"
[ -n "$created" ] && [ "$revoked" -ge "$created" ] || die "the ledger has fewer revocations ($revoked) than were acknowledged ($created)"
grep -q 'other answers: 0$' "$out" || note "WARNING: some answers were not 201 (see above)"
section "done (server stopped)"
