#!/usr/bin/env bash
# Soak test: mixed traffic for a long time against one release veto, watching for errors and for
# memory that keeps growing.
#
# One wrk Lua script picks each request by weight among
#   issue       POST /v1/tenants/<t>/tokens               a fresh HS256 access token
#   verify      POST /v1/tenants/<t>/tokens/verify        a token of the pool
#   introspect  POST /t/<t>/oauth2/introspect             a token of the pool (form body)
#   revoke      POST /v1/tenants/<t>/revocations          by jti (see below)
# with one API key holding tokens:issue, tokens:verify and tokens:revoke. Every request in the
# mix is valid, so every answer must be 2xx: any other status, or any socket error, fails the run.
#
# The pool is POOL tokens issued before the run. Revocations go to the jtis of the second half
# of the pool and to a bounded space of SOAK_JTI_SPACE made-up jtis: each is created once (201),
# then re-revoked idempotently (200). The ledger therefore stops growing once that space is
# used up (well within the warm-up at the default rates), so that memory still growing after
# the warm-up points at a leak, not at data the server was asked to keep. The first half of the
# pool is never revoked and must still introspect as active afterwards.
#
# The server's resident memory (VmRSS of /proc/<pid>/status) is sampled every SAMPLE_SECONDS.
# The report gives throughput, the answers by status, and RSS first (after WARMUP), last and max;
# memory is "flat" when last <= first * 1.2. Growth past that fails the run.
#
# SCRAPE_SECONDS=15 also fetches /metrics that often, as a Prometheus server would. Off by default:
# a server nobody scrapes must not grow either (the exporter buffers every histogram sample until
# a scrape, or an upkeep, drains it).
#
#   ./scripts/load/soak.sh                                   # 10 minutes
#   SOAK_DURATION=30s ./scripts/load/soak.sh                 # a quick run
#   VETO_BIN=target/release/veto SOAK_DURATION=1h ./scripts/load/soak.sh
#   WEIGHTS=10,40,40,10 (issue,verify,introspect,revoke)  THREADS=2  CONNECTIONS=32
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

CONNECTIONS=${CONNECTIONS:-32}
DURATION=${SOAK_DURATION:-${DURATION:-10m}}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-5}
SCRAPE_SECONDS=${SCRAPE_SECONDS:-0}
POOL=${POOL:-200}
SOAK_JTI_SPACE=${SOAK_JTI_SPACE:-20000}
WEIGHTS=${WEIGHTS:-10,40,40,10}
TENANT=soak

# seconds DURATION: wrk's duration syntax (30s, 10m, 1h, or bare seconds) in seconds.
seconds() {
  case $1 in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}
TOTAL_SECONDS=$(seconds "$DURATION")
[ "$TOTAL_SECONDS" -ge 10 ] 2>/dev/null || die "SOAK_DURATION must be at least 10s (got $DURATION)"
# Start-up allocations (thread stacks, the allocator's arenas, SQLite's page cache, the bounded
# ledger filling up) are not a leak: the first sample that counts is taken after WARMUP seconds.
WARMUP=${WARMUP:-$((TOTAL_SECONDS / 5 < 60 ? TOTAL_SECONDS / 5 : 60))}

load_prelude

section "set up tenant $TENANT: HS256 key, an API key, a pool of $POOL tokens"
api POST "/v1/tenants/$TENANT/keys" '{"alg":"HS256"}' >/dev/null
KEY=$(api POST "/v1/tenants/$TENANT/api-keys" \
  '{"name":"soak","scopes":["tokens:issue","tokens:verify","tokens:revoke"]}' | json_field key)
POOL_FILE="$VETO_RUN_DIR/pool.txt"
batch=$(python3 -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps({"requests":[{"sub":"soak-%d" % i,"aud":"api","alg":"HS256","ttl_seconds":86400} for i in range(n)]}))' "$POOL")
api POST "/v1/tenants/$TENANT/tokens/batch" "$batch" "$KEY" |
  python3 -c 'import json,sys
for r in json.load(sys.stdin)["results"]:
    print(r["token"], r["jti"])' >"$POOL_FILE"
[ "$(wc -l <"$POOL_FILE")" -eq "$POOL" ] || die "the pool holds $(wc -l <"$POOL_FILE") tokens, not $POOL"
note "$POOL tokens in $POOL_FILE"

LUA="$VETO_RUN_DIR/soak.lua"
cat >"$LUA" <<'LUA'
-- Each wrk thread has its own Lua state; setup() numbers the threads and keeps them, so that
-- done() can add up their counters.
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

local function env(name) return os.getenv(name) or error("missing " .. name) end

-- Form-urlencoding for the introspection body: JWTs are base64url and dots, which need none,
-- but an encoder keeps the body valid whatever the pool holds.
local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  math.randomseed(os.time() + tid * 7919)
  tenant = env("SOAK_TENANT")
  space = tonumber(env("SOAK_JTI_SPACE"))
  local auth = "Bearer " .. env("SOAK_KEY")
  json_headers = { ["Content-Type"] = "application/json", ["Authorization"] = auth }
  form_headers = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Authorization"] = auth }
  tokens, jtis = {}, {}
  for line in io.lines(env("SOAK_POOL")) do
    local token, jti = line:match("^(%S+) (%S+)$")
    table.insert(tokens, token)
    table.insert(jtis, jti)
  end
  local w = {}
  for x in env("SOAK_WEIGHTS"):gmatch("%d+") do table.insert(w, tonumber(x)) end
  -- Cumulative weights: issue, verify, introspect, revoke.
  cum = { w[1], w[1] + w[2], w[1] + w[2] + w[3], w[1] + w[2] + w[3] + w[4] }
  sent_issue, sent_verify, sent_introspect, sent_revoke = 0, 0, 0, 0
  s200, s201, other = 0, 0, 0
end

function request()
  local r = math.random(cum[4])
  local i = math.random(#tokens)
  if r <= cum[1] then
    sent_issue = sent_issue + 1
    local body = string.format('{"sub":"soak-user-%d","aud":"api","alg":"HS256","ttl_seconds":600}',
      math.random(1000))
    return wrk.format("POST", "/v1/tenants/" .. tenant .. "/tokens", json_headers, body)
  elseif r <= cum[2] then
    sent_verify = sent_verify + 1
    return wrk.format("POST", "/v1/tenants/" .. tenant .. "/tokens/verify", json_headers,
      '{"token":"' .. tokens[i] .. '","audience":"api"}')
  elseif r <= cum[3] then
    sent_introspect = sent_introspect + 1
    return wrk.format("POST", "/t/" .. tenant .. "/oauth2/introspect", form_headers,
      "token=" .. urlencode(tokens[i]) .. "&token_type_hint=access_token")
  else
    sent_revoke = sent_revoke + 1
    -- One revocation in four targets the revocable half of the pool, the rest the bounded space.
    local jti
    if math.random(4) == 1 then
      jti = jtis[math.floor(#jtis / 2) + math.random(#jtis - math.floor(#jtis / 2))]
    else
      jti = string.format("soak-jti-%d", math.random(space))
    end
    return wrk.format("POST", "/v1/tenants/" .. tenant .. "/revocations", json_headers,
      '{"jti":"' .. jti .. '","sub":"soak","reason":"soak"}')
  end
end

function response(status, headers, body)
  if status == 200 then
    s200 = s200 + 1
  elseif status == 201 then
    s201 = s201 + 1
  else
    other = other + 1
    if other <= 3 then io.stderr:write("unexpected " .. status .. ": " .. body .. "\n") end
  end
end

function done(summary, latency, requests)
  local t = { sent_issue = 0, sent_verify = 0, sent_introspect = 0, sent_revoke = 0,
    s200 = 0, s201 = 0, other = 0 }
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
  end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format("soak: %d requests in %.1f s, %.0f req/s\n",
    summary.requests, secs, summary.requests / secs))
  io.write(string.format("soak: sent issue %d, verify %d, introspect %d, revoke %d\n",
    t.sent_issue, t.sent_verify, t.sent_introspect, t.sent_revoke))
  io.write(string.format("soak: answers 200 %d, 201 %d, non-2xx %d\n", t.s200, t.s201, t.other))
  io.write(string.format("soak: socket errors connect %d, read %d, write %d, timeout %d\n",
    e.connect, e.read, e.write, e.timeout))
  io.write(string.format("soak: latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

# RSS sampler: "<seconds since start> <VmRSS kB>" every SAMPLE_SECONDS while veto runs.
RSS_FILE="$VETO_RUN_DIR/rss.txt"
(
  start=$SECONDS
  while kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$VETO_PID/status" 2>/dev/null) && [ -n "$kb" ]; do
    echo "$((SECONDS - start)) $kb" >>"$RSS_FILE"
    sleep "$SAMPLE_SECONDS"
  done
) &
SAMPLER_PID=$!
on_exit "stop_pid '$SAMPLER_PID'"
if [ "$SCRAPE_SECONDS" -gt 0 ]; then
  (while curl -fsS -o /dev/null "$VETO_URL/metrics"; do sleep "$SCRAPE_SECONDS"; done) &
  SCRAPER_PID=$!
  on_exit "stop_pid '$SCRAPER_PID'"
  note "scraping /metrics every ${SCRAPE_SECONDS}s"
fi

section "wrk -t$THREADS -c$CONNECTIONS -d$DURATION: issue/verify/introspect/revoke weights $WEIGHTS"
out="$VETO_RUN_DIR/wrk.out"
SOAK_TENANT=$TENANT SOAK_KEY=$KEY SOAK_POOL=$POOL_FILE SOAK_JTI_SPACE=$SOAK_JTI_SPACE SOAK_WEIGHTS=$WEIGHTS \
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 10s -s "$LUA" "$VETO_URL" | tee "$out"
stop_pid "$SAMPLER_PID"
[ -z "${SCRAPER_PID:-}" ] || stop_pid "$SCRAPER_PID"

section "after the run"
# The never-revoked half of the pool is still active; the server still answers.
first_token=$(head -n 1 "$POOL_FILE" | cut -d' ' -f1)
answer=$(curl -sS -H "Authorization: Bearer $KEY" --data-urlencode "token=$first_token" \
  "$VETO_URL/t/$TENANT/oauth2/introspect")
case $answer in
  *'"active":true'*) note "a never-revoked pool token still introspects as active" ;;
  *) die "a never-revoked pool token introspects as: $answer" ;;
esac
note "ledger: $(api GET "/v1/tenants/$TENANT/revocations/stats" "" "$KEY")"

section "memory (VmRSS every ${SAMPLE_SECONDS}s; warm-up ${WARMUP}s)"
# Growth is judged from the first sample after the warm-up to the last one.
python3 - "$RSS_FILE" "$WARMUP" "$out" <<'PY'
import re, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
warmup = int(sys.argv[2])
after = [r for r in rows if r[0] >= warmup] or rows[-1:]
mib = lambda kb: kb / 1024
first, last = after[0], rows[-1]
peak = max(rows, key=lambda r: r[1])
# A compact timeline: at most 12 points, evenly spread.
step = max(1, len(rows) // 12)
timeline = ", ".join(f"{t}s {mib(kb):.0f}" for t, kb in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []))
print(f"    samples: {len(rows)}; timeline (MiB): {timeline}")
print(f"    rss at start {mib(rows[0][1]):.1f} MiB; first after warm-up (t={first[0]}s) {mib(first[1]):.1f} MiB; "
      f"last (t={last[0]}s) {mib(last[1]):.1f} MiB; max {mib(peak[1]):.1f} MiB (t={peak[0]}s)")
flat = last[1] <= first[1] * 1.2
print(f"    memory flat (last <= first after warm-up x 1.2): {'yes' if flat else 'NO'} "
      f"({(last[1] / first[1] - 1) * 100:+.1f} %)")
wrk = open(sys.argv[3]).read()
non2xx = int(re.search(r"non-2xx (\d+)", wrk).group(1))
sock = sum(map(int, re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", wrk).groups()))
ok = flat and non2xx == 0 and sock == 0
print(f"    verdict: {'PASS' if ok else 'FAIL'} (non-2xx {non2xx}, socket errors {sock}, memory {'flat' if flat else 'growing'})")
sys.exit(0 if ok else 1)
PY
section "done (server stopped)"
