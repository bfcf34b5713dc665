#!/usr/bin/env bash
# Runs the benchmark of issue 7 against a throwaway SoftHSM token and prints its summary table.
#
#   ./scripts/bench.sh                       # the full run (about 10 minutes on 2 cores)
#   BENCH_GROWTH=0 BENCH_SECONDS=1 ./scripts/bench.sh   # a quick trial: no growth run, short points
#   BENCH_STORE=postgres ./scripts/bench.sh             # the same on PostgreSQL (a throwaway cluster)
#   BENCH_STORE=postgres BENCH_INSTANCES=2 ./scripts/bench.sh   # two servers on one database and token
#
# Everything goes to target/bench/ (wiped first):
#   result.json    every figure (ceilings, service over HTTP, ratios, growth, memory, micro-benchmarks)
#   chart.svg      throughput and p99 against concurrency for the three methods
#   summary.md     the tables printed at the end, with each target met or not
#   hsm/           the throwaway token (scripts/softhsm-init.sh); also config.toml, data/, server logs, and
#   devices.jsonl  the simulated tokens' states (factor keys of throwaway activations; mode 0600)
#   pg/            with BENCH_STORE=postgres: the throwaway cluster (scripts/postgres-init.sh), stopped at
#                  the end, failure or not; config.toml (and config-2.toml, ...) is one instance each
#
# Settings (environment):
#   BENCH_ACTIVATIONS  activations in play for the main runs            (default 1000)
#   BENCH_GROWTH       activations registered in total for the growth run (default 100000; 0 skips)
#   BENCH_SECONDS      seconds per measured point                        (default 4)
#   BENCH_POOL         signer pool size (sessions / HSM worker threads)  (default 2)
#   BENCH_PORT         loopback port of the server                       (default 38417)
#   BENCH_STORE        sled or postgres                                  (default sled)
#   BENCH_INSTANCES    servers sharing the store (postgres only); instance i listens on
#                      BENCH_PORT+i-1 and the load takes them in turn    (default 1)
#   BENCH_PG_POOL      PostgreSQL connections per instance               (default 16)
#   BENCH_PG_LANES     audit chains per instance ([store] audit_lanes)   (default: the store's, 8)
#   BENCH_MICRO        0 skips the criterion micro-benchmarks            (default 1)
#   BENCH_NOTE         free text recorded in result.json                 (default: the load average)
#   BENCH_SERVER_BIN   an offline-signer binary to measure instead of this checkout's (an older build,
#                      for a before/after comparison on the same machine; same configuration format)
#   CARGO_TARGET_DIR   honoured; the release binary and criterion output are taken from it
#
# Installs softhsm2 when missing (through scripts/softhsm-init.sh; needs root or sudo), and PostgreSQL
# when BENCH_STORE=postgres and it is missing (through scripts/postgres-init.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n==> %s\n' "$*" >&2; }

activations=${BENCH_ACTIVATIONS:-1000}
growth=${BENCH_GROWTH:-100000}
seconds=${BENCH_SECONDS:-4}
pool=${BENCH_POOL:-2}
port=${BENCH_PORT:-38417}
micro=${BENCH_MICRO:-1}
store=${BENCH_STORE:-sled}
instances=${BENCH_INSTANCES:-1}
pg_pool=${BENCH_PG_POOL:-16}
pg_lanes=${BENCH_PG_LANES:-}
target_dir=${CARGO_TARGET_DIR:-target}
out=target/bench
label=offline-signer-bench
module=/usr/lib/softhsm/libsofthsm2.so
started=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

case "$store" in
sled | postgres) ;;
*)
    echo "bench: BENCH_STORE must be sled or postgres, not '$store'" >&2
    exit 2
    ;;
esac
if ! [[ $instances =~ ^[1-9][0-9]*$ ]]; then
    echo "bench: BENCH_INSTANCES must be a positive number, not '$instances'" >&2
    exit 2
fi
if [[ $store == sled && $instances -gt 1 ]]; then
    echo "bench: sled admits one process; BENCH_INSTANCES=$instances needs BENCH_STORE=postgres" >&2
    exit 2
fi
for ((i = 0; i < instances; i++)); do
    if command -v ss >/dev/null 2>&1 && ss -Hltn "sport = :$((port + i))" | grep -q .; then
        echo "bench: port $((port + i)) is in use; set BENCH_PORT" >&2
        exit 1
    fi
done

# A cluster left running by an interrupted run is stopped before its folder goes.
if [[ -f "$out/pg/pgdata/PG_VERSION" ]]; then
    ./scripts/postgres-init.sh --stop "$out/pg" || true
fi
say "Fresh folder $out"
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd -P)

say "SoftHSM: a throwaway token '$label' (installs softhsm2 if missing)"
eval "$(./scripts/softhsm-init.sh "$out/hsm" "$label")"
export SOFTHSM2_CONF
[[ -f "$module" ]] || module=$(find /usr/lib -name libsofthsm2.so -print -quit)
[[ -n "$module" ]] || { echo "bench: libsofthsm2.so not found" >&2; exit 1; }

say "Building the release binaries (offline-signer, offline-token)"
cargo build --release --locked --bin offline-signer --bin offline-token
bin="$target_dir/release/offline-signer"
token="$target_dir/release/offline-token"
if [[ -n "${BENCH_SERVER_BIN:-}" ]]; then
    bin=$(cd "$(dirname "$BENCH_SERVER_BIN")" && pwd -P)/$(basename "$BENCH_SERVER_BIN")
    [[ -x "$bin" ]] || { echo "bench: BENCH_SERVER_BIN $BENCH_SERVER_BIN is not an executable" >&2; exit 1; }
    say "Measuring the server binary $bin (BENCH_SERVER_BIN) with this checkout's load generator"
fi

criterion=()
if [[ "$micro" != 0 ]]; then
    say "Micro-benchmarks (criterion, short measurement times)"
    rm -rf "$target_dir/criterion"
    cargo bench --locked -p offline-signer-crypto --bench crypto -- --warm-up-time 1 --measurement-time 3 --noplot >&2
    criterion=(--criterion "$target_dir/criterion")
fi

# signer_table: the [signer] table every instance shares (one token).
signer_table() {
    cat <<EOF
[signer]
kind = "pkcs11"
module = "$module"
token_label = "$label"
pin_file = "hsm/user.pin"
pool_size = $pool
EOF
}

configs=(--config "$out/config.toml")
if [[ $store == sled ]]; then
    {
        cat <<EOF
# Written by scripts/bench.sh: a throwaway token and data directory under target/bench.
listen = "127.0.0.1:$port"
data_dir = "data"
restrict_access = true

EOF
        signer_table
    } >"$out/config.toml"
else
    say "PostgreSQL: a throwaway cluster in $out/pg (installs PostgreSQL if missing)"
    trap './scripts/postgres-init.sh --stop "$out/pg" >&2 || true' EXIT
    line=$(./scripts/postgres-init.sh "$out/pg")
    export "${line?}"
    configs=()
    for ((i = 1; i <= instances; i++)); do
        file=$out/config.toml
        [[ $i -eq 1 ]] || file=$out/config-$i.toml
        {
            cat <<EOF
# Written by scripts/bench.sh: instance $i of $instances on the throwaway PostgreSQL cluster in pg/
# (OFFLINE_SIGNER_DATABASE_URL gives the database; the audit chain id is kept beside this file).
listen = "127.0.0.1:$((port + i - 1))"
restrict_access = true

[store]
kind = "postgres"
pool_size = $pg_pool
${pg_lanes:+audit_lanes = $pg_lanes}

EOF
            signer_table
        } >"$file"
        configs+=(--config "$file")
    done
    configs+=(--store-disk "$out/pg/pgdata/base" --database-pid-file "$out/pg/pgdata/postmaster.pid")
fi

say "Key ceremony: the trusted KEK (security officer)"
"$bin" hsm provision --config "$out/config.toml" --so-pin-file "$out/hsm/so.pin" >&2

note=${BENCH_NOTE:-}
load=$(cut -d' ' -f1-3 /proc/loadavg)
note="load average when bench.sh started: $load_at_start; after the build and criterion: $load${note:+; $note}"

say "offline-token bench run ($store, $instances instance(s), activations $activations, growth $growth, $seconds s per point)"
"$token" bench run \
    --server-bin "$bin" \
    "${configs[@]}" \
    --dir "$out" \
    --activations "$activations" \
    --growth "$growth" \
    --seconds "$seconds" \
    ${criterion[@]+"${criterion[@]}"} \
    --note "$note"

say "Done in $(($(date +%s) - started)) s: $out/result.json, $out/chart.svg, $out/summary.md"
