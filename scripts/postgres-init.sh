#!/usr/bin/env bash
# postgres-init.sh DIR          make (or restart) a throwaway PostgreSQL cluster in DIR
# postgres-init.sh --stop DIR   stop it
# postgres-init.sh --help
#
# For development and tests of the PostgreSQL store. Lays out:
#   DIR/pgdata/        the cluster (initdb on first run), owned by the user that runs the server
#   DIR/db.password    the password of the role offline_signer (mode 0600; random on first run, reused after)
#   DIR/port           the TCP port it listens on (127.0.0.1 only)
#   DIR/postgres.log   the server's log
#   DIR/.s.PGSQL.PORT  its unix socket (local connections are trusted: DIR is private to the server's user)
#   DIR/tls/ca.crt     the CA that signed the server's TLS certificate (for 127.0.0.1 and localhost): give
#                      it as [store] tls_ca_file to connect over TLS; plain TCP is accepted too
# and the role offline_signer (LOGIN, CREATEDB so that tests can make a database each) owning the database
# offline_signer.
#
# Installs Debian's postgresql package with apt-get when no initdb is found. PostgreSQL refuses to run as
# root: run as root, the script creates the system user offline-signer-pg (if absent) and runs the server
# as that user; run as anyone else, the server runs as the caller.
#
# Idempotent: a second run on the same DIR reuses the cluster and the password, starts the server if it is
# stopped (on the same port if it is still free) and checks the role and the database again.
# Prints the one line to export on stdout; everything else goes to stderr.
set -euo pipefail

PG_USER=offline-signer-pg
ROLE=offline_signer
DATABASE=offline_signer

usage() {
    cat >&2 <<'EOF'
usage: postgres-init.sh DIR
       postgres-init.sh --stop DIR
       postgres-init.sh --help

Makes a throwaway PostgreSQL cluster in DIR (or starts the one already there) listening on
127.0.0.1 at a free port, with the role offline_signer (password in DIR/db.password, mode 0600) and
the database offline_signer, then prints on stdout:

    OFFLINE_SIGNER_DATABASE_URL=postgres://offline_signer:PASSWORD@127.0.0.1:PORT/offline_signer

--stop DIR stops the server of DIR (nothing happens if it is not running). Installs Debian's postgresql
package when initdb is missing. Run as root, the server runs as the system user offline-signer-pg.
EOF
}

say() { echo "postgres-init: $*" >&2; }
die() {
    say "$*"
    exit 1
}

stop=false
case "${1:-}" in
-h | --help)
    usage
    exit 0
    ;;
--stop)
    stop=true
    shift
    ;;
esac
[[ $# -eq 1 && -n "$1" ]] || {
    usage
    exit 2
}
dir_arg=$1

# The directory of the newest PostgreSQL server binaries (Debian keeps them out of PATH).
find_bindir() {
    local candidate best=""
    for candidate in /usr/lib/postgresql/*/bin; do
        [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]] || continue
        if [[ -z "$best" ]] || [[ "${candidate#/usr/lib/postgresql/}" > "${best#/usr/lib/postgresql/}" ]]; then
            best=$candidate
        fi
    done
    if [[ -z "$best" ]] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        best=$(dirname "$(command -v initdb)")
    fi
    printf '%s' "$best"
}

ensure_postgres() {
    bindir=$(find_bindir)
    if [[ -n "$bindir" ]] && command -v psql >/dev/null 2>&1; then
        return 0
    fi
    say "PostgreSQL server binaries not found; installing Debian's postgresql package"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            die "not root and no sudo: install PostgreSQL (apt-get install postgresql) yourself"
        fi
    fi
    ${sudo[@]+"${sudo[@]}"} apt-get update >&2
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    bindir=$(find_bindir)
    [[ -n "$bindir" ]] || die "apt-get installed postgresql, but no initdb was found under /usr/lib/postgresql"
}

# as_server CMD...: runs CMD as the user that owns the cluster.
as_server() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

ensure_server_user() {
    [[ $(id -u) -eq 0 ]] || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        say "creating the system user $PG_USER (PostgreSQL refuses to run as root)"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_USER"
    fi
}

# write_secret FILE VALUE: creates FILE with mode 0600 before any byte is written.
write_secret() {
    local file=$1 value=$2
    (umask 077 && printf '%s' "$value" >"$file")
    chmod 0600 "$file"
}

random_password() {
    # 32 hex digits from the kernel's CSPRNG: safe inside a URL and an SQL literal without quoting.
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# port_in_use PORT: whether something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    local port tries
    for tries in $(seq 1 50); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if ! port_in_use "$port"; then
            printf '%s' "$port"
            return 0
        fi
    done
    die "no free TCP port found on 127.0.0.1 after $tries tries"
}

# ensure_tls: a CA of the cluster's own and a server certificate it signed (P-256, ten years, for
# 127.0.0.1 and localhost), made once. The CA's key is deleted at once: nothing else is ever signed.
ensure_tls() {
    local tls="$dir/tls"
    if [[ -s "$tls/ca.crt" && -s "$tls/server.crt" && -s "$tls/server.key" ]]; then
        return 0
    fi
    command -v openssl >/dev/null 2>&1 || die "openssl not found (Debian: apt-get install openssl)"
    rm -rf "$tls"
    (umask 077 && mkdir "$tls")
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -days 3650 -subj "/CN=offline-signer test database CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null || die "openssl could not make the CA"
    openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr" \
        2>/dev/null || die "openssl could not make the server key"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -set_serial 1 \
        -days 3650 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null ||
        die "openssl could not sign the server certificate"
    rm -f "$tls/ca.key" "$tls/server.csr" "$tls/server.ext"
    chmod 0600 "$tls/server.key"
    chmod 0644 "$tls/ca.crt" "$tls/server.crt"
    chmod 0755 "$tls"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R "$PG_USER:" "$tls"
    fi
}

# write_conf PORT: the settings this script owns, read by the server at start and at reload.
write_conf() {
    # Small and quick, but durable: fsync and synchronous_commit keep their defaults (on), because
    # the store's durability tests rely on them.
    as_server tee "$pgdata/offline-signer.conf" >/dev/null <<EOF
# Written by scripts/postgres-init.sh on every run.
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 32MB
dynamic_shared_memory_type = posix
max_wal_size = 256MB
log_min_messages = warning
log_min_error_statement = panic
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
EOF
}

is_running() {
    [[ -f "$pgdata/PG_VERSION" ]] && as_server "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1
}

if $stop && [[ ! -d "$dir_arg" ]]; then
    say "no cluster in $dir_arg: nothing to stop"
    exit 0
fi
mkdir -p "$dir_arg"
dir=$(cd "$dir_arg" && pwd -P)
pgdata="$dir/pgdata"
# The unix socket path must fit in 107 bytes.
if [[ $((${#dir} + 20)) -gt 107 ]]; then
    die "DIR is too long for a unix socket path ($dir); use a shorter directory"
fi

if $stop; then
    bindir=$(find_bindir)
    if [[ -z "$bindir" || ! -f "$pgdata/PG_VERSION" ]]; then
        say "no cluster in $dir: nothing to stop"
        exit 0
    fi
    if is_running; then
        as_server "$bindir/pg_ctl" -D "$pgdata" stop -m fast -w >&2
    else
        say "the cluster in $dir is not running"
    fi
    exit 0
fi

ensure_postgres
ensure_server_user

# The server's user must reach DIR (a temp dir made by root is 0700): DIR becomes its own, and stays
# closed to everyone else because the unix socket (trusted) lives there.
if [[ $(id -u) -eq 0 ]]; then
    chown "$PG_USER:" "$dir"
    chmod 0700 "$dir"
    if ! as_server test -x "$dir"; then
        die "$PG_USER cannot reach $dir (a parent directory is closed to it); choose a DIR under /tmp"
    fi
fi

if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    say "initdb $pgdata ($("$bindir/initdb" --version))"
    rm -rf "$pgdata"
    as_server mkdir -m 0700 "$pgdata"
    # Local (unix socket) connections are trusted: the socket lives in DIR, which only the server's user
    # (and root) can enter. TCP connections need the password.
    as_server "$bindir/initdb" -D "$pgdata" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
        die "initdb failed; see $dir/initdb.log"
    echo "include_if_exists = 'offline-signer.conf'" | as_server tee -a "$pgdata/postgresql.conf" >/dev/null
fi

if [[ -s "$dir/db.password" ]]; then
    password=$(tr -d '\r\n' <"$dir/db.password")
else
    password=$(random_password)
    write_secret "$dir/db.password" "$password"
fi
chmod 0600 "$dir/db.password"

ensure_tls
if is_running; then
    port=$(cat "$dir/port")
    say "the cluster in $dir is already running on port $port"
    # A cluster made by an older version of this script gets TLS without a restart.
    write_conf "$port"
    as_server "$bindir/pg_ctl" -D "$pgdata" reload >/dev/null
else
    port=""
    if [[ -s "$dir/port" ]] && ! port_in_use "$(cat "$dir/port")"; then
        port=$(cat "$dir/port")
    fi
    started=false
    for attempt in 1 2 3 4 5; do
        [[ -n "$port" ]] || port=$(pick_port)
        write_conf "$port"
        printf '%s' "$port" >"$dir/port"
        if as_server "$bindir/pg_ctl" -D "$pgdata" -l "$dir/postgres.log" -w -t 60 start >&2; then
            started=true
            break
        fi
        say "start on port $port failed (attempt $attempt); see $dir/postgres.log"
        port=""
    done
    $started || die "the server did not start; see $dir/postgres.log"
fi

# Role and database, over the trusted unix socket as the superuser. The password travels on stdin, never
# on a command line.
psql_admin() {
    psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"
}
psql_admin -d postgres >&2 <<EOF
SELECT format('CREATE ROLE %I LOGIN CREATEDB', '$ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE LOGIN CREATEDB PASSWORD '$password';
SELECT format('CREATE DATABASE %I OWNER %I', '$DATABASE', '$ROLE')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DATABASE') \gexec
EOF

say "PostgreSQL ready on 127.0.0.1:$port (socket in $dir); password in $dir/db.password"
echo "OFFLINE_SIGNER_DATABASE_URL=postgres://$ROLE:$password@127.0.0.1:$port/$DATABASE"
