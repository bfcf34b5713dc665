#!/usr/bin/env bash
# Runs every coverage-guided fuzz target of fuzz/ (cargo-fuzz + libFuzzer) for a short, bounded time and
# fails on the first crash, panic, overflow, timeout or out-of-memory. The long runs are in
# docs/robustness.md.
#
#   ./scripts/fuzz-smoke.sh                 # every target, FUZZ_SECONDS each (default 12)
#   FUZZ_SECONDS=300 ./scripts/fuzz-smoke.sh store_records api_request
#
# Installs cargo-fuzz when missing (`cargo install --locked cargo-fuzz`). The machine has one stable
# toolchain. With `--sanitizer none`, cargo-fuzz 0.13.2 passes only stable `-C` flags (its source:
# -Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*); RUSTC_BOOTSTRAP=1 is set anyway so that the
# `-Z` flags of its other modes (sanitizers, --build-std) work for a local investigation.
# No sanitizer: the workspace forbids `unsafe`, so AddressSanitizer would find nothing safe Rust does not
# already check; without it each target runs several times faster.
#
# Each run starts from the seeds in fuzz/seeds/<target> and grows a corpus in fuzz/corpus/<target>
# (not committed). A crash leaves its input in fuzz/artifacts/<target>/ and the exact command to
# reproduce it in the output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-12}
export RUSTC_BOOTSTRAP=1
# The instrumented release build of the targets is the expensive part (one codegen unit, every
# dependency rebuilt with coverage instrumentation): it is kept outside the checkout, like a CI cache,
# so that a new clone on the same machine rebuilds only this workspace's own crates.
target_dir=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/offline-signer/fuzz-target}
mkdir -p "$target_dir"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> Installing cargo-fuzz (one time)"
    cargo install --locked cargo-fuzz
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

echo "==> Building the fuzz targets (release, libFuzzer coverage instrumentation, no sanitizer)"
timeout 1800 cargo fuzz build --fuzz-dir fuzz --sanitizer none --target-dir "$target_dir"

failed=()
for target in "${targets[@]}"; do
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    seeds=()
    [ -d "fuzz/seeds/$target" ] && seeds=("fuzz/seeds/$target")
    echo "==> $target: ${seconds}s"
    log=$(mktemp)
    # -timeout: one input taking longer than 5 s is a hang; -rss_limit_mb: a memory blow-up is a crash.
    # The outer timeout bounds the run should libFuzzer itself stop answering.
    if timeout $((seconds + 60)) cargo fuzz run --fuzz-dir fuzz --sanitizer none \
        --target-dir "$target_dir" "$target" \
        "$corpus" ${seeds[@]+"${seeds[@]}"} -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr '\n' ' '
        echo
    else
        tail -n 40 "$log"
        echo "FUZZ FAILURE: $target (input kept in fuzz/artifacts/$target/)" >&2
        failed+=("$target")
    fi
    rm -f "$log"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, ${seconds}s each, no crash"
