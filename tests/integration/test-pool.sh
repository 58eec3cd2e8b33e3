#!/usr/bin/env bash
# The warm pool: runs take a booted VM whose interpreter already runs, get
# their own env and exit code, never see another run's state, and the pool
# refills; a request that needs the room evicts pool VMs; resizing is for
# administrators; nothing is left behind.
source "$(dirname "$0")/lib.sh"
start_bus

pool_field() { # LANG COLUMN(2 target, 3 ready, 4 starting)
    "$SBXCTL" pool | awk -v l="$1" -v c="$2" '$1 == l { print $c }'
}
wait_pool_ready() { # LANG N [SECONDS]
    local deadline=$((SECONDS + ${3:-120}))
    while [[ $SECONDS -lt $deadline ]]; do
        [[ "$(pool_field "$1" 3)" -ge "$2" && "$(pool_field "$1" 4)" -eq 0 ]] && return 0
        sleep 0.2
    done
    return 1
}

check "sbxctl pool set (root)" "$SBXCTL" pool set python=1 raw=1
check "the python and raw pools fill" wait_pool_ready python 1
wait_pool_ready raw 1

run_json -e GREETING=hello -c 'import os, sys; print(os.environ["GREETING"]); sys.exit(7)'
check "a warm run reports warm_pool_hit and tier warm" \
    [ "$(jget .warm_pool_hit)" = true -a "$(jget .snapshot_tier)" = warm ]
check "it gets its own env, output and exit code" [ "$(jget .stdout)" = hello -a "$(jget .exit_code)" = 7 ]
check "its boot happened before the request (timing_boot_ms 0)" [ "$(jget .timing_boot_ms)" = 0 ]

check "the pool refills after a take" wait_pool_ready python 1

run_json -c 'secret = 42; open("/tmp/left-behind", "w").write("x"); print("first")'
wait_pool_ready python 1
run_json -c 'import os; print("secret" in globals(), os.path.exists("/tmp/left-behind"))'
check "the next warm run sees nothing of the previous one (fresh VM)" \
    [ "$(jget .stdout)" = "False False" -a "$(jget .warm_pool_hit)" = true ]

wait_pool_ready raw 1
run_json -l raw -c 'echo "$HOME $(id -u)"; ls /nonexistent'
check "raw warm run: uid 1000, stderr and exit code kept" \
    [ "$(jget .stdout)" = "/home/user 1000" -a "$(jget .exit_code)" = 2 -a "$(jget .warm_pool_hit)" = true ]
[[ "$(jget .stdout)" = "/home/user 1000" ]] || diag "$(cat "$TMP/out.json")"

wait_pool_ready python 1
run_json -t 1 -c 'while True: pass'
check "a warm run that times out: timed_out, exit -1" \
    [ "$(jget .timed_out)" = true -a "$(jget .exit_code)" = -1 -a "$(jget .warm_pool_hit)" = true ]

wait_pool_ready python 1
run_json -c 'raise ValueError("boom")'
check "an exception in a warm run: exit 1 with the traceback" \
    [ "$(jget .exit_code)" = 1 ] && grep -q "ValueError: boom" <<<"$(jget .stderr)"

run_json --cold -c 'print(2)'
check "--cold (warm_pool=false, snapshot=false) boots its own VM" \
    [ "$(jget .warm_pool_hit)" = false -a "$(jget .snapshot_tier)" = cold -a "$(jget .stdout)" = 2 ]

# Room: as many pool VMs as the CPU side allows busy VMs; idle ones count only against memory,
# so cold runs still start (and a starting pool VM would be stopped for them).
max=$("$SBXCTL" status --json | jq -r '.max_vms')
"$SBXCTL" pool set python=$((max - 1)) raw=1 >/dev/null
wait_pool_ready python $((max - 1)) 240
for i in 1 2; do "$SBX" run --json --cold -c "print($i)" >"$TMP/c$i.json" 2>"$TMP/ce$i" & done
wait
check "cold runs start while the pool holds max_vms VMs" \
    [ "$(jq -r .stdout "$TMP/c1.json")" = 1 -a "$(jq -r .stdout "$TMP/c2.json")" = 2 ]
diag "$(cat "$TMP"/ce* 2>/dev/null)"

"$SBXCTL" pool set python=0 raw=0 >/dev/null
check "shrinking the pool to 0 stops its VMs" wait_gone 20
check "status reports the budget" \
    [ "$("$SBXCTL" status --json | jq -r '.memory_budget_mb > 0 and .warm_pool_hits >= 5')" = true ]

"$SBXCTL" pool set cobol=1 >/dev/null 2>"$TMP/err"; rc=$?
check "an unknown language is refused with InvalidInput (exit 2)" [ $rc -eq 2 ] && grep -q InvalidInput "$TMP/err"
"$SBXCTL" pool set python=65 >/dev/null 2>"$TMP/err"; rc=$?
check "a pool above 64 is refused" [ $rc -eq 2 ]
# test-session-access.sh checks that a non-admin uid gets AccessDenied on a system-like bus.
check "the pool stays empty after the refusals" [ "$(pool_field python 2)" = 0 ]

check_no_leaks "warm pool runs"
finish
