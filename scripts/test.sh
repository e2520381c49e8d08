#!/usr/bin/env bash
# The whole test suite, as CI runs it: on a fresh Debian machine with the Rust toolchain it
# installs what is missing (Debian packages as root or with sudo; Python packages into a
# virtualenv under target/), then runs formatting and lint checks, every test, and a compile of
# the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
ensure_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    section "installing Debian packages: ${missing[*]}"
    if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

section "prerequisites"
command -v python3 >/dev/null || ensure_debs python3
python3 -c 'import venv, ensurepip' 2>/dev/null || ensure_debs python3-venv

# The interop test verifies veto's tokens with PyJWT, a JWT library we did not write.
venv=target/interop-venv
if ! "$venv/bin/python" -c 'import jwt, cryptography' 2>/dev/null; then
  section "installing interop dependencies into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r interop/requirements.txt
fi
export VETO_INTEROP_PYTHON="$PWD/$venv/bin/python"
export VETO_REQUIRE_INTEROP=1

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

section "tests"
if command -v cargo-nextest >/dev/null; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

section "benchmarks compile"
cargo bench --workspace --locked --no-run
