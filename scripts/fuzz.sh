#!/usr/bin/env bash
# Fuzzes Manifold's parsers with cargo-fuzz (libFuzzer): the HLS and DASH personalization
# paths, SCTE-35 decoding, VAST parsing, routing, session and auth tokens, config parsing and
# the manifest cache's TTL arithmetic (fuzz/fuzz_targets/). Not part of CI.
#
#   scripts/fuzz.sh                 # every target for 60 s
#   scripts/fuzz.sh hls vast        # some targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#   FUZZ_SANITIZER=address scripts/fuzz.sh   # ASan (slower; the default is none, see below)
#
# Installs what it needs: a nightly toolchain (rustup) and cargo-fuzz (cargo install).
# Each run starts from the seed corpus (fuzz/seeds/<target>: samples/ manifests, the origin
# simulator's manifests, SCTE-35 sections and VAST documents) plus what earlier runs found
# (fuzz/corpus/<target>, not committed). A crash leaves its input in fuzz/artifacts/<target>/;
# reproduce with `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...`, then
# make it a regression test (proxy/ssai/tests/bad_input.rs or the module's unit tests).
#
# Prints, per target, the executions and the final coverage; a summary line at the end.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
# The code under test is safe Rust: what fuzzing finds is panics, arithmetic overflow
# (debug assertions are on), hangs and runaway memory, which need no sanitizer. ASan doubles
# build and run time; ask for it with FUZZ_SANITIZER=address.
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}" # parallel fuzzing processes per target
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=()
    for f in fuzz_targets/*.rs; do TARGETS+=("$(basename "$f" .rs)"); done
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "installing the nightly toolchain (cargo-fuzz needs -Z flags)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

for t in "${TARGETS[@]}"; do
    cargo +nightly fuzz build -s "$SANITIZER" "$t"
done

mkdir -p logs
summary=()
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="logs/$t.log"
    echo "== $t: ${SECONDS_PER_TARGET}s"
    set +e
    parallel=()
    if [ "$JOBS" -gt 1 ]; then
        # libFuzzer's jobs mode: each job logs to fuzz-<n>.log, gathered below
        rm -f fuzz-*.log
        parallel=(-jobs="$JOBS" -workers="$JOBS")
    fi
    cargo +nightly fuzz run -s "$SANITIZER" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=4096 \
        -max_len=65536 -print_final_stats=1 "${parallel[@]}" >"$log" 2>&1
    rc=$?
    if [ "$JOBS" -gt 1 ]; then
        cat fuzz-*.log >>"$log" 2>/dev/null || true
        rm -f fuzz-*.log
    fi
    set -e
    execs=$({ grep -E '^stat::number_of_executed_units' "$log" || true; } | awk '{s+=$2} END {print s+0}')
    cov=$({ grep -oE 'cov: [0-9]+' "$log" || true; } | tail -n1 | awk '{print $2}')
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "   FAILED (exit $rc): see fuzz/$log and fuzz/artifacts/$t/"
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -n 5 || true
    fi
    echo "   executions: ${execs}, coverage: ${cov:-?}"
    summary+=("$t: ${execs} executions in ${SECONDS_PER_TARGET}s, cov ${cov:-?}, exit ${rc}")
done
echo
printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
