#!/usr/bin/env bash
# A bounded fuzz smoke run for CI: builds the cargo-fuzz targets, then runs each for N seconds
# (default 20) from the committed seed corpus in fuzz/seeds/. New inputs go to a temporary
# directory, so the seeds are never modified. Fails on the first crash, leaving its input in
# fuzz/artifacts/<target>/.
#
#   fuzz/smoke.sh [seconds]        needs: cargo-fuzz; the nightly toolchain if rustup has it,
#                                  else stable with RUSTC_BOOTSTRAP=1 (for -Zsanitizer)
#
# Set CARGO_TARGET_DIR to share a build directory; FUZZ_TARGETS to run only some targets.
set -euo pipefail

secs="${1:-20}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
targets="${FUZZ_TARGETS:-text meta binary split_feed record}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

"${fuzz[@]}" build
for t in $targets; do
    mkdir -p "$work/$t"
    echo "== $t: ${secs}s"
    if ! "${fuzz[@]}" run "$t" "$work/$t" "seeds/$t" -- \
        -dict="dict/$t.dict" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$work/$t.log" 2>&1; then
        tail -n 60 "$work/$t.log"
        echo "fuzz smoke: $t failed" >&2
        exit 1
    fi
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units)' "$work/$t.log" || true
done
echo "fuzz smoke: all targets passed"
