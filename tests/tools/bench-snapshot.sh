#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# L1 snapshot benchmark, one worker at a time through sbx-worker-client (no broker, no D-Bus):
#   bench-snapshot.sh BUILDDIR [N] [LANG]
# For each mode, N sessions; prints median and p95 (ms, measured by the client from spawning the
# worker) of: READY, first output of print(1) (or its equivalent), and the worker's restore_ms.
#   l1         SNAPSHOT=1: restore, RESUME, READY; then the exec (TCG translates the exec path)
#   l1+warm    SNAPSHOT=1 WARM=1: the restored VM runs the warm-up before READY (pool refills)
#   cold+warm  WARM=1 without a snapshot: cold boot, interpreter started, READY
# Uses a private state_dir and its own sbx-cache; the first l1 session builds the snapshot and is
# not counted.
set -euo pipefail
BUILD=$(cd "${1:?usage: bench-snapshot.sh BUILDDIR [N] [LANG]}" && pwd)
N=${2:-20}
LANG_=${3:-python}
WC="$BUILD/sbx-vmworker/sbx-worker-client"
WORKER="$BUILD/sbx-vmworker/sbx-vmworker"
TMP=$(mktemp -d /tmp/sbx-bench-snapshot.XXXXXX)
grep -v '^state_dir\|^runtime_dir' "$BUILD/sbx.conf" >"$TMP/sbx.conf"
echo "state_dir = $TMP/state" >>"$TMP/sbx.conf"
echo "runtime_dir = $TMP/run" >>"$TMP/sbx.conf"
export SBX_CONFIG="$TMP/sbx.conf" SBX_LOG_LEVEL=warning
mkdir -p "$TMP/run"
"$BUILD/sbx-cache/sbx-cache" &
CACHE_PID=$!
trap 'kill $CACHE_PID 2>/dev/null; wait $CACHE_PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 50); do [[ -S "$TMP/run/cache.sock" ]] && break; sleep 0.1; done
case $LANG_ in
python) CODE='print(1)' ;;
javascript) CODE='console.log(1)' ;;
raw) CODE='echo 1' ;;
esac
printf 'exec %s\nclose\n' "$CODE" >"$TMP/script"

run() { # MODE OPTIONS...: one session, prints "ready first restore"
    local out
    out=$("$WC" --worker "$WORKER" --accel tcg --lang "$LANG_" --session --timing "${@:2}" "$TMP/script" 2>&1 >/dev/null)
    awk '/^timing ready_ms=/ { split($2, a, "="); r = a[2] }
         /^timing first_output_ms=/ { split($2, a, "="); f = a[2] }
         /^session_ready/ { for (i = 1; i <= NF; i++) if ($i ~ /^restore_ms=/) { split($i, a, "="); x = a[2] } }
         END { printf "%s %s %s\n", r, f, x == "" ? "-" : x }' <<<"$out"
}
stats() { # FILE COLUMN: median p95
    awk -v c="$2" '$c != "-" { print $c }' "$1" | sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- -"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        i = int(NR * 0.95 + 0.999); if (i > NR) i = NR
        printf "%.1f %.1f\n", m, v[i] }'
}

run build --snapshot >/dev/null # builds the snapshot
for _ in $(seq 100); do [[ -z "$(find "$TMP/state/cache/l1" -maxdepth 1 -name '*.tmp-*')" ]] && break; sleep 0.2; done
printf '%-10s %4s   %-17s %-22s %-17s\n' mode n "ready p50/p95" "first output p50/p95" "restore p50/p95"
for mode in l1 l1+warm cold+warm; do
    : >"$TMP/$mode"
    n=$N
    [[ $mode == cold+warm ]] && n=$(((N + 3) / 4)) # cold boots take seconds
    for _ in $(seq "$n"); do
        case $mode in
        l1) run "$mode" --snapshot ;;
        l1+warm) run "$mode" --snapshot --warm ;;
        cold+warm) run "$mode" --warm ;;
        esac >>"$TMP/$mode"
    done
    read -r r50 r95 <<<"$(stats "$TMP/$mode" 1)"
    read -r f50 f95 <<<"$(stats "$TMP/$mode" 2)"
    read -r x50 x95 <<<"$(stats "$TMP/$mode" 3)"
    printf '%-10s %4s   %7s / %-7s   %7s / %-10s   %7s / %-7s\n' "$mode" "$n" "$r50" "$r95" "$f50" "$f95" "$x50" "$x95"
done
du -sh --apparent-size "$TMP/state/cache/l1"/*/ram | sed 's/^/RAM file apparent: /'
du -sh "$TMP/state/cache/l1"/*/ram | sed 's/^/RAM file on disk:  /'
