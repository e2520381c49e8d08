#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this).
#
# On a fresh Debian machine with the Rust toolchain it installs what is missing (Debian packages
# as root or with sudo; Python packages from PyPI into a virtualenv under target/; npm packages
# into interop/node/node_modules), starts throwaway PostgreSQL and Redis instances on loopback
# for the tests that use them, then runs: formatting and lint checks, every test of the
# workspace (unit, property, storage conformance on SQLite and PostgreSQL, end-to-end against
# the real binary, interop with PyJWT, authlib, jose and oauth4webapi), the end-to-end tests a
# second time with every server on PostgreSQL, a bounded soak (scripts/load/soak.sh), a bounded
# fuzzing run (scripts/fuzz.sh), and a compile of the benchmarks.
#
#   ./scripts/test.sh                   everything
#   ./scripts/test.sh services-check    only start PostgreSQL and Redis, check them, stop them
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

prerequisites() {
  section "prerequisites"
  command -v cc >/dev/null 2>&1 || ensure_debs gcc libc6-dev
  command -v curl >/dev/null 2>&1 || ensure_debs curl
  command -v python3 >/dev/null 2>&1 || ensure_debs python3
  # Debian's python3 ships venv without ensurepip unless python3-venv is installed.
  python3 -c 'import venv, ensurepip' 2>/dev/null || ensure_debs python3-venv
  # e2e_sessions moves the server's clock forward (LD_PRELOAD) to test expiries without waiting.
  ensure_debs libfaketime
  if command -v rustup >/dev/null 2>&1; then
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
  fi
  note "$(cargo --version), $(python3 --version)"
}

# The interop tests drive veto with clients we did not write (crates/veto/tests/interop.rs):
# PyJWT and authlib from PyPI, jose and oauth4webapi from npm, at the versions pinned in
# interop/requirements.txt and interop/node/package-lock.json. Each install is skipped when
# its pin file has not changed since the last one.
interop_deps() {
  section "interop dependencies: PyJWT, authlib and token-status-list in target/interop-venv"
  local venv=target/interop-venv
  if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  # Reinstall only when requirements.txt changed since the last install.
  if ! cmp -s interop/requirements.txt "$venv/.installed-requirements" ||
    ! "$venv/bin/python" -c 'import jwt, cryptography, authlib, requests, token_status_list' 2>/dev/null; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r interop/requirements.txt
    cp interop/requirements.txt "$venv/.installed-requirements"
  fi
  note "PyJWT $("$venv/bin/python" -c 'import jwt; print(jwt.__version__)'), authlib $("$venv/bin/python" -c 'import authlib; print(authlib.__version__)')"
  export VETO_INTEROP_PYTHON="$PWD/$venv/bin/python"

  section "interop dependencies: jose and oauth4webapi in interop/node/node_modules"
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || ensure_debs nodejs npm
  local node_dir=interop/node
  # `npm ci` installs exactly the lock file; skipped when the lock is what was last installed.
  if ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.installed-lock" ||
    ! (cd "$node_dir" && node -e 'import("jose").then(() => import("oauth4webapi"))') 2>/dev/null; then
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$node_dir/package-lock.json" "$node_dir/node_modules/.installed-lock"
  fi
  note "node $(node --version), $(cd "$node_dir" && node -p 'const l = require("./package-lock.json").packages; ["jose", "oauth4webapi"].map(n => n + " " + l["node_modules/" + n].version).join(", ")')"
  export VETO_INTEROP_NODE
  VETO_INTEROP_NODE=$(command -v node)
  # A missing client fails the interop tests instead of skipping them.
  export VETO_REQUIRE_INTEROP=1
  # e2e_disk_full mounts a small tmpfs to fill the embedded store's disk for real: it needs
  # root or passwordless sudo, which this script has wherever it can install Debian packages
  # (CI); a failed mount then fails the test instead of skipping it.
  if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then
    export VETO_REQUIRE_FAULT_TESTS=${VETO_REQUIRE_FAULT_TESTS:-1}
  fi
}

run_checks() {
  # Incremental caches pay off only when the same tree is rebuilt after small edits; a test run
  # builds each crate once or twice, and on a fresh clone the cache is pure disk (4.5 GB here).
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
  section "cargo fmt --check"
  cargo fmt --all -- --check

  section "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings

  section "tests"
  if command -v cargo-nextest >/dev/null 2>&1; then
    # nextest does not run doctests; they go first so that nextest's summary closes the run.
    cargo test --workspace --locked --doc
    cargo nextest run --workspace --locked --no-fail-fast
    section "end-to-end tests again, every server on PostgreSQL"
    VETO_E2E_BACKEND=postgres cargo nextest run -p veto --locked --no-fail-fast
  else
    cargo test --workspace --locked --no-fail-fast
    section "end-to-end tests again, every server on PostgreSQL"
    VETO_E2E_BACKEND=postgres cargo test -p veto --locked --no-fail-fast
  fi

  section "soak (bounded)"
  # The short form of the 10-minute soak (docs/benchmarks.md): mixed issue/verify/introspect/
  # revoke traffic from wrk for 90 s against the debug binary the tests just built. Any non-2xx
  # answer, socket error or resident memory growing by more than 20 % after the warm-up fails.
  # A small revocation space, so the ledger is full well within the warm-up.
  VETO_BIN=target/debug/veto SOAK_DURATION=90s WARMUP=30 SAMPLE_SECONDS=3 SOAK_JTI_SPACE=2000 \
    ./scripts/load/soak.sh

  section "fuzz (bounded)"
  # Every cargo-fuzz target for 20 s from the checked-in seeds; any crash fails. 1.5 minutes once
  # fuzz/target is built; its first, cold build (its own instrumented copy of every dependency)
  # took 18 minutes on the shared 2-core machine. Longer runs: README, "Tests".
  note "disk before the fuzz build: $(df -h --output=avail . | tail -1 | tr -d ' ') free; target/ $(du -sh target | cut -f1)"
  ./scripts/fuzz.sh 20

  section "benchmarks compile"
  cargo bench --workspace --locked --no-run
  note "disk at the end: $(df -h --output=avail . | tail -1 | tr -d ' ') free; target/ $(du -sh target | cut -f1), fuzz/target/ $(du -sh fuzz/target | cut -f1)"
}

services_check() {
  ensure_postgres
  ensure_redis
  section "services check"
  "$(pg_psql)" -X -At "$VETO_TEST_DATABASE_URL" -c 'select 1' | grep -qx 1 || die "PostgreSQL: select 1 failed"
  note "psql select 1: ok"
  [ "$(redis-cli -u "$VETO_TEST_REDIS_URL" ping)" = PONG ] || die "Redis: no PONG"
  note "redis-cli ping: PONG"
}

case "${1:-all}" in
  services-check)
    prerequisites
    services_check
    ;;
  all)
    prerequisites
    interop_deps
    ensure_postgres
    ensure_redis
    run_checks
    section "all checks passed"
    ;;
  *) die "usage: $0 [all|services-check]" ;;
esac
