#!/usr/bin/env bash
# Instructions per revocation check (RevocationIndex::check), counted by cachegrind: a figure
# that run-to-run noise on a shared machine cannot move, so a regression shows as a number.
#
# Runs crates/veto-core/examples/index_instructions.rs (an index of N revoked jtis, then M
# checks) under `valgrind --tool=cachegrind` three times: with no checks, with M checks of
# revoked jtis, with M checks of jtis never revoked. Instructions per check = (run - no-check
# run) / M. The index's hash key is random per process, so the building of N entries differs a
# little between runs (probe paths); with the default M that is well under one instruction per
# check.
#
#   ./scripts/bench/index_instructions.sh
#   N=1000000 M=200000 ./scripts/bench/index_instructions.sh
#
# Needs valgrind (Debian package valgrind). At N = 10 million each run takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

N=${N:-10000000}
M=${M:-2000000}

command -v valgrind >/dev/null || { echo "valgrind not found (Debian package valgrind)" >&2; exit 1; }

cargo build --release -p veto-core --example index_instructions >&2
bin="${CARGO_TARGET_DIR:-target}/release/examples/index_instructions"

# Total instructions executed by one run (cachegrind's "I refs"), digits only.
instructions() {
  local out
  out=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$bin" "$N" "$1" "$2" 2>&1 >/dev/null) || { echo "$out" >&2; exit 1; }
  echo "$out" | sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}

echo "index of $N revoked jtis, $M checks per run" >&2
base=$(instructions 0 revoked)
revoked=$(instructions "$M" revoked)
fresh=$(instructions "$M" fresh)
awk -v b="$base" -v r="$revoked" -v f="$fresh" -v m="$M" -v n="$N" 'BEGIN {
  printf "build of %d entries: %.0f instructions (%.1f per entry)\n", n, b, (n > 0 ? b / n : 0)
  printf "check, revoked jti:     %.1f instructions\n", (r - b) / m
  printf "check, not revoked jti: %.1f instructions\n", (f - b) / m
}'
