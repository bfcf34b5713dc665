#!/usr/bin/env bash
# softhsm-init.sh DIR LABEL [USER_PIN_FILE]
#
# Makes a private SoftHSM 2 setup in DIR with exactly one token labelled LABEL:
#   DIR/softhsm2.conf   (tokendir = DIR/tokens/)
#   DIR/tokens/         (the token store; wiped and re-created on every run)
#   DIR/user.pin        (user PIN, mode 0600; random on first run, reused after)
#   DIR/so.pin          (security-officer PIN, mode 0600; same rules)
# If USER_PIN_FILE is given, the user PIN is read from it instead (and copied to DIR/user.pin).
# Installs the softhsm2 package with apt-get when softhsm2-util is missing.
# Idempotent: running it twice leaves one token with LABEL, never two.
# Prints the variable to export at the end (on stdout; everything else goes to stderr).
set -euo pipefail

usage() {
    echo "usage: $0 DIR LABEL [USER_PIN_FILE]" >&2
    exit 2
}

[[ $# -ge 2 && $# -le 3 ]] || usage
dir_arg=$1
label=$2
user_pin_file=${3:-}
[[ -n "$label" ]] || usage
if [[ ${#label} -gt 32 ]]; then
    echo "softhsm-init: token label '$label' is longer than 32 bytes" >&2
    exit 2
fi

ensure_softhsm() {
    if command -v softhsm2-util >/dev/null 2>&1; then
        return 0
    fi
    echo "softhsm-init: softhsm2-util not found; installing the softhsm2 package" >&2
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "softhsm-init: not root and no sudo: install softhsm2 yourself" >&2
            exit 1
        fi
    fi
    ${sudo[@]+"${sudo[@]}"} apt-get update >&2
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y softhsm2 >&2
}

random_pin() {
    # 16 decimal digits from the kernel's CSPRNG.
    local pin
    pin=$(od -An -N16 -tu1 /dev/urandom | tr -s ' \n' ' ' | awk '{ s=""; for (i = 1; i <= NF; i++) s = s ($i % 10); print s }')
    printf '%s' "$pin"
}

# write_secret FILE VALUE: creates FILE with mode 0600 before any byte is written.
write_secret() {
    local file=$1 value=$2
    (umask 077 && printf '%s' "$value" >"$file")
    chmod 0600 "$file"
}

ensure_softhsm

mkdir -p "$dir_arg"
dir=$(cd "$dir_arg" && pwd -P)
tokens="$dir/tokens"
conf="$dir/softhsm2.conf"
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
template="$script_dir/../hsm-config/softhsm2.conf.template"

if [[ -f "$template" ]]; then
    sed "s|@TOKENDIR@|$tokens/|" "$template" >"$conf"
else
    printf 'directories.tokendir = %s/\nobjectstore.backend = file\nlog.level = ERROR\n' "$tokens" >"$conf"
fi

if [[ -n "$user_pin_file" ]]; then
    [[ -r "$user_pin_file" ]] || { echo "softhsm-init: cannot read $user_pin_file" >&2; exit 1; }
    user_pin=$(tr -d '\r\n' <"$user_pin_file")
    write_secret "$dir/user.pin" "$user_pin"
elif [[ -s "$dir/user.pin" ]]; then
    user_pin=$(tr -d '\r\n' <"$dir/user.pin")
else
    user_pin=$(random_pin)
    write_secret "$dir/user.pin" "$user_pin"
fi
if [[ -s "$dir/so.pin" ]]; then
    so_pin=$(tr -d '\r\n' <"$dir/so.pin")
else
    so_pin=$(random_pin)
    write_secret "$dir/so.pin" "$so_pin"
fi
chmod 0600 "$dir/user.pin" "$dir/so.pin"

# The token store is private to DIR: wipe it so that exactly one token carries LABEL.
rm -rf "$tokens"
mkdir -p "$tokens"
chmod 0700 "$tokens"

export SOFTHSM2_CONF="$conf"
softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$user_pin" >&2

count=$(softhsm2-util --show-slots | grep -c "Label:[[:space:]]*$label[[:space:]]*$" || true)
if [[ "$count" != 1 ]]; then
    echo "softhsm-init: expected exactly one token labelled '$label', found $count" >&2
    exit 1
fi

echo "softhsm-init: token '$label' ready in $tokens; user PIN in $dir/user.pin" >&2
echo "export SOFTHSM2_CONF=$conf"
