#!/usr/bin/env bash
# Runs offline-signer for development against a SoftHSM token, with everything kept under one home folder.
#
#   ./scripts/dev.sh
#
# Environment:
#   OFFLINE_SIGNER_HOME    where the token, config and data live   (default ./var/dev)
#   OFFLINE_SIGNER_LISTEN  address to serve on                     (default 127.0.0.1:8080)
#
# First run: installs softhsm2 if missing (root or sudo), creates the SoftHSM token "offline-signer-dev"
# with random PINs kept in $OFFLINE_SIGNER_HOME/softhsm (mode 0600), writes $OFFLINE_SIGNER_HOME/config.toml,
# and builds target/release/offline-signer. Later runs reuse the same home and token.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

home=${OFFLINE_SIGNER_HOME:-./var/dev}
listen=${OFFLINE_SIGNER_LISTEN:-127.0.0.1:8080}
label=offline-signer-dev
mkdir -p "$home"
home=$(cd "$home" && pwd)

if [ ! -f "$home/softhsm/softhsm2.conf" ]; then
    echo "==> Creating the SoftHSM dev token in $home/softhsm"
    ./scripts/softhsm-init.sh "$home/softhsm" "$label" >/dev/null
fi
export SOFTHSM2_CONF="$home/softhsm/softhsm2.conf"

if [ ! -f "$home/config.toml" ]; then
    echo "==> Writing $home/config.toml"
    cat >"$home/config.toml" <<TOML
# offline-signer development configuration (written by scripts/dev.sh). See README.md, "Configuration".
listen = "$listen"
data_dir = "data"

[signer]
kind = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "$label"
pin_file = "softhsm/user.pin"
pool_size = 2
TOML
fi

echo "==> Building target/release/offline-signer"
cargo build --release --locked --quiet
bin=target/release/offline-signer

if [ -d ../shared/vectors ]; then
    echo "==> Self-test against ../shared/vectors"
    "$bin" selftest --vectors ../shared/vectors | tail -n 1
fi

echo "==> Keys on the dev token (key-report)"
"$bin" key-report --config "$home/config.toml"

cat <<MSG

offline-signer is built and its dev token is ready in $home.
The HTTP API is not implemented yet (see README.md, "What works today"), so there is no server to start:
this script stops here instead of pretending to serve on $listen.
MSG
