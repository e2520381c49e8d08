#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for a bounded time, starting from the seed
# corpus checked in under fuzz/corpus/<target>/, and fails if any target crashes (a panic, a
# failed assertion, a sanitizer report, a timeout or running out of memory).
#
#   ./scripts/fuzz.sh            20 s per target (what CI runs)
#   ./scripts/fuzz.sh 600        10 minutes per target
#   FUZZ_TARGETS="verify cookie" ./scripts/fuzz.sh 60
#   FUZZ_SANITIZER=none ./scripts/fuzz.sh      faster runs, no AddressSanitizer
#
# The corpus a run grows goes to fuzz/corpus-run/<target>/ (ignored by git; kept between runs,
# so longer runs pick up where the last one stopped); fuzz/corpus/ stays the checked-in seeds.
# A crash leaves its input in fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>   (from the repo root)
#
# Why RUSTC_BOOTSTRAP=1: cargo-fuzz instruments the build with unstable rustc flags
# (-Zsanitizer=address, and the sanitizer-coverage passes libFuzzer needs), which only a nightly
# compiler accepts. The project's toolchain is stable (1.95); RUSTC_BOOTSTRAP=1 makes that stable
# compiler accept -Z flags. It is set only for this script's cargo-fuzz builds, which go to their
# own target directory (fuzz/target): nothing that ships or that the test suite builds is compiled
# with it. The sanitizer runtimes come with the stable toolchain's standard library.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SECONDS_PER_TARGET=${1:-20}
SANITIZER=${FUZZ_SANITIZER:-address}
case $SECONDS_PER_TARGET in
  '' | *[!0-9]*) die "usage: $0 [SECONDS_PER_TARGET] (a whole number of seconds)" ;;
esac

section "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  note "installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi
note "$(cargo fuzz --version), $(rustc --version)"
export RUSTC_BOOTSTRAP=1

cd fuzz
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
section "cargo fuzz build (sanitizer: $SANITIZER)"
# One build of every target first, so that each run below times fuzzing only.
cargo fuzz build -s "$SANITIZER"

failed=()
for t in $targets; do
  section "fuzz $t for ${SECONDS_PER_TARGET}s"
  mkdir -p "corpus-run/$t"
  # libFuzzer adds what it finds to the first corpus directory only; the seeds are read-only.
  # -timeout: one input taking longer than 10 s is a hang; -rss_limit_mb: a runaway allocation.
  if ! cargo fuzz run -s "$SANITIZER" "$t" "corpus-run/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>"corpus-run/$t.log"; then
    tail -n 60 "corpus-run/$t.log" >&2
    failed+=("$t")
    continue
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)' "corpus-run/$t.log" |
    sed 's/^/    /' || true
done

if [ ${#failed[@]} -gt 0 ]; then
  die "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/corpus-run/<target>.log)"
fi
section "fuzzing passed: ${targets//$'\n'/ } (${SECONDS_PER_TARGET}s each)"
