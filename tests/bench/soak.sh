#!/usr/bin/env bash
# Soak benchmark (issue 6): N runs at concurrency C with mixed languages on a
# private bus, then a listing of what is left behind. Prints figures; the
# failure target is 0. Not part of the test suites: it takes minutes.
#   tests/bench/soak.sh [BUILDDIR] [RUNS] [CONCURRENCY] [POOL_PER_LANGUAGE]
set -uo pipefail
build=${1:-build}
runs=${2:-1000}
conc=${3:-4}
pool=${4:-1}
source "$(dirname "$0")/../integration/lib.sh" "$build"
start_bus

"$SBXCTL" status >/dev/null || { echo "soak: the broker did not start"; exit 1; }
"$SBXCTL" pool set python="$pool" javascript="$pool" raw="$pool" >/dev/null
echo "soak: $runs runs at concurrency $conc, warm pool $pool per language, $(nproc) CPUs"
# sbx-cache is the broker's child (embedded mode): its pid from GetStatus, its RSS and fds from /proc.
cache_stats() {
    local pid
    pid=$("$SBXCTL" status --json 2>/dev/null | jq -r '.cache_pid // 0 | select(. > 0)')
    [[ -n "$pid" ]] || { echo "- -"; return; }
    echo "$(awk '/^VmRSS:/ {print $2}' /proc/$pid/status) $(ls /proc/$pid/fd | wc -l) $pid"
}
read -r cache_rss0 cache_fds0 cache_pid0 <<<"$(cache_stats)"
start=$SECONDS
"$SBXCTL" bench soak -n "$runs" -c "$conc"
rc=$?
read -r cache_rss1 cache_fds1 cache_pid1 <<<"$(cache_stats)"
echo "sbx-cache RSS:   $cache_rss0 kB at start, $cache_rss1 kB at end; fds $cache_fds0 at start, $cache_fds1 at end$([[ "$cache_pid0" != "$cache_pid1" ]] && echo " (RESTARTED)")"
echo "wall time:       $((SECONDS - start)) s"

"$SBXCTL" pool set python=0 javascript=0 raw=0 >/dev/null
wait_gone 30
q=$(qemu_pids); w=$(worker_pids); c=$(vm_cgroups); f=$(runtime_files)
echo "left behind:     QEMU [${q//$'\n'/ }] workers [${w//$'\n'/ }] cgroups [${c//$'\n'/ }] runtime files [${f//$'\n'/ }]"
[[ -z "$q$w$c$f" ]] && echo "leaks:           none"
exit $rc
