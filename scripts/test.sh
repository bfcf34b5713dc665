#!/usr/bin/env bash
# Runs every check and test of offline-signer, installing what the tests need.
#
#   ./scripts/test.sh            # fmt, clippy, the vector self-test, the whole test suite
#
# What it installs when missing (needs root or sudo, Debian/Ubuntu):
#   softhsm2       the PKCS#11 token the signer tests run against (via scripts/softhsm-init.sh)
#   opensc         pkcs11-tool, with which a key-report test plants an extractable key to be flagged
#   postgresql     the server the PostgreSQL store tests run against (via scripts/postgres-init.sh; the
#                  tests start a throwaway cluster themselves)
#   cargo-nextest  runs each test in its own process (one C_Initialize per process, see hsm-notes)
#   cargo-deny     license, duplicate-crate and source policy of deny.toml (about 5 min to build once)
#   cargo-fuzz     builds and runs the libFuzzer targets of fuzz/ (scripts/fuzz-smoke.sh; about 4 min once)
#   schemathesis   (pip, pinned) property-based API tests against /openapi.json (scripts/api-fuzz.sh)
#
# After the tests, the outside tools of docs/robustness.md, each bounded in time (about 6 min together):
# cargo deny, a short run of every fuzz target, schemathesis against a throwaway server.
#
# The upstream PowerAuth vectors are read from ../shared/vectors beside the checkout. A test whose tool or
# vector folder is missing FAILS; OFFLINE_SIGNER_ALLOW_MISSING=1 turns that into a loud skip (never in CI).
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

say "PostgreSQL: install if missing and prove a cluster can be made"
pg_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"; ./scripts/postgres-init.sh --stop "$pg_dir" >/dev/null 2>&1 || true; rm -rf "$pg_dir"' EXIT
chmod 755 "$pg_dir"
./scripts/postgres-init.sh "$pg_dir" >/dev/null
./scripts/postgres-init.sh --stop "$pg_dir" >/dev/null
echo "postgres $(postgres --version 2>/dev/null || ls /usr/lib/postgresql) works"

if ! cargo nextest --version >/dev/null 2>&1; then
    say "Installing cargo-nextest (one time)"
    cargo install --locked cargo-nextest
fi

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

vectors=../shared/vectors
if [ -d "$vectors" ]; then
    say "offline-signer selftest --vectors $vectors"
    cargo run --quiet --locked --bin offline-signer -- selftest --vectors "$vectors"
elif [ "${OFFLINE_SIGNER_ALLOW_MISSING:-}" = "1" ]; then
    say "NOTICE: $vectors not found and OFFLINE_SIGNER_ALLOW_MISSING=1: the upstream-vector self-test did NOT run"
else
    echo "ERROR: $vectors is missing (CI lays ../shared beside the checkout); OFFLINE_SIGNER_ALLOW_MISSING=1 skips" >&2
    exit 1
fi

say "cargo nextest run (every test of the workspace, SoftHSM and PostgreSQL included)"
cargo nextest run --workspace --locked --no-fail-fast "$@"

if ! cargo deny --version >/dev/null 2>&1; then
    say "Installing cargo-deny (one time)"
    cargo install --locked cargo-deny
fi
say "cargo deny check licenses bans sources (advisories need a network database: docs/robustness.md)"
timeout 300 cargo deny --locked check licenses bans sources

say "Fuzz smoke: every target of fuzz/ for a few seconds"
./scripts/fuzz-smoke.sh

say "schemathesis against a throwaway server"
cargo build --quiet --locked --bin offline-signer
OFFLINE_SIGNER_BIN=${CARGO_TARGET_DIR:-target}/debug/offline-signer ./scripts/api-fuzz.sh
