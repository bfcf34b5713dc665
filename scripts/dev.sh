#!/usr/bin/env bash
# Runs offline-signer for development against a SoftHSM token, everything kept under one home folder.
#
#   ./scripts/dev.sh
#
# Environment:
#   OFFLINE_SIGNER_HOME    where the token, config, data and credentials live   (default ./var/dev)
#   OFFLINE_SIGNER_LISTEN  address to serve on                                  (default 127.0.0.1:8080)
#   OFFLINE_SIGNER_STORE   sled (default) or postgres
#   OFFLINE_SIGNER_DATABASE_URL  with postgres: the database (password included); unset, dev.sh makes a
#                          throwaway cluster with scripts/postgres-init.sh in $OFFLINE_SIGNER_HOME/postgres
#
# With OFFLINE_SIGNER_STORE=postgres, a second dev.sh with the same OFFLINE_SIGNER_HOME and another
# OFFLINE_SIGNER_LISTEN starts a second instance on the same database and SoftHSM token (each instance
# has its own configuration file, config-postgres-<listen>.toml, and so its own audit chain; the
# credential is in credentials-postgres.env). On dev.sh's own cluster the configuration names the
# database and its password file, so commands need only --config; the cluster keeps running when the
# instances stop: scripts/postgres-init.sh --stop $OFFLINE_SIGNER_HOME/postgres stops it.
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
store=${OFFLINE_SIGNER_STORE:-sled}
case "$store" in
sled | postgres) ;;
*)
    echo "OFFLINE_SIGNER_STORE must be sled or postgres, not '$store'" >&2
    exit 2
    ;;
esac
label=offline-signer-dev
application=demo
mkdir -p "$home"
home=$(cd "$home" && pwd)

if [[ ! -f "$home/softhsm/softhsm2.conf" ]]; then
    echo "==> Creating the SoftHSM dev token in $home/softhsm"
    ./scripts/softhsm-init.sh "$home/softhsm" "$label" >/dev/null
fi
export SOFTHSM2_CONF="$home/softhsm/softhsm2.conf"

# signer_table: the [signer] table of every configuration (one SoftHSM token for every instance).
signer_table() {
    cat <<TOML
[signer]
kind = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "$label"
pin_file = "softhsm/user.pin"
pool_size = 2
module_env = { SOFTHSM2_CONF = "softhsm/softhsm2.conf" }
TOML
}

if [[ $store == postgres ]]; then
    # One configuration per instance (so one audit chain each, its id kept beside the file).
    config=$home/config-postgres-${listen//[^A-Za-z0-9]/-}.toml
    marker=$home/.postgres-application-$application
    credentials=$home/credentials-postgres.env
    if [[ -z ${OFFLINE_SIGNER_DATABASE_URL:-} ]]; then
        echo "==> Starting the PostgreSQL dev cluster in $home/postgres"
        line=$(./scripts/postgres-init.sh "$home/postgres")
        # The URL without its password (the configuration names the password file instead), so
        # that every command works from a new terminal with only --config.
        pg_url=$(sed -E 's#^OFFLINE_SIGNER_DATABASE_URL=([a-z]+://[^:@/]+):[^@]*@#\1@#' <<<"$line")
        unset line
        database="url = \"$pg_url\"
password_file = \"postgres/db.password\"
tls_ca_file = \"postgres/tls/ca.crt\""
        # The cluster may have moved to another port since the configuration was written; a
        # configuration written before TLS gets the cluster's CA.
        if [[ -f "$config" ]]; then
            sed -i -E "s#^url = .*#url = \"$pg_url\"#" "$config"
            if ! grep -q '^tls_ca_file' "$config"; then
                sed -i '/^password_file = "postgres\/db.password"/a tls_ca_file = "postgres/tls/ca.crt"' "$config"
            fi
        fi
    else
        database="# The database URL, password included, comes from OFFLINE_SIGNER_DATABASE_URL."
        if [[ -f "$config" ]] && grep -q '^password_file' "$config"; then
            echo "$config is for dev.sh's own cluster in $home/postgres: unset OFFLINE_SIGNER_DATABASE_URL," >&2
            echo "or choose another OFFLINE_SIGNER_HOME for another database." >&2
            exit 2
        fi
    fi
    header="# offline-signer development configuration on PostgreSQL (written by scripts/dev.sh). This
# instance's audit chain id is kept beside this file.
listen = \"$listen\"
restrict_access = true

[store]
kind = \"postgres\"
pool_size = 8
$database
"
else
    config=$home/config.toml
    marker=$home/.application-$application
    credentials=$home/credentials.env
    header="# offline-signer development configuration (written by scripts/dev.sh). See README.md, \"Configuration\".
# scripts/dev.sh passes --listen \$OFFLINE_SIGNER_LISTEN to serve, which overrides listen below.
listen = \"127.0.0.1:8080\"
data_dir = \"data\"
restrict_access = true
"
fi
if [[ ! -f "$config" ]]; then
    echo "==> Writing $config"
    printf '%s\n' "$header" >"$config"
    signer_table >>"$config"
fi
if ! grep -q '^module_env' "$config"; then
    # A home made before signer.module_env existed: add it so that commands need only --config.
    echo 'module_env = { SOFTHSM2_CONF = "softhsm/softhsm2.conf" }' >>"$config"
fi

echo "==> Building target/release/offline-signer (release; the first build takes a few minutes)"
cargo build --release --locked --quiet
bin=${CARGO_TARGET_DIR:-target}/release/offline-signer

echo "==> Key ceremony: the trusted KEK (security officer; idempotent)"
"$bin" hsm provision --config "$config" --so-pin-file "$home/softhsm/so.pin"

# sled admits one process at a time: the set-up commands below run before the server starts. (On
# PostgreSQL they may run beside running instances.)
if [[ ! -f "$marker" ]]; then
    echo "==> Creating the application '$application' (master key pair generated in the token)"
    if ! out=$("$bin" application create --id "$application" --config "$config" 2>&1 >/dev/null); then
        # A run interrupted after the create but before the marker: the application is there already.
        if [[ $out != *"already exists"* ]]; then
            echo "$out" >&2
            exit 1
        fi
    fi
    touch "$marker"
fi

if [[ ! -s "$credentials" ]]; then
    echo "==> Creating an ADMIN integration credential in $credentials"
    (umask 077 && "$bin" integration create --name dev --role admin --config "$config" >"$credentials.tmp")
    mv "$credentials.tmp" "$credentials"
fi
# shellcheck disable=SC1090
. "$credentials"

cat <<MSG

offline-signer serves on http://$listen (home: $home, store: $store). Ctrl-C stops it.
In another terminal, create a QR payload for the application "$application":

  curl -sS -u '$OFFLINE_SIGNER_CLIENT_TOKEN:$OFFLINE_SIGNER_CLIENT_SECRET' \\
       -H 'Content-Type: application/json' \\
       -d '{"requestObject":{"applicationId":"$application","data":"0b7b1e6e-4c9e-4d0e-9a43-0d6c1d2a7f00\\nLogin\\nSign in to internet banking\\nA2\\n"}}' \\
       http://$listen/rest/v3/signature/offline/non-personalized/create

The credential is in $credentials; README.md walks through a whole payment with the token simulator.

MSG
exec "$bin" serve --config "$config" --listen "$listen"
