# Shared helpers for scripts/*.sh. Source it; it defines functions and changes nothing else
# except an EXIT trap that runs the registered clean-ups (on_exit) in reverse order.
#
# Works as root (CI, containers) and as a normal user with sudo. Debian packages are installed
# only when missing, after one `apt-get update`.

section() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root or sudo to run: $*"
  fi
}

# Clean-ups run at exit, newest first, each at most once, whatever the exit status.
_cleanups=()
on_exit() { _cleanups+=("$*"); }
_run_cleanups() {
  local status=$? i
  for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
    eval "${_cleanups[i]}" || true
  done
  _cleanups=()
  return $status
}
trap _run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

_apt_updated=0
# ensure_debs PKG...: installs the Debian packages that are not installed yet.
ensure_debs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  note "installing Debian packages: ${missing[*]}"
  if [ $_apt_updated = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# free_port: prints a TCP port on 127.0.0.1 that nothing listens on (never a default one).
free_port() {
  local port tries=0
  while [ $tries -lt 200 ]; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
    tries=$((tries + 1))
  done
  die "no free port found"
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds;
# returns 1 (after saying what it waited for) if it never does.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  printf 'timed out after %ss waiting for %s\n' "$secs" "$what" >&2
  return 1
}

# stop_pid PID [SIGNAL]: stops a process we started (by its pid, never by name), waits for it.
stop_pid() {
  local pid=$1 sig=${2:-TERM} i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || as_root kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || as_root kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || as_root kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || as_root kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway instance on loopback, trust auth, non-default port, in a temp dir,
# run as the `postgres` user. Exports VETO_TEST_DATABASE_URL; stopped by pid at exit.
# Commits are not durable (fsync, synchronous_commit and full_page_writes off: fast tests) unless
# PG_DURABLE=1, which keeps PostgreSQL's defaults for a benchmark of durable writes. (Settings
# given on the command line outrank ALTER SYSTEM, so they cannot be turned on afterwards.)

# pg_bindir: the directory holding initdb and pg_ctl (PATH first, else the newest
# /usr/lib/postgresql/*/bin, which is where Debian puts them).
pg_bindir() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    d=$(dirname "$(command -v initdb)")
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  return 1
}

# pg_psql: the psql that goes with pg_bindir (Debian also has a wrapper in /usr/bin).
pg_psql() {
  local bin
  bin=$(pg_bindir 2>/dev/null) && [ -x "$bin/psql" ] && { echo "$bin/psql"; return 0; }
  command -v psql
}

as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    "$@"
  elif [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    sudo -u postgres -- "$@"
  fi
}

ensure_postgres() {
  section "PostgreSQL (throwaway instance)"
  local bin
  bin=$(pg_bindir) || { ensure_debs postgresql; bin=$(pg_bindir) || die "initdb not found after installing postgresql"; }
  id postgres >/dev/null 2>&1 || die "no postgres user (is the postgresql package installed?)"
  # PG_DIR is ours (our logs); PG_DIR/pg belongs to postgres (cluster, socket, server log).
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/veto-pg.XXXXXX")
  on_exit "as_root rm -rf '$PG_DIR'"
  chmod 755 "$PG_DIR"
  mkdir "$PG_DIR/pg"
  as_root chown postgres: "$PG_DIR/pg"
  PG_PORT=$(free_port)
  local fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${PG_DURABLE:-0}" = 1 ] && fast=""
  # Run from a directory postgres can enter (the repo may live in a private home).
  (cd "$PG_DIR" && as_postgres "$bin/initdb" -D "$PG_DIR/pg/data" -U postgres -A trust -E UTF8 \
    --locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1) ||
    { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  (cd "$PG_DIR" && as_postgres "$bin/pg_ctl" -D "$PG_DIR/pg/data" -l "$PG_DIR/pg/postgres.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_DIR/pg $fast" \
    start >"$PG_DIR/pg_ctl.log" 2>&1) ||
    { cat "$PG_DIR/pg_ctl.log" >&2; as_root cat "$PG_DIR/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
  PG_PID=$(as_root head -n 1 "$PG_DIR/pg/data/postmaster.pid")
  # SIGINT is PostgreSQL's fast shutdown.
  on_exit "stop_pid '$PG_PID' INT"
  local psql
  psql=$(pg_psql) || die "psql not found"
  "$psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'create database veto_test' >/dev/null
  export VETO_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/veto_test"
  note "PostgreSQL $("$psql" -X -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d veto_test -c 'show server_version') (pid $PG_PID): VETO_TEST_DATABASE_URL=$VETO_TEST_DATABASE_URL"
}

# ---------------------------------------------------------------------------------------------
# Redis: a throwaway instance on loopback, non-default port, no persistence. Exports
# VETO_TEST_REDIS_URL; stopped by pid at exit.

ensure_redis() {
  section "Redis (throwaway instance)"
  command -v redis-server >/dev/null 2>&1 || ensure_debs redis-server
  command -v redis-cli >/dev/null 2>&1 || ensure_debs redis-tools
  REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/veto-redis.XXXXXX")
  on_exit "rm -rf '$REDIS_DIR'"
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" ||
    die "redis-server did not start"
  wait_for "the Redis pid file" 10 test -s "$REDIS_DIR/redis.pid" ||
    { cat "$REDIS_DIR/redis.log" >&2; die "Redis did not start"; }
  REDIS_PID=$(cat "$REDIS_DIR/redis.pid")
  on_exit "stop_pid '$REDIS_PID'"
  wait_for "Redis to answer PING" 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping ||
    { cat "$REDIS_DIR/redis.log" >&2; die "Redis does not answer"; }
  export VETO_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  note "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') (pid $REDIS_PID): VETO_TEST_REDIS_URL=$VETO_TEST_REDIS_URL"
}

# ---------------------------------------------------------------------------------------------
# veto itself, for the load scripts: start_veto BINARY starts `veto serve` on an ephemeral
# loopback port with a temp data dir and a fresh admin key. Sets VETO_URL, VETO_PID, ADMIN_KEY.

start_veto() {
  local bin=$1 line
  VETO_RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/veto-load.XXXXXX")
  on_exit "rm -rf '$VETO_RUN_DIR'"
  ADMIN_KEY="load-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  VETO_LISTEN=127.0.0.1:0 VETO_DATA_DIR="$VETO_RUN_DIR/data" VETO_BOOTSTRAP_ADMIN_KEY="$ADMIN_KEY" \
    VETO_LOG="${VETO_LOG:-warn}" "$bin" serve >"$VETO_RUN_DIR/stdout" 2>"$VETO_RUN_DIR/stderr" &
  VETO_PID=$!
  on_exit "stop_pid '$VETO_PID'"
  wait_for "veto to print 'listening on'" 30 grep -q '^listening on ' "$VETO_RUN_DIR/stdout" ||
    { cat "$VETO_RUN_DIR/stderr" >&2; die "veto did not start"; }
  line=$(grep -m1 '^listening on ' "$VETO_RUN_DIR/stdout")
  VETO_URL="http://${line#listening on }"
  note "veto (pid $VETO_PID) at $VETO_URL"
}

# api METHOD PATH [JSON] [KEY]: calls veto, prints the body, fails on a non-2xx status.
api() {
  local method=$1 path=$2 body=${3:-} key=${4:-$ADMIN_KEY} out status
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    ${body:+--data "$body"} -w '\n%{http_code}' "$VETO_URL$path")
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  case $status in
    2??) printf '%s' "$out" ;;
    *) die "$method $path answered $status: $out" ;;
  esac
}

# json_field FIELD: reads JSON on stdin, prints one top-level string field.
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# load_prelude: what every load script does first: wrk, curl and python3 present, a release veto
# (VETO_BIN, else built now), started on an ephemeral port (start_veto), and the tenant TENANT
# (default loadtest) created in it. Also the wrk shape every script takes unless the caller (or
# the script, before calling) sets it: THREADS 2, CONNECTIONS 64, DURATION 10s.
load_prelude() {
  THREADS=${THREADS:-2}
  CONNECTIONS=${CONNECTIONS:-64}
  DURATION=${DURATION:-10s}
  TENANT=${TENANT:-loadtest}
  section "prerequisites"
  command -v wrk >/dev/null 2>&1 || ensure_debs wrk
  command -v curl >/dev/null 2>&1 || ensure_debs curl
  command -v python3 >/dev/null 2>&1 || ensure_debs python3
  if [ -z "${VETO_BIN:-}" ]; then
    section "cargo build --release -p veto"
    cargo build --release --locked -p veto
    VETO_BIN=target/release/veto
  fi
  section "start veto"
  start_veto "$VETO_BIN"
  api POST /v1/tenants "{\"id\":\"$TENANT\",\"display_name\":\"$TENANT\"}" >/dev/null
}
