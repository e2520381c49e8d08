#!/usr/bin/env bash
# Revoke throughput on PostgreSQL, beside what the same server does with a bare single-row
# INSERT (design: compare veto's acknowledged revocations with the database's own ceiling).
#
# Starts a throwaway PostgreSQL (scripts/lib.sh ensure_postgres) unless VETO_TEST_DATABASE_URL
# is set, then:
#  1. pgbench, CONNECTIONS clients for DURATION: one autocommit INSERT of a fresh row per
#     transaction into a table shaped like veto's ledger row (the floor of one durable commit);
#  2. scripts/load/revoke.sh with veto on a fresh database of the same server (same clients,
#     same duration): every 201 is a revocation committed with its audit event and change row.
#
#   ./scripts/bench/pg_revoke.sh
#   CONNECTIONS=16 DURATION=30s VETO_BIN=target/release/veto ./scripts/bench/pg_revoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-10s}
secs=${DURATION%s}

if [ -z "${VETO_TEST_DATABASE_URL:-}" ]; then
  ensure_postgres
fi
psql=$(pg_psql)
pgbench="$(dirname "$psql")/pgbench"
[ -x "$pgbench" ] || pgbench=$(command -v pgbench) || die "pgbench not found (Debian package postgresql-contrib or postgresql)"

db="veto_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$psql" -X -q "$VETO_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
on_exit "'$psql' -X -q '$VETO_TEST_DATABASE_URL' -c 'DROP DATABASE IF EXISTS $db' >/dev/null 2>&1"
url="${VETO_TEST_DATABASE_URL%/*}/$db"

section "bare INSERT: pgbench -c $CONNECTIONS -j 2 -T $secs"
"$psql" -X -q "$url" -c "CREATE TABLE bare (tenant text, jti text PRIMARY KEY, sub text, expires_at bigint, revoked_at bigint, reason text, revoked_by text, metadata text)"
script=$(mktemp)
on_exit "rm -f '$script'"
cat >"$script" <<'SQL'
INSERT INTO bare VALUES ('loadtest', md5(random()::text || clock_timestamp()::text), 'load-user', 4102444800, extract(epoch from now())::bigint, 'load', 'bench', '{}');
SQL
"$pgbench" -n -c "$CONNECTIONS" -j 2 -T "$secs" -f "$script" "$url" | grep -E "^(number of transactions actually processed|latency average|tps)"

section "veto revocations on PostgreSQL"

"$psql" -X -q "$VETO_TEST_DATABASE_URL" -c "CREATE DATABASE ${db}_veto"
on_exit "'$psql' -X -q '$VETO_TEST_DATABASE_URL' -c 'DROP DATABASE IF EXISTS ${db}_veto' >/dev/null 2>&1"
VETO_DATABASE_URL="${url}_veto" CONNECTIONS=$CONNECTIONS DURATION=$DURATION ./scripts/load/revoke.sh
