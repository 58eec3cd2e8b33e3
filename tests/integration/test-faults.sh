#!/usr/bin/env bash
# SIGKILL of a worker or of its QEMU mid-run gives VmTransient and leaves nothing behind.
source "$(dirname "$0")/lib.sh"
start_bus
"$SBX" run 'print("warm")' >/dev/null 2>&1 # activate the broker first

kill_mid_run() {
    local what=$1
    "$SBX" run -t 60 'import time; print("started", flush=True); time.sleep(50)' >"$TMP/o" 2>"$TMP/e" &
    local cli=$!
    local deadline=$((SECONDS + 60))
    while [[ $SECONDS -lt $deadline ]] && ! grep -q started "$TMP/o"; do sleep 0.2; done
    local victims
    if [[ $what == worker ]]; then victims=$(worker_pids); else victims=$(qemu_pids); fi
    [[ -n "$victims" ]] && kill -KILL $victims
    wait $cli; RC=$?
}

kill_mid_run worker
check "SIGKILL of the worker mid-run → org.sbx.Error.VmTransient" grep -q "org.sbx.Error.VmTransient" "$TMP/e"
check "  and the CLI exits 75 (retryable)" [ $RC -eq 75 ]
check_no_leaks "killing a worker"

kill_mid_run qemu
check "SIGKILL of QEMU mid-run → org.sbx.Error.VmTransient" grep -q "org.sbx.Error.VmTransient" "$TMP/e"
diag "$(cat "$TMP/e")"
check_no_leaks "killing QEMU"

# A client that disconnects mid-run: the broker cancels the job and the VM goes away.
"$SBX" run -t 60 'import time; print("started", flush=True); time.sleep(50)' >"$TMP/o" 2>&1 &
cli=$!
deadline=$((SECONDS + 60))
while [[ $SECONDS -lt $deadline ]] && ! grep -q started "$TMP/o"; do sleep 0.2; done
kill -KILL $cli; wait $cli 2>/dev/null
check "a client killed mid-run makes its VM go away" wait_gone 15
check_no_leaks "a vanished client"

check "the broker survived all of it" broker_alive
out=$("$SBX" run 'print("ok")' 2>/dev/null)
check "and still runs code" [ "$out" = "ok" ]
finish
