#!/usr/bin/env bash
# Soak test (not part of scripts/test.sh): verify load against a real server while it is SIGKILLed and
# restarted many times, and while its SoftHSM token folder is taken away and put back. Reports what a
# bank would care about and fails unless it is all zero (see scripts/soak.py and docs/robustness.md):
#   acknowledged verifications lost, counters that went back, consumed nonces that verified again,
#   5xx other than the documented 503s, 4xx to well-formed requests, valid codes refused; and the time to recover after the token
#   comes back (target <= 5 s).
#
#   ./scripts/soak.sh                       # 100 SIGKILLs, 3 token outages of 5 s, 4 activations
#   SOAK_KILLS=20 ./scripts/soak.sh
#
# Environment:
#   SOAK_KILLS            SIGKILL + restart cycles (default 100; each: 0.3-1.5 s of load, kill, restart)
#   SOAK_OUTAGES          token-folder outages under load (default 3)
#   SOAK_OUTAGE_SECONDS   how long the token folder stays away (default 5)
#   SOAK_ACTIVATIONS      activations, one load worker each (default 4)
#   SOAK_SEED             seed of the kill timing (default 1)
#   OFFLINE_SIGNER_BIN, OFFLINE_TOKEN_BIN   binaries to use (default: cargo build --release)
#   SOAK_KEEP=1           keep the server folder (logs, data) after the run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/server-config.sh
. ./scripts/server-config.sh

if [ -z "${OFFLINE_SIGNER_BIN:-}" ] || [ -z "${OFFLINE_TOKEN_BIN:-}" ]; then
    cargo build --quiet --release --locked --bin offline-signer --bin offline-token
    OFFLINE_SIGNER_BIN=${CARGO_TARGET_DIR:-target}/release/offline-signer
    OFFLINE_TOKEN_BIN=${CARGO_TARGET_DIR:-target}/release/offline-token
fi
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
bin=$(abs "$OFFLINE_SIGNER_BIN")
token_bin=$(abs "$OFFLINE_TOKEN_BIN")

home=$(mktemp -d)
cleanup() {
    if [ "${SOAK_KEEP:-}" = 1 ]; then echo "kept $home"; else rm -rf "$home"; fi
}
trap cleanup EXIT

./scripts/softhsm-init.sh "$home/hsm" soak >/dev/null 2>&1
export SOFTHSM2_CONF=$home/hsm/softhsm2.conf
port=$(free_port)
url=http://127.0.0.1:$port
write_config() {
    softhsm_server_config "$port" soak
    printf '\n[nonce]\npolicy = "%s"\n' "$1"
}
write_config enforce >"$home/config.toml"
write_config off >"$home/config-nonce-off.toml"

# The key ceremony (the trusted KEK, made by the security officer), then the application.
"$bin" hsm provision --config "$home/config.toml" --so-pin-file "$home/hsm/so.pin" >/dev/null 2>>"$home/admin.log"
"$bin" application create --id demo --config "$home/config.toml" >/dev/null 2>>"$home/admin.log"
(umask 077 && "$bin" integration create --name soak --config "$home/config.toml" >"$home/credentials.env" 2>>"$home/admin.log")
set -a
# shellcheck disable=SC1091
. "$home/credentials.env"
set +a

# Activations (activation/register through the token simulator) with a server that runs only for that.
"$bin" serve --config "$home/config.toml" >>"$home/server.log" 2>&1 &
setup_pid=$!
for _ in $(seq 600); do curl -fsS "$url/health" >/dev/null 2>&1 && break; sleep 0.1; done
states=()
for i in $(seq "${SOAK_ACTIVATIONS:-4}"); do
    state=$home/token-$i.json
    "$token_bin" activate --server "$url" --application demo --user "soak-$i" \
        --max-failed-attempts 64 --state "$state" >/dev/null 2>>"$home/admin.log"
    id=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("activation_id") or d["activationId"])' "$state")
    states+=("$id=$state")
done
kill -TERM "$setup_pid"
wait "$setup_pid" || true

echo "==> soak: ${SOAK_KILLS:-100} SIGKILLs, ${SOAK_OUTAGES:-3} token outages of ${SOAK_OUTAGE_SECONDS:-5} s, ${#states[@]} activations"
python3 scripts/soak.py --home "$home" --config "$home/config.toml" \
    --config-nonce-off "$home/config-nonce-off.toml" --bin "$bin" --token-bin "$token_bin" --url "$url" \
    --states "${states[@]}" --kills "${SOAK_KILLS:-100}" --token-outages "${SOAK_OUTAGES:-3}" \
    --outage-seconds "${SOAK_OUTAGE_SECONDS:-5}" --seed "${SOAK_SEED:-1}"
