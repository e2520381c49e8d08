#!/usr/bin/env bash
# Load test of serving OAuth Token Status Lists (draft-ietf-oauth-status-list-20):
# GET /t/<tenant>/statuslists/<id>, no credentials, the signed statuslist+jwt.
#
# Builds and starts a release veto on an ephemeral loopback port with a throwaway data dir and
# VETO_STATUS_LIST_SIZE=1048576 (2^20 entries per list), creates an ES256 key, turns the tenant's
# status_list setting on (PATCH /v1/tenants/<tenant>), issues TOKENS tokens through the batch
# endpoint (each carries a `status` claim: idx and uri), revokes REVOKE_PERCENT % of them by jti,
# then measures:
#   a. the unchanged list with wrk (keep-alive; the cached signed token is re-served: a hash of
#      the `lst` per request, no signature), and the size of the served token;
#   b. ROUNDS rounds of "revoke one more token, then GET the list", timing the GET alone
#      (python http.client, keep-alive): the GET recompresses the one 16 KiB chunk the flip
#      touched, hashes the `lst` and signs anew (ES256). The flip itself (re-judging the entries
#      of that jti) happens in the revocation request, before it is acknowledged, so it is not in
#      the GET's time. Each round also times a second GET with no change in between;
#   c. correctness: decodes the last served list (base64url, zlib, 2 bits per entry LSB first)
#      and checks that every revoked token's entry reads 1 and every other issued token's reads 0
#      (and that no other entry is set); exits non-zero otherwise.
#
#   ./scripts/load/status_list.sh                # 20,000 tokens, wrk -t2 -c32 -d10s, 200 rounds
#   TOKENS=50000 ROUNDS=500 DURATION=30s ./scripts/load/status_list.sh
#   REVOKE_PERCENT=50 ./scripts/load/status_list.sh   # about 1 % of the 2^20 entries set
#   VETO_BIN=target/release/veto ./scripts/load/status_list.sh   # skip the build
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

TOKENS=${TOKENS:-20000}
REVOKE_PERCENT=${REVOKE_PERCENT:-1}
ROUNDS=${ROUNDS:-200}
CONNECTIONS=${CONNECTIONS:-32}
export VETO_STATUS_LIST_SIZE=${VETO_STATUS_LIST_SIZE:-1048576}
load_prelude
note "VETO_STATUS_LIST_SIZE=$VETO_STATUS_LIST_SIZE"

section "set up tenant $TENANT: ES256 key, status_list setting on"
api POST "/v1/tenants/$TENANT/keys" '{"alg":"ES256"}' >/dev/null
api PATCH "/v1/tenants/$TENANT" '{"status_list":true}' >/dev/null
setting=$(api GET "/v1/tenants/$TENANT" | json_field status_list)
[ "$setting" = True ] || die "GET /v1/tenants/$TENANT says status_list is $setting after PATCH"
note "GET /v1/tenants/$TENANT: status_list $setting"

PY="$VETO_RUN_DIR/status_list.py"
cat >"$PY" <<'PY'
"""Helpers of scripts/load/status_list.sh: issue, revoke, flip (timed), check."""
import base64
import http.client
import json
import os
import random
import statistics
import sys
import time
import urllib.parse
import zlib

BASE = os.environ["VETO_URL"]
KEY = os.environ["ADMIN_KEY"]
TENANT = os.environ["TENANT"]
RUN = os.environ["VETO_RUN_DIR"]
TOKENS_FILE = os.path.join(RUN, "tokens.jsonl")
REVOKED_FILE = os.path.join(RUN, "revoked.txt")
LAST_LIST = os.path.join(RUN, "last_list.jwt")
ACCEPT = "application/statuslist+jwt"


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_part(token, i):
    return json.loads(b64url(token.split(".")[i]))


def connect(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


class Api:
    """Management calls over one keep-alive connection."""

    def __init__(self):
        self.conn = connect(BASE)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        text = r.read().decode()
        if not 200 <= r.status < 300:
            sys.exit(f"error: {method} {path} answered {r.status}: {text[:500]}")
        return r.status, (json.loads(text) if text else None)


class Lists:
    """GETs of a list over one keep-alive connection, no credentials."""

    def __init__(self, uri):
        self.uri = uri
        self.path = urllib.parse.urlsplit(uri).path
        self.conn = connect(uri)

    def get(self):
        t0 = time.perf_counter()
        self.conn.request("GET", self.path, headers={"Accept": ACCEPT})
        r = self.conn.getresponse()
        body = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            sys.exit(f"error: GET {self.uri} answered {r.status}: {body[:500]!r}")
        ctype = r.getheader("Content-Type", "")
        if ctype != ACCEPT:
            sys.exit(f"error: GET {self.uri} answered Content-Type {ctype!r}")
        return dt, body.decode(), r.getheader("ETag"), r.getheader("Cache-Control")


def load_tokens():
    with open(TOKENS_FILE) as f:
        return [json.loads(line) for line in f]


def issue(total):
    api = Api()
    path = f"/v1/tenants/{TENANT}/tokens/batch"
    out = []
    t0 = time.perf_counter()
    n = 0
    while n < total:
        k = min(1000, total - n)
        reqs = [{"sub": f"sl-user-{n + i}", "ttl_seconds": 3600} for i in range(k)]
        _, body = api.call("POST", path, {"requests": reqs})
        for i, res in enumerate(body["results"]):
            if "error" in res:
                sys.exit(f"error: batch item {n + i} failed: {res['error']}")
            claims = jwt_part(res["token"], 1)
            st = claims.get("status", {}).get("status_list")
            if not st:
                sys.exit(f"error: token {res['jti']} carries no status claim: {claims}")
            out.append({"jti": res["jti"], "idx": st["idx"], "uri": st["uri"]})
        n += k
    secs = time.perf_counter() - t0
    with open(TOKENS_FILE, "w") as f:
        for t in out:
            f.write(json.dumps(t) + "\n")
    uris = {}
    for t in out:
        uris[t["uri"]] = uris.get(t["uri"], 0) + 1
    pairs = {(t["uri"], t["idx"]) for t in out}
    if len(pairs) != len(out):
        sys.exit(f"error: {len(out) - len(pairs)} (uri, idx) pairs given to two tokens")
    print(f"issued {len(out)} tokens in {secs:.2f} s ({len(out) / secs:.0f}/s, batches of 1000)")
    for u, c in uris.items():
        print(f"list {u}: {c} entries")


def revoke(percent):
    tokens = load_tokens()
    k = max(1, round(len(tokens) * percent / 100))
    chosen = random.Random(1).sample(tokens, k)
    api = Api()
    path = f"/v1/tenants/{TENANT}/revocations"
    t0 = time.perf_counter()
    for t in chosen:
        status, _ = api.call("POST", path, {"jti": t["jti"], "reason": "load"})
        if status != 201:
            sys.exit(f"error: revoking {t['jti']} answered {status}, not 201")
    secs = time.perf_counter() - t0
    with open(REVOKED_FILE, "w") as f:
        f.write("".join(t["jti"] + "\n" for t in chosen))
    print(f"revoked {k} tokens by jti, one request each, in {secs:.2f} s ({k / secs:.0f}/s)")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def summary(name, xs):
    ms = [x * 1000 for x in xs]
    return (f"{name}: n={len(ms)} median {statistics.median(ms):.2f} ms, p90 {pct(ms, 90):.2f} ms, "
            f"p99 {pct(ms, 99):.2f} ms, min {min(ms):.2f} ms, max {max(ms):.2f} ms")


def first_get(uri):
    dt, token, etag, cc = Lists(uri).get()
    with open(LAST_LIST, "w") as f:
        f.write(token)
    print(f"first GET (every chunk compressed, then signed): {dt * 1000:.2f} ms")
    print(f"served token: {len(token.encode())} bytes; lst {len(jwt_part(token, 1)['status_list']['lst'])} characters; "
          f"ETag {etag}; Cache-Control {cc}")


def flip(uri, rounds):
    tokens = load_tokens()
    with open(REVOKED_FILE) as f:
        revoked = set(f.read().split())
    fresh = [t for t in tokens if t["uri"] == uri and t["jti"] not in revoked]
    if len(fresh) < rounds:
        sys.exit(f"error: only {len(fresh)} unrevoked tokens left in {uri} for {rounds} rounds")
    chosen = random.Random(2).sample(fresh, rounds)
    api = Api()
    lists = Lists(uri)
    path = f"/v1/tenants/{TENANT}/revocations"
    _, token, etag, _ = lists.get()
    after_flip, unchanged, revoke_times = [], [], []
    unchanged_etag_moved = 0
    for t in chosen:
        t0 = time.perf_counter()
        status, _ = api.call("POST", path, {"jti": t["jti"], "reason": "load"})
        revoke_times.append(time.perf_counter() - t0)
        if status != 201:
            sys.exit(f"error: revoking {t['jti']} answered {status}, not 201")
        revoked.add(t["jti"])
        dt, token, new_etag, _ = lists.get()
        after_flip.append(dt)
        if new_etag == etag:
            sys.exit(f"error: after revoking {t['jti']} (idx {t['idx']}) the list's ETag did not change")
        etag = new_etag
        dt, token, again, _ = lists.get()
        unchanged.append(dt)
        if again != etag:
            unchanged_etag_moved += 1
            etag = again
    with open(REVOKED_FILE, "w") as f:
        f.write("".join(j + "\n" for j in sorted(revoked)))
    with open(LAST_LIST, "w") as f:
        f.write(token)
    print(summary("revocation (POST, durable, flips the entry)", revoke_times))
    print(summary("GET after one flip (recompress 1 chunk, hash, sign ES256)", after_flip))
    print(summary("GET with no change since the last GET (cached token)", unchanged))
    if unchanged_etag_moved:
        print(f"note: {unchanged_etag_moved} unchanged GETs answered a new ETag (re-signed)")
    print(f"served token after the rounds: {len(token.encode())} bytes")


def check():
    tokens = load_tokens()
    with open(REVOKED_FILE) as f:
        revoked = set(f.read().split())
    with open(LAST_LIST) as f:
        token = f.read()
    header, claims = jwt_part(token, 0), jwt_part(token, 1)
    problems = []
    if header.get("typ") != "statuslist+jwt":
        problems.append(f"header typ {header.get('typ')!r}")
    uri = claims["sub"]
    sl = claims["status_list"]
    if sl.get("bits") != 2:
        problems.append(f"bits {sl.get('bits')}")
    bits = zlib.decompress(b64url(sl["lst"]))
    size = int(os.environ["VETO_STATUS_LIST_SIZE"])
    if len(bits) * 4 != size:
        problems.append(f"{len(bits) * 4} entries decoded, expected {size}")

    def entry(i):
        return (bits[i // 4] >> ((i % 4) * 2)) & 3

    mine = [t for t in tokens if t["uri"] == uri]
    bad_revoked = [t for t in mine if t["jti"] in revoked and entry(t["idx"]) != 1]
    bad_valid = [t for t in mine if t["jti"] not in revoked and entry(t["idx"]) != 0]
    n_revoked = sum(1 for t in mine if t["jti"] in revoked)
    held = {t["idx"] for t in mine}
    stray = [i for i in range(len(bits) * 4) if entry(i) != 0 and i not in held]
    for t in bad_revoked[:5]:
        problems.append(f"revoked {t['jti']} idx {t['idx']} reads {entry(t['idx'])}, not 1")
    for t in bad_valid[:5]:
        problems.append(f"unrevoked {t['jti']} idx {t['idx']} reads {entry(t['idx'])}, not 0")
    for i in stray[:5]:
        problems.append(f"idx {i} (no token of ours) reads {entry(i)}")
    print(f"{uri}: alg {header.get('alg')}, {len(bits) * 4} entries; {n_revoked} revoked tokens "
          f"read 1: {n_revoked - len(bad_revoked)}; {len(mine) - n_revoked} unrevoked read 0: "
          f"{len(mine) - n_revoked - len(bad_valid)}; entries set with no token: {len(stray)}")
    if len(bad_revoked) + len(bad_valid) + len(stray):
        problems.append(f"{len(bad_revoked)} revoked not 1, {len(bad_valid)} unrevoked not 0, "
                        f"{len(stray)} stray")
    if problems:
        sys.exit("error: the served list is wrong: " + "; ".join(problems))
    print("the served list agrees with what was revoked")


cmd = sys.argv[1]
if cmd == "issue":
    issue(int(sys.argv[2]))
elif cmd == "revoke":
    revoke(float(sys.argv[2]))
elif cmd == "first_get":
    first_get(sys.argv[2])
elif cmd == "flip":
    flip(sys.argv[2], int(sys.argv[3]))
elif cmd == "check":
    check()
else:
    sys.exit(f"unknown command {cmd}")
PY
export VETO_URL ADMIN_KEY TENANT VETO_RUN_DIR

section "issue $TOKENS tokens (POST /v1/tenants/$TENANT/tokens/batch, 1000 a request)"
python3 "$PY" issue "$TOKENS"
URI=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["uri"])' "$VETO_RUN_DIR/tokens.jsonl")
note "measuring $URI"

section "revoke $REVOKE_PERCENT % of them by jti (POST /v1/tenants/$TENANT/revocations)"
python3 "$PY" revoke "$REVOKE_PERCENT"

section "first GET of the list"
python3 "$PY" first_get "$URI"

# served_counts: veto's own count of lists served so far, signed anew vs the cached token.
served_counts() {
  curl -sS "$VETO_URL/metrics" | awk '/^veto_status_list_served_total/ { c = c " " $0 } END {
    print "metrics:" (c == "" ? " no veto_status_list_served_total" : c) }'
}

LUA="$VETO_RUN_DIR/status_list.lua"
cat >"$LUA" <<'LUA'
-- Every request: the same GET, no credentials, keep-alive (wrk's default); counts non-200s.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  other = 0
  wrk.headers["Accept"] = "application/statuslist+jwt"
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local o, k = 0, 0
  for _, t in ipairs(threads) do
    k = k + t:get("ok")
    o = o + t:get("other")
  end
  io.write(string.format("200 answers: %d; other answers: %d; socket errors: %d\n", k, o,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

section "a. unchanged list: wrk -t$THREADS -c$CONNECTIONS -d$DURATION GET $URI"
out="$VETO_RUN_DIR/wrk.out"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$LUA" "$URI" | tee "$out"
grep -q 'other answers: 0;' "$out" || note "WARNING: some answers were not 200 (see above)"
note "$(served_counts)"

section "b. $ROUNDS rounds: revoke one more token, then GET the list (timed), then GET again (timed)"
python3 "$PY" flip "$URI" "$ROUNDS"
note "$(served_counts)"

section "c. the last served list against what was revoked"
python3 "$PY" check
# veto's own log (VETO_LOG, default warn), less the expected warning about the generated master key.
logged=$(sed 's/\x1b\[[0-9;]*m//g' "$VETO_RUN_DIR/stderr" | grep -v 'generated a master key' || true)
if [ -n "$logged" ]; then
  note "veto logged (VETO_LOG=${VETO_LOG:-warn}), last lines:"
  printf '%s\n' "$logged" | tail -n 20 | sed 's/^/      /'
fi
section "done (server stopped)"
