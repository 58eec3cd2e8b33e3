#!/usr/bin/env bash
# Hostile guest code (fork bomb, memory hog) leaves the host and broker healthy.
source "$(dirname "$0")/lib.sh"
start_bus

load_before=$(cut -d' ' -f1 /proc/loadavg)
run_json -t 10 -l raw ':(){ :|:& };:; sleep 5; echo survived'
diag "fork bomb: exit $(jget .exit_code), stderr tail: $(jget .stderr | tail -c 200)"
check "a fork bomb ends (exit code or timeout), broker alive" broker_alive
check "  and the next run works" [ "$("$SBX" run 'print(42)' 2>/dev/null)" = "42" ]

run_json -t 60 -m 256 'x = []
while True:
    x.append(bytearray(16 * 1024 * 1024))'
diag "memory hog: exit $(jget .exit_code)"
check "a memory hog is killed inside the guest (137)" [ "$(jget .exit_code)" = "137" ]
avail=$(awk '/MemAvailable/{print int($2/1024)}' /proc/meminfo)
check "the host still has plenty of memory available (${avail} MB)" [ "$avail" -gt 1024 ]
check "the broker is alive after the memory hog" broker_alive
check "  and the next run works" [ "$("$SBX" run 'print(43)' 2>/dev/null)" = "43" ]

check_no_leaks "abusive guests"
finish
