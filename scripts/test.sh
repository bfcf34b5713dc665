#!/usr/bin/env bash
# Runs every check and test of offline-signer, installing what the tests need.
#
#   ./scripts/test.sh            # fmt, clippy, the vector self-test, the whole test suite
#
# What it installs when missing (needs root or sudo, Debian/Ubuntu):
#   softhsm2       the PKCS#11 token the signer tests run against (via scripts/softhsm-init.sh)
#   opensc         pkcs11-tool, with which a key-report test plants an extractable key to be flagged
#   cargo-nextest  runs each test in its own process (one C_Initialize per process, see hsm-notes)
#
# The upstream PowerAuth vectors are read from ../shared/vectors beside the checkout. With CI=true a
# missing vectors folder or a missing SoftHSM fails the run instead of printing a notice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n==> %s\n' "$*"; }

say "SoftHSM: install if missing and prove a token can be made"
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
./scripts/softhsm-init.sh "$probe_dir" test-probe >/dev/null
echo "softhsm2 $(softhsm2-util --version) works"

if ! command -v pkcs11-tool >/dev/null 2>&1; then
    say "Installing opensc (pkcs11-tool)"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y opensc >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    say "Installing cargo-nextest (one time)"
    cargo install --locked cargo-nextest
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

vectors=../shared/vectors
if [ -d "$vectors" ]; then
    say "offline-signer selftest --vectors $vectors"
    cargo run --quiet --locked -- selftest --vectors "$vectors"
elif [ "${CI:-}" = "true" ]; then
    echo "ERROR: $vectors is missing; CI must have ../shared beside the checkout" >&2
    exit 1
else
    say "NOTICE: $vectors not found: skipping the upstream-vector self-test (tests say so too)"
fi

say "cargo nextest run (every test, SoftHSM included)"
cargo nextest run --locked --no-fail-fast "$@"
