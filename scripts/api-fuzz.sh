#!/usr/bin/env bash
# Property-based API testing with schemathesis (from PyPI) against a throwaway server.
#
#   ./scripts/api-fuzz.sh            # builds target/debug/offline-signer unless OFFLINE_SIGNER_BIN is set
#
# Starts `offline-signer serve` on a free loopback port with a fresh SoftHSM token (scripts/softhsm-init.sh),
# an application and an integration credential, then lets schemathesis generate requests for every operation
# of the server's own /openapi.json, valid ones and invalid ones, with the credential. Checks (all of
# schemathesis' checks): no 5xx, status codes, content types, headers and bodies as the schema documents
# them, invalid input refused with a 4xx, and an operation that needs credentials refusing a request
# without them. Stops the server at the end, whatever happened. Fails on any finding.
#
# Environment:
#   API_FUZZ_EXAMPLES   generated cases per operation and method (default 50)
#   API_FUZZ_SEED       Hypothesis seed (default: fixed, so that a failure reproduces)
#   API_FUZZ_TIMEOUT    seconds for the whole schemathesis run (default 240)
#   OFFLINE_SIGNER_BIN  the server binary to test (default: cargo build, target/debug/offline-signer)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/server-config.sh
. ./scripts/server-config.sh

schemathesis_version=3.39.16
# hypothesis-jsonschema 0.23 (what schemathesis 3.39 requires) calls an API that hypothesis removed
# later in 6.x: pin a hypothesis of the same season.
hypothesis_version=6.123.2
examples=${API_FUZZ_EXAMPLES:-50}
seed=${API_FUZZ_SEED:-20261206}
run_timeout=${API_FUZZ_TIMEOUT:-240}

if ! schemathesis --version 2>/dev/null | grep -q "$schemathesis_version" ||
    [ "$(python3 -c 'import hypothesis; print(hypothesis.__version__)' 2>/dev/null)" != "$hypothesis_version" ]; then
    echo "==> Installing schemathesis $schemathesis_version, hypothesis $hypothesis_version (pip)"
    python3 -m pip install --quiet "schemathesis==$schemathesis_version" "hypothesis==$hypothesis_version"
fi

if [ -z "${OFFLINE_SIGNER_BIN:-}" ]; then
    cargo build --quiet --locked --bin offline-signer
    OFFLINE_SIGNER_BIN=${CARGO_TARGET_DIR:-target}/debug/offline-signer
fi
bin=$(cd "$(dirname "$OFFLINE_SIGNER_BIN")" && pwd)/$(basename "$OFFLINE_SIGNER_BIN")

home=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$home"
}
trap cleanup EXIT

./scripts/softhsm-init.sh "$home/hsm" api-fuzz >/dev/null
export SOFTHSM2_CONF=$home/hsm/softhsm2.conf
port=$(free_port)
url=http://127.0.0.1:$port
softhsm_server_config "$port" api-fuzz >"$home/config.toml"

# The key ceremony (the trusted KEK, made by the security officer), then the application.
"$bin" hsm provision --config "$home/config.toml" --so-pin-file "$home/hsm/so.pin" >/dev/null 2>>"$home/admin.log"
"$bin" application create --id demo --config "$home/config.toml" >/dev/null 2>>"$home/admin.log"
(umask 077 && "$bin" integration create --name api-fuzz --config "$home/config.toml" >"$home/credentials.env" 2>>"$home/admin.log")
# shellcheck disable=SC1091
. "$home/credentials.env"

"$bin" serve --config "$home/config.toml" >"$home/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do
    curl -fsS "$url/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$home/server.log"; echo "the server exited" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$url/health" >/dev/null

echo "==> schemathesis $schemathesis_version against $url/openapi.json ($examples cases per operation, seed $seed)"
status=0
# --hypothesis-database none: every run draws the same cases from the seed (no state kept between runs).
# utoipa writes OpenAPI 3.1, which schemathesis 3.x reads only with its experimental 3.1 support.
# Telemetry off: nothing leaves the machine.
# The hooks keep control characters out of generated header values (see scripts/api_fuzz_hooks.py).
PYTHONPATH=scripts${PYTHONPATH:+:$PYTHONPATH} SCHEMATHESIS_HOOKS=api_fuzz_hooks \
    timeout "$run_timeout" schemathesis run "$url/openapi.json" \
    --base-url "$url" \
    --auth "$OFFLINE_SIGNER_CLIENT_TOKEN:$OFFLINE_SIGNER_CLIENT_SECRET" \
    --experimental openapi-3.1 \
    --checks all \
    --data-generation-method all \
    --hypothesis-max-examples "$examples" \
    --hypothesis-seed "$seed" \
    --hypothesis-database none \
    --hypothesis-phases explicit,generate \
    --hypothesis-suppress-health-check all \
    --request-timeout 20000 \
    --workers 2 \
    --schemathesis-io-telemetry false \
    --no-color || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server died during the run:" >&2
    tail -n 50 "$home/server.log" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "api-fuzz FAILED (exit $status; 124 = the ${run_timeout}s bound). Server log tail:" >&2
    tail -n 30 "$home/server.log" >&2
    exit 1
fi
echo "api-fuzz: schemathesis found nothing"
