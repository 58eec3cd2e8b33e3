#!/usr/bin/env bash
# Exit codes: the program's own, 128+N for a signal, -1 on timeout (VM destroyed).
source "$(dirname "$0")/lib.sh"
start_bus

"$SBX" run 'import sys; sys.exit(3)' >/dev/null 2>&1; rc=$?
check "python sys.exit(3) gives exit status 3" [ $rc -eq 3 ]

run_json -l raw 'exit 7'
check "raw exit 7 gives exit_code 7" [ "$(jget .exit_code)" = "7" -a $RC -eq 7 ]

run_json 'raise ValueError("boom")'
tb=0; grep -q "ValueError: boom" <<<"$(jget .stderr)" && tb=1
check "an uncaught exception gives exit_code 1 and its traceback on stderr" [ "$(jget .exit_code)" = "1" -a $tb -eq 1 ]

run_json 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'
check "death by SIGKILL gives 137" [ "$(jget .exit_code)" = "137" ]

run_json -l javascript 'process.kill(process.pid, "SIGTERM")'
check "javascript killed by SIGTERM gives 143" [ "$(jget .exit_code)" = "143" ]

start=$SECONDS
run_json -t 2 'while True: pass'
elapsed=$((SECONDS - start))
check "an infinite loop ends at its timeout with exit_code -1" [ "$(jget .exit_code)" = "-1" -a "$(jget .timed_out)" = "true" ]
check "the timeout reason is in stderr" grep -q "timed out" <<<"$(jget .stderr)"
check "the CLI exits 124 on timeout" [ $RC -eq 124 ]
diag "timeout run took ${elapsed}s"
check "the timed-out VM's QEMU process is gone" wait_gone 10

"$SBX" run -q -t 2 -l raw 'sleep 100' >/dev/null 2>&1; rc=$?
check "a sleeping raw script also times out (124)" [ $rc -eq 124 ]

check_no_leaks "exit-code runs"
finish
