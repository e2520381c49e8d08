#!/usr/bin/env bash
# Propagation from a revocation on veto to the refusal in a resource server that verifies tokens
# itself with veto-verify (issue 13 budget: p99 <= 50 ms on loopback): the `propagation` example
# of crates/veto-verify revokes N tokens one after another and times each until its verifier
# refuses the token.
#
#  1. embedded store: one release veto, the verifier streams from it;
#  2. PostgreSQL (unless SKIP_POSTGRES=1): two nodes on one fresh database, the verifier streams
#     from node B and the revocations go to node A.
#
#   ./scripts/bench/stream_propagation.sh            # N=1000
#   N=5000 VETO_BIN=target/release/veto ./scripts/bench/stream_propagation.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

N=${N:-1000}
section "cargo build --release (veto, and veto-verify's propagation example)"
if [ -z "${VETO_BIN:-}" ]; then
  cargo build --release --locked -p veto
  VETO_BIN=target/release/veto
fi
cargo build --release --locked -p veto-verify --example propagation
example=target/release/examples/propagation

section "embedded store: $N revocations"
start_veto "$VETO_BIN"
VETO_URL=$VETO_URL VETO_ADMIN_KEY=$ADMIN_KEY N=$N "$example"

if [ "${SKIP_POSTGRES:-0}" != 1 ]; then
  section "PostgreSQL, two nodes: revoke on A, the verifier streams from B"
  [ -n "${VETO_TEST_DATABASE_URL:-}" ] || ensure_postgres
  psql=$(pg_psql)
  db="veto_bench_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  "$psql" -X -q "$VETO_TEST_DATABASE_URL" -c "CREATE DATABASE $db"
  on_exit "'$psql' -X -q '$VETO_TEST_DATABASE_URL' -c 'DROP DATABASE IF EXISTS $db' >/dev/null 2>&1"
  # Both nodes must open the same stored keys.
  VETO_MASTER_KEY=$("$VETO_BIN" gen-master-key)
  export VETO_MASTER_KEY VETO_DATABASE_URL="${VETO_TEST_DATABASE_URL%/*}/$db"
  start_veto "$VETO_BIN"
  node_a=$VETO_URL admin=$ADMIN_KEY
  start_veto "$VETO_BIN"
  VETO_URL=$VETO_URL REVOKE_URL=$node_a VETO_ADMIN_KEY=$admin N=$N "$example"
fi
section "done (servers stopped)"
