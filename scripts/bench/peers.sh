#!/usr/bin/env bash
# veto beside what users would otherwise build ("a JOSE library plus Redis"), measured in one run
# on one machine (issue 17, point 4). The machine is shared and noisy, so the claim is the
# ratios between systems measured minutes apart, not the absolute times.
#
#  1. sign and verify per algorithm (HS256, RS256, ES256, EdDSA): veto's core
#     (`cargo bench -p veto-core --bench core`), the bare primitive in `openssl speed`, the Rust
#     jsonwebtoken crate (rows of the same bench), npm jose and PyJWT
#     (scripts/bench/peers/*_bench.*, with the versions the interop tests pin);
#  2. a revocation check: veto's index (`cargo bench -p veto-core --bench index`, in process)
#     beside a Redis GET (redis-benchmark) and an indexed PostgreSQL point select (pgbench),
#     1 and 50 clients, at several revoked counts;
#  3. introspection over HTTP (scripts/load/introspect.sh, wrk -c64 and -c1) beside Redis GET at
#     64 and 1 clients;
#  4. one durable revocation through the API (scripts/load/revoke.sh, 1 and 64 connections)
#     beside a bare single-row INSERT on the same store: SQLite with veto's settings, PostgreSQL
#     with pgbench;
#  5. propagation to a second node / resource server (scripts/bench/stream_propagation.sh).
#
# Sections 1, 3 and 4 run PEERS_ROUNDS times (default 3; in 3 and 4 each veto figure right
# after its peer's), and report medians. Prints a markdown table and writes it to
# docs/benchmarks/peers.md, with the raw figures (peers-results.tsv) and plots (peers-*.png,
# matplotlib in target/peers-venv) beside it. About 11 minutes on the 2-core machine once built
# (PostgreSQL and Redis are throwaway instances from scripts/lib.sh; PostgreSQL with durable
# commits).
#
#   ./scripts/bench/peers.sh                       # revoked counts 10k, 100k, 1M
#   PEERS_FULL=1 ./scripts/bench/peers.sh          # and 10M (more memory and a few minutes)
#   PEERS_SMOKE=1 ./scripts/bench/peers.sh         # every step with tiny counts, one round,
#                                                  # output into target/peers-smoke and checked;
#                                                  # under a minute once built
#   VETO_BIN=target/release/veto ./scripts/bench/peers.sh   # skip the build
#   PEERS_OUT=/tmp/peers ./scripts/bench/peers.sh  # write elsewhere than docs/benchmarks
#
# Uses cargo's default target dir (target/), like the other scripts: the propagation step runs
# target/release/examples/propagation.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

started=$(date +%s)
PEERS_SMOKE=${PEERS_SMOKE:-0}
PEERS_FULL=${PEERS_FULL:-0}
if [ "$PEERS_SMOKE" = 1 ]; then
  MODE=smoke
  # Tiny everything: this checks that every step still runs and parses, not what it measures.
  SIZES="1000 10000"
  TABLE_N=10000       # the revoked count of the 1- and 50-client rows
  OPENSSL_SECONDS=1   # openssl speed takes whole seconds
  PEER_SECONDS=0.1    # per jose / PyJWT measurement
  DIVAN_SAMPLES=3
  REDIS_GETS_1=2000   # redis-benchmark -n with one client
  REDIS_GETS_N=20000  # with 50 and 64
  PG_SECONDS=1
  WRK_DURATION=1s
  PROPAGATION_N=20
  ROUNDS=1
  OUT=${PEERS_OUT:-target/peers-smoke}
else
  SIZES="10000 100000 1000000"
  TABLE_N=1000000
  MODE=default
  if [ "$PEERS_FULL" = 1 ]; then
    MODE=full
    SIZES="$SIZES 10000000"
    TABLE_N=10000000
  fi
  OPENSSL_SECONDS=3
  PEER_SECONDS=3
  DIVAN_SAMPLES=100 # divan's default
  REDIS_GETS_1=100000
  REDIS_GETS_N=500000
  PG_SECONDS=10
  WRK_DURATION=10s
  PROPAGATION_N=1000
  ROUNDS=${PEERS_ROUNDS:-3} # of sections 1, 3 and 4
  OUT=${PEERS_OUT:-docs/benchmarks}
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/veto-peers.XXXXXX")
on_exit "rm -rf '$WORK'"
RESULTS=$WORK/results.tsv
: >"$RESULTS"
# record KEY VALUE: one measured figure, read by scripts/bench/peers/report.py.
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

section "prerequisites"
# Debian 12: redis-benchmark is in redis-tools; pgbench ships with the server (postgresql-15),
# which ensure_postgres installs; python3-venv for the venvs below.
for tool in openssl wrk curl node npm; do
  command -v "$tool" >/dev/null 2>&1 || ensure_debs openssl wrk curl nodejs npm
done
command -v redis-benchmark >/dev/null 2>&1 || ensure_debs redis-tools
python3 -c 'import venv, ensurepip' 2>/dev/null || ensure_debs python3-venv
note "$(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The peers at the versions the interop tests pin, installed the way scripts/test.sh's
# interop_deps does it (same places, so one install serves both; skipped when up to date).
section "PyJWT (interop/requirements.txt) in target/interop-venv"
venv=target/interop-venv
if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
if ! cmp -s interop/requirements.txt "$venv/.installed-requirements" ||
  ! "$venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r interop/requirements.txt
  cp interop/requirements.txt "$venv/.installed-requirements"
fi
PYJWT_PYTHON=$venv/bin/python
note "PyJWT $("$PYJWT_PYTHON" -c 'import jwt; print(jwt.__version__)')"

section "jose (interop/node/package-lock.json) in interop/node/node_modules"
node_dir=interop/node
if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.installed-lock" ||
  ! (cd "$node_dir" && node -e 'import("jose")') 2>/dev/null; then
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$node_dir/package-lock.json" "$node_dir/node_modules/.installed-lock"
fi
JOSE_VERSION=$(cd "$node_dir" && node -p 'require("./package-lock.json").packages["node_modules/jose"].version')
note "node $(node --version), jose $JOSE_VERSION"

section "matplotlib (scripts/bench/peers/requirements.txt) in target/peers-venv"
pvenv=target/peers-venv
if ! "$pvenv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$pvenv"
  python3 -m venv "$pvenv"
fi
if ! cmp -s scripts/bench/peers/requirements.txt "$pvenv/.installed-requirements" ||
  ! "$pvenv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  "$pvenv/bin/python" -m pip install -q --disable-pip-version-check -r scripts/bench/peers/requirements.txt
  cp scripts/bench/peers/requirements.txt "$pvenv/.installed-requirements"
fi

if [ -z "${VETO_BIN:-}" ]; then
  section "cargo build --release -p veto"
  cargo build --release --locked -p veto
  VETO_BIN=target/release/veto
fi
# Built before any timing, so that compiling never shares the cores with a measurement.
section "cargo bench --no-run (veto-core: core, index), the propagation example"
cargo bench --locked -p veto-core --bench core --bench index --no-run
cargo build --release --locked -p veto-verify --example propagation

# divan BENCH [ENV=VALUE...]: runs one veto-core bench, prints its output and leaves it in
# $DIVAN_LOG (stderr in $DIVAN_LOG.err), its medians in $DIVAN_LOG.medians ("row/path<TAB>ns").
# divan 0.1 has no machine-readable output; divan_medians.py reads the tree it draws.
divan_runs=0
divan() {
  local bench=$1 log
  shift
  divan_runs=$((divan_runs + 1))
  log=$WORK/divan-$bench-$divan_runs.txt
  DIVAN_LOG=$log
  env DIVAN_SAMPLE_COUNT="$DIVAN_SAMPLES" "$@" cargo bench --locked -q -p veto-core --bench "$bench" \
    >"$log" 2>"$log.err" || { cat "$log" "$log.err" >&2; die "cargo bench --bench $bench failed"; }
  cat "$log.err" "$log"
  python3 scripts/bench/peers/divan_medians.py <"$log" >"$log.medians"
}

# ---------------------------------------------------------------------------------------------
# Section 1 runs ROUNDS times too: its rows are timed one after another, and a burst of load
# on the machine during one row would otherwise decide its ratio.
for round in $(seq "$ROUNDS"); do
  section "1. sign and verify: veto's core (cargo bench -p veto-core --bench core), round $round of $ROUNDS"
  divan core
  while IFS=$'\t' read -r path ns; do record "veto.$path" "$ns"; done <"$DIVAN_LOG.medians"

  section "1. PyJWT $("$PYJWT_PYTHON" -c 'import jwt; print(jwt.__version__)'), round $round of $ROUNDS"
  "$PYJWT_PYTHON" scripts/bench/peers/pyjwt_bench.py "$PEER_SECONDS" | tee "$WORK/pyjwt.tsv"
  while IFS=$'\t' read -r who alg op ns; do
    case $who in pyjwt) record "pyjwt.$op/$alg" "$ns" ;; esac
  done <"$WORK/pyjwt.tsv"
  # What an HS256 token's HMAC hashes (header.payload), for openssl below.
  signing_bytes=$(sed -n 's/^signing_input_bytes\t//p' "$WORK/pyjwt.tsv")

  section "1. jose $JOSE_VERSION (node $(node --version)), round $round of $ROUNDS"
  node scripts/bench/peers/jose_bench.mjs "$PEER_SECONDS" | tee "$WORK/jose.tsv"
  while IFS=$'\t' read -r _ alg op ns; do record "jose.$op/$alg" "$ns"; done <"$WORK/jose.tsv"

  section "1. the bare primitives: $(openssl version), round $round of $ROUNDS"
  # -mr: machine-readable lines; -elapsed: wall-clock time, like every other figure here (the
  # default divides by CPU time, which would hide what the other builds on the machine take).
  # HMAC-SHA256 over a buffer as long as a token's signing input (-bytes), one size only; an
  # HMAC verify is the same computation as a sign. For the others, `openssl speed` times sign
  # and verify of a fixed small message (the hash of the token would be computed on top: a few
  # hundred ns, see the HMAC row).
  openssl speed -mr -elapsed -seconds "$OPENSSL_SECONDS" -bytes "${signing_bytes:-450}" -hmac sha256 \
    >"$WORK/openssl-hmac.txt" 2>&1
  openssl speed -mr -elapsed -seconds "$OPENSSL_SECONDS" rsa2048 ecdsap256 ed25519 \
    >"$WORK/openssl-pk.txt" 2>&1
  grep '^+F' "$WORK/openssl-hmac.txt" "$WORK/openssl-pk.txt" | sed 's/^/    /'
  # +F:<n>:hmac(sha256):<bytes per second for the one size>
  hmac_bps=$(sed -n 's/^+F:[0-9]*:hmac(sha256):\([0-9.]*\).*/\1/p' "$WORK/openssl-hmac.txt")
  [ -n "$hmac_bps" ] || die "no HMAC figure in: $(cat "$WORK/openssl-hmac.txt")"
  hmac_ns=$(python3 -c "import sys; print(1e9 * int(sys.argv[1]) / float(sys.argv[2]))" "${signing_bytes:-450}" "$hmac_bps")
  record "openssl.sign/HS256" "$hmac_ns"
  record "openssl.verify/HS256" "$hmac_ns"
  # +F2:<n>:2048:<sign/s>:<verify/s>  (RSA)    +F4:<n>:256:<sign/s>:<verify/s>  (ECDSA)
  # +F6:<n>:253:Ed25519:<sign/s>:<verify/s>  (EdDSA)
  per_op() { python3 -c "import sys; print(1e9 / float(sys.argv[1]))" "$1"; }
  line=$(grep '^+F2:[0-9]*:2048:' "$WORK/openssl-pk.txt") || die "no rsa2048 figure"
  record "openssl.sign/RS256" "$(per_op "$(echo "$line" | cut -d: -f4)")"
  record "openssl.verify/RS256" "$(per_op "$(echo "$line" | cut -d: -f5)")"
  line=$(grep '^+F4:[0-9]*:256:' "$WORK/openssl-pk.txt") || die "no ecdsap256 figure"
  record "openssl.sign/ES256" "$(per_op "$(echo "$line" | cut -d: -f4)")"
  record "openssl.verify/ES256" "$(per_op "$(echo "$line" | cut -d: -f5)")"
  line=$(grep '^+F6:[0-9]*:253:Ed25519:' "$WORK/openssl-pk.txt") || die "no ed25519 figure"
  record "openssl.sign/EdDSA" "$(per_op "$(echo "$line" | cut -d: -f5)")"
  record "openssl.verify/EdDSA" "$(per_op "$(echo "$line" | cut -d: -f6)")"
done

# ---------------------------------------------------------------------------------------------
section "2. veto's revocation index at $SIZES revoked jtis (cargo bench -p veto-core --bench index)"
# VETO_BENCH_INDEX_N sets the bench's size; the bench prints the size it built
# ("index: N revoked jtis"), which is what the rows are recorded under, so a bench that ignores
# the knob is recorded once, at its own size, instead of under sizes it did not measure.
# Rows are taken by name (check_not_revoked, check_revoked); others are kept in the log only.
done_sizes=" "
for n in $SIZES; do
  divan index VETO_BENCH_INDEX_N="$n"
  log=$DIVAN_LOG
  built=$(sed -n 's/^index: \([0-9]*\) revoked jtis.*/\1/p' "$log.err" | head -n 1)
  [ -n "$built" ] || built=$n
  [ "$built" = "$n" ] || note "the index bench built $built jtis when asked for $n (it has no size knob)"
  case $done_sizes in *" $built "*) continue ;; esac
  done_sizes="$done_sizes$built "
  while IFS=$'\t' read -r path ns; do
    case $path in check_not_revoked | check_revoked) record "index.$path/$built" "$ns" ;; esac
  done <"$log.medians"
done

ensure_redis
# Durable commits (fsync and synchronous_commit on, PostgreSQL's defaults): section 4 compares
# durable writes, and the reads of section 2 do not care.
PG_DURABLE=1 ensure_postgres
REDIS=(-h 127.0.0.1 -p "$REDIS_PORT")
psql=$(pg_psql)
pgbench="$(dirname "$psql")/pgbench"
[ -x "$pgbench" ] || pgbench=$(command -v pgbench) || die "pgbench not found (Debian: postgresql-15)"
pg() { "$psql" -X -q -v ON_ERROR_STOP=1 "$VETO_TEST_DATABASE_URL" "$@"; }

# redis_get N CLIENTS GETS: redis-benchmark GETs of random loaded keys; records rps, p50, p99.
# `-t get -r N` asks for key:<12-digit number below N>, the keys loaded below, so every GET
# finds its key (a revoked jti; a miss costs Redis the same hash probe).
redis_get() {
  local n=$1 c=$2 gets=$3 csv
  csv=$(redis-benchmark "${REDIS[@]}" -t get -r "$n" -n "$gets" -c "$c" --csv | grep '^"GET"') ||
    die "redis-benchmark printed no GET row"
  note "redis GET, $n keys, $c clients: $csv"
  # "GET","rps","avg_ms","min_ms","p50_ms","p95_ms","p99_ms","max_ms"
  record "redis.get.c$c/$n.rps" "$(echo "$csv" | cut -d, -f2 | tr -d '"')"
  record "redis.get.c$c/$n.p50_ms" "$(echo "$csv" | cut -d, -f5 | tr -d '"')"
  record "redis.get.c$c/$n.p99_ms" "$(echo "$csv" | cut -d, -f7 | tr -d '"')"
}

# pgbench_run NAME CLIENTS SCRIPT: pgbench for PG_SECONDS with a per-transaction log (for p50
# and p99, which pgbench does not print); records tps, p50, p99 under NAME.
pgbench_run() {
  local name=$1 c=$2 script=$3 j=1 logs tps
  [ "$c" -gt 1 ] && j=2
  logs=$WORK/pgbench-$RANDOM
  mkdir "$logs"
  # -M prepared: what a client with a pool does; -n: no vacuum of pgbench's own tables.
  (cd "$logs" && "$pgbench" -n -M prepared -c "$c" -j "$j" -T "$PG_SECONDS" -f "$script" -l \
    --log-prefix=tx "$VETO_TEST_DATABASE_URL") >"$logs/out" 2>&1 || { cat "$logs/out" >&2; die "pgbench failed"; }
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$logs/out" | head -n 1)
  [ -n "$tps" ] || { cat "$logs/out" >&2; die "pgbench printed no tps"; }
  record "$name.tps" "$tps"
  # Log lines: client transaction latency_us script epoch epoch_us.
  cat "$logs"/tx.* | awk '{print $3}' | sort -n >"$logs/lat"
  python3 - "$logs/lat" "$name" >>"$RESULTS" <<'PY'
import sys
lat = [int(x) for x in open(sys.argv[1])]
for q, label in ((0.50, "p50_ms"), (0.99, "p99_ms")):
    print(f"{sys.argv[2]}.{label}\t{lat[min(len(lat) - 1, int(len(lat) * q))] / 1000:.3f}")
PY
  note "pgbench $name: $c clients, $tps tps ($(wc -l <"$logs/lat") transactions)"
}

for n in $SIZES; do
  section "2. Redis GET, $n keys"
  redis-cli "${REDIS[@]}" flushall >/dev/null
  # One SET per key through --pipe (the RESP protocol written by python: fastest bulk load).
  # shellcheck disable=SC2016 # the $ are RESP's, inside python
  python3 -c '
import sys
out = sys.stdout.buffer
for i in range(int(sys.argv[1])):
    k = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n" % (len(k), k))
' "$n" | redis-cli "${REDIS[@]}" --pipe >"$WORK/redis-load.txt" 2>&1 || { cat "$WORK/redis-load.txt" >&2; die "redis load failed"; }
  [ "$(redis-cli "${REDIS[@]}" dbsize)" = "$n" ] || die "Redis holds $(redis-cli "${REDIS[@]}" dbsize) keys, not $n"
  redis_get "$n" 1 "$REDIS_GETS_1"
  if [ "$n" = "$TABLE_N" ]; then redis_get "$n" 50 "$REDIS_GETS_N"; fi

  section "2. PostgreSQL point select on a primary key, $n rows"
  # jti-like keys (md5 of the row number: random order, 32 characters), built then indexed.
  pg -c "DROP TABLE IF EXISTS revoked" \
    -c "CREATE TABLE revoked (jti text NOT NULL, until bigint)" \
    -c "INSERT INTO revoked SELECT md5(i::text), NULL FROM generate_series(1, $n) i" \
    -c "ALTER TABLE revoked ADD PRIMARY KEY (jti)" -c "VACUUM ANALYZE revoked"
  cat >"$WORK/select.sql" <<SQL
\\set k random(1, $n)
SELECT until FROM revoked WHERE jti = md5(:k::text);
SQL
  pgbench_run "pg.select.c1/$n" 1 "$WORK/select.sql"
  if [ "$n" = "$TABLE_N" ]; then pgbench_run "pg.select.c50/$n" 50 "$WORK/select.sql"; fi
done
pg -c "DROP TABLE revoked"
# Redis keeps the last size loaded ($TABLE_N, the largest) for section 3.

# wrk_figures PREFIX FILE: Requests/sec, the 50 %/99 % latencies of a wrk --latency report, and
# revoke.sh's count of 201s.
wrk_figures() {
  python3 - "$1" "$2" >>"$RESULTS" <<'PY'
import re, sys
prefix, text = sys.argv[1], open(sys.argv[2]).read()
unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
m = re.search(r"Requests/sec:\s*([0-9.]+)", text)
if m:
    print(f"{prefix}.rps\t{m.group(1)}")
for pct, label in (("50", "p50_ms"), ("99", "p99_ms")):
    m = re.search(rf"^\s*{pct}%\s+([0-9.]+)(us|ms|s)\s*$", text, re.M)
    if m:
        print(f"{prefix}.{label}\t{float(m.group(1)) * unit[m.group(2)]:.3f}")
m = re.search(r"revocations created \(201\): \d+, (\d+)/s; other answers: (\d+)", text)
if m:
    print(f"{prefix}.created_per_s\t{m.group(1)}")
    print(f"{prefix}.other\t{m.group(2)}")
PY
}

# Sections 3 and 4 compare veto with a peer figure by figure, and the machine's load moves
# from minute to minute: each pair runs back to back, and the whole set ROUNDS times; a key
# recorded in several rounds is reported at its median (report.py).
for round in $(seq "$ROUNDS"); do
  # -------------------------------------------------------------------------------------------
  section "3. introspection over HTTP beside Redis GET, round $round of $ROUNDS"
  VETO_BIN=$VETO_BIN THREADS=2 CONNECTIONS=64 DURATION=$WRK_DURATION ./scripts/load/introspect.sh |
    tee "$WORK/introspect.txt"
  wrk_figures "veto.introspect.c64" "$WORK/introspect.txt"
  # The same GET as section 2 at the concurrency introspect.sh runs wrk with.
  redis_get "$TABLE_N" 64 "$REDIS_GETS_N"
  # One connection: the round trip a resource server pays per request when it asks instead of
  # checking in process.
  VETO_BIN=$VETO_BIN THREADS=1 CONNECTIONS=1 DURATION=$WRK_DURATION ./scripts/load/introspect.sh |
    tee "$WORK/introspect.txt"
  wrk_figures "veto.introspect.c1" "$WORK/introspect.txt"
  redis_get "$TABLE_N" 1 "$REDIS_GETS_1"

  # -------------------------------------------------------------------------------------------
  section "4. durable revocations, embedded store: veto's API beside a bare SQLite INSERT, round $round of $ROUNDS"
  # The bare INSERT on the file system veto's data dir is on (start_veto puts it under TMPDIR),
  # into a fresh file each round, as veto's is.
  mkdir "$WORK/sqlite-$round"
  python3 scripts/bench/peers/sqlite_insert.py "$WORK/sqlite-$round" "${WRK_DURATION%s}" | tee "$WORK/sqlite.tsv"
  while IFS=$'\t' read -r k v; do record "sqlite.insert.c1.$k" "$v"; done <"$WORK/sqlite.tsv"
  rm -rf "$WORK/sqlite-$round"
  for c in 1 64; do
    t=2
    [ "$c" = 1 ] && t=1
    VETO_BIN=$VETO_BIN THREADS=$t CONNECTIONS=$c DURATION=$WRK_DURATION ./scripts/load/revoke.sh |
      tee "$WORK/revoke.txt"
    wrk_figures "veto.revoke.sqlite.c$c" "$WORK/revoke.txt"
  done

  section "4. durable revocations, PostgreSQL: veto's API beside a bare INSERT (pgbench), round $round of $ROUNDS"
  # The same bare row as scripts/bench/pg_revoke.sh: ledger-shaped, primary key only.
  pg -c "DROP TABLE IF EXISTS bare" \
    -c "CREATE TABLE bare (tenant text, jti text PRIMARY KEY, sub text, expires_at bigint, revoked_at bigint, reason text, revoked_by text, metadata text)"
  cat >"$WORK/insert.sql" <<'SQL'
INSERT INTO bare VALUES ('loadtest', md5(random()::text || clock_timestamp()::text), 'load-user', 4102444800, extract(epoch from now())::bigint, 'load', 'bench', '{}');
SQL
  for c in 1 64; do
    t=2
    [ "$c" = 1 ] && t=1
    pgbench_run "pg.insert.c$c" "$c" "$WORK/insert.sql"
    db="veto_peers_$c"
    pg -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    VETO_DATABASE_URL="${VETO_TEST_DATABASE_URL%/*}/$db" VETO_BIN=$VETO_BIN THREADS=$t CONNECTIONS=$c \
      DURATION=$WRK_DURATION ./scripts/load/revoke.sh | tee "$WORK/revoke.txt"
    wrk_figures "veto.revoke.pg.c$c" "$WORK/revoke.txt"
    pg -c "DROP DATABASE $db"
  done
done
redis-cli "${REDIS[@]}" flushall >/dev/null

# ---------------------------------------------------------------------------------------------
section "5. propagation (scripts/bench/stream_propagation.sh, N=$PROPAGATION_N)"
# Embedded store, then two nodes on the (durable) PostgreSQL above.
N=$PROPAGATION_N VETO_BIN=$VETO_BIN ./scripts/bench/stream_propagation.sh | tee "$WORK/propagation.txt"
i=0
for store in embedded pg; do
  i=$((i + 1))
  line=$(grep '^propagation from revoke request' "$WORK/propagation.txt" | sed -n "${i}p")
  [ -n "$line" ] || continue
  record "propagation.$store.p50_ms" "$(echo "$line" | sed -n 's/.* p50 \([0-9.]*\) ms.*/\1/p')"
  record "propagation.$store.p99_ms" "$(echo "$line" | sed -n 's/.* p99 \([0-9.]*\) ms.*/\1/p')"
done

# ---------------------------------------------------------------------------------------------
section "report: $OUT/peers.md and plots"
mkdir -p "$OUT"
cp "$RESULTS" "$OUT/peers-results.tsv"
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- crates scripts Cargo.toml Cargo.lock 2>/dev/null || commit="$commit (with uncommitted changes)"
elapsed=$(($(date +%s) - started))
strict=()
[ "$PEERS_SMOKE" = 1 ] && strict=(--strict)
"$pvenv/bin/python" scripts/bench/peers/report.py "${strict[@]}" \
  --results "$RESULTS" --out "$OUT" \
  --meta "commit=$commit" \
  --meta "date=$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --meta "machine=$(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/ {print $2}') GiB, Linux $(uname -r)" \
  --meta "load=$(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average at the end of the run)" \
  --meta "versions=$(openssl version | cut -d' ' -f1-2), Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), PostgreSQL $(pg -At -c 'show server_version'), jose $JOSE_VERSION (node $(node --version)), PyJWT $("$PYJWT_PYTHON" -c 'import jwt; print(jwt.__version__)') (Python $("$PYJWT_PYTHON" -c 'import platform; print(platform.python_version())')), $(rustc --version | cut -d' ' -f1-2)" \
  --meta "mode=$MODE" \
  --meta "elapsed=$elapsed" \
  --meta "sizes=$SIZES" --meta "table_n=$TABLE_N" --meta "rounds=$ROUNDS"

if [ "$PEERS_SMOKE" = 1 ]; then
  section "smoke: the table and the plots are there"
  grep -q '^| alg | op |' "$OUT/peers.md" || die "no sign/verify table in $OUT/peers.md"
  grep -q '^| revoked |' "$OUT/peers.md" || die "no revocation check table in $OUT/peers.md"
  for png in peers-sign-verify peers-throughput peers-latency peers-revocation-check; do
    [ "$(head -c 8 "$OUT/$png.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
      die "$OUT/$png.png is missing or not a PNG"
  done
  note "ok: $OUT/peers.md and 4 plots"
fi
section "done in $(($(date +%s) - started)) s"
