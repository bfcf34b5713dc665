#!/usr/bin/env bash
# Runs offline-signer for development against a SoftHSM token, everything kept under one home folder.
#
#   ./scripts/dev.sh
#
# Environment:
#   OFFLINE_SIGNER_HOME    where the token, config, data and credentials live   (default ./var/dev)
#   OFFLINE_SIGNER_LISTEN  address to serve on                                  (default 127.0.0.1:8080)
#
# First run: installs softhsm2 if missing (root or sudo), creates the SoftHSM token "offline-signer-dev" with
# random PINs in $OFFLINE_SIGNER_HOME/softhsm (mode 0600), writes $OFFLINE_SIGNER_HOME/config.toml, builds
# target/release/offline-signer, creates the application "demo" (its master key pair generated in the token)
# and an integration credential written to $OFFLINE_SIGNER_HOME/credentials.env (mode 0600). The key ceremony
# (`offline-signer hsm provision`, with SoftHSM's SO PIN) makes the trusted KEK; the DEK is generated on the
# first start. Then it serves in the foreground until Ctrl-C. The config names SoftHSM's own configuration
# (signer.module_env), so every command works from a new terminal with only --config.
# Later runs reuse the same home: same token, same keys, same data, same credential.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

home=${OFFLINE_SIGNER_HOME:-./var/dev}
listen=${OFFLINE_SIGNER_LISTEN:-127.0.0.1:8080}
label=offline-signer-dev
application=demo
mkdir -p "$home"
home=$(cd "$home" && pwd)

if [[ ! -f "$home/softhsm/softhsm2.conf" ]]; then
    echo "==> Creating the SoftHSM dev token in $home/softhsm"
    ./scripts/softhsm-init.sh "$home/softhsm" "$label" >/dev/null
fi
export SOFTHSM2_CONF="$home/softhsm/softhsm2.conf"

if [[ ! -f "$home/config.toml" ]]; then
    echo "==> Writing $home/config.toml"
    cat >"$home/config.toml" <<TOML
# offline-signer development configuration (written by scripts/dev.sh). See README.md, "Configuration".
# scripts/dev.sh passes --listen \$OFFLINE_SIGNER_LISTEN to serve, which overrides listen below.
listen = "127.0.0.1:8080"
data_dir = "data"
restrict_access = true

[signer]
kind = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "$label"
pin_file = "softhsm/user.pin"
pool_size = 2
module_env = { SOFTHSM2_CONF = "softhsm/softhsm2.conf" }
TOML
fi
if ! grep -q '^module_env' "$home/config.toml"; then
    # A home made before signer.module_env existed: add it so that commands need only --config.
    echo 'module_env = { SOFTHSM2_CONF = "softhsm/softhsm2.conf" }' >>"$home/config.toml"
fi
config=$home/config.toml

echo "==> Building target/release/offline-signer (release; the first build takes a few minutes)"
cargo build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-target}/release/offline-signer

echo "==> Key ceremony: the trusted KEK (security officer; idempotent)"
"$bin" hsm provision --config "$config" --so-pin-file "$home/softhsm/so.pin"

# The store admits one process at a time: the set-up commands below run before the server starts.
if [[ ! -f "$home/.application-$application" ]]; then
    echo "==> Creating the application '$application' (master key pair generated in the token)"
    if ! out=$("$bin" application create --id "$application" --config "$config" 2>&1 >/dev/null); then
        # A run interrupted after the create but before the marker: the application is there already.
        if [[ $out != *"already exists"* ]]; then
            echo "$out" >&2
            exit 1
        fi
    fi
    touch "$home/.application-$application"
fi

if [[ ! -s "$home/credentials.env" ]]; then
    echo "==> Creating an integration credential in $home/credentials.env"
    (umask 077 && "$bin" integration create --name dev --config "$config" >"$home/credentials.env.tmp")
    mv "$home/credentials.env.tmp" "$home/credentials.env"
fi
# shellcheck disable=SC1091
. "$home/credentials.env"

cat <<MSG

offline-signer serves on http://$listen (home: $home). Ctrl-C stops it.
In another terminal, create a QR payload for the application "$application":

  curl -sS -u '$OFFLINE_SIGNER_CLIENT_TOKEN:$OFFLINE_SIGNER_CLIENT_SECRET' \\
       -H 'Content-Type: application/json' \\
       -d '{"requestObject":{"applicationId":"$application","data":"0b7b1e6e-4c9e-4d0e-9a43-0d6c1d2a7f00\\nLogin\\nSign in to internet banking\\nA2\\n"}}' \\
       http://$listen/rest/v3/signature/offline/non-personalized/create

The credential is in $home/credentials.env; README.md walks through a whole payment with the token simulator.

MSG
exec "$bin" serve --config "$config" --listen "$listen"
