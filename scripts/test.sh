#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test suite:
#   build/        unit, fuzz (seed-corpus replay) and integration (real VMs under TCG)
#   build-asan/   unit and fuzz-replay again under AddressSanitizer + UBSan
#   build-fuzz/   each libFuzzer target for a short run (clang)
# Ends with one line "N passed, N failed" over all of them.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh "$root/build" || exit 1

status=0
run_suites() { # BUILDDIR SUITE...
    local dir=$1; shift
    local args=()
    for s in "$@"; do args+=(--suite "$s"); done
    meson test -C "$dir" "${args[@]}" --print-errorlogs --num-processes 2 || status=1
}

run_suites build unit fuzz integration

if [[ ! -f build-asan/build.ninja ]]; then
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dguest=false >/dev/null || status=1
fi
ninja -C build-asan >/dev/null && run_suites build-asan unit fuzz

if command -v clang >/dev/null; then
    if [[ ! -f build-fuzz/build.ninja ]]; then
        CC=clang meson setup build-fuzz -Dfuzz=true -Dguest=false >/dev/null || status=1
    fi
    ninja -C build-fuzz >/dev/null && run_suites build-fuzz fuzz
fi

passed=0; failed=0; skipped=0
for d in build build-asan build-fuzz; do
    log=$d/meson-logs/testlog.json
    [[ -f $log ]] || continue
    passed=$((passed + $(jq -s '[.[] | select(.result == "OK" or .result == "EXPECTEDFAIL")] | length' "$log")))
    failed=$((failed + $(jq -s '[.[] | select(.result == "FAIL" or .result == "TIMEOUT" or .result == "ERROR" or .result == "UNEXPECTEDPASS")] | length' "$log")))
    skipped=$((skipped + $(jq -s '[.[] | select(.result == "SKIP")] | length' "$log")))
done
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 && $status -eq 0 ]]
