#!/usr/bin/env bash
# Hostile guest code (fork bomb, memory hog) leaves the host and broker healthy, and user code
# finds no privileges to escalate with in the guest.
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

# What user code finds in the guest to escalate with: setuid/setgid programs, a capability
# bounding set that an exec could fill the permitted set from, the sit0 tunnel device.
run_json -t 60 -l raw 'echo "suid: $(find / -xdev -type f -perm /6000 2>/dev/null | tr "\n" " ")"
grep "^CapBnd:" /proc/self/status
echo "links: $(ls /sys/class/net | tr "\n" " ")"
echo "netdev: $(cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d " " | tr "\n" " ")"'
jget .stdout >"$TMP/priv.txt"
diag "guest privileges: exit $(jget .exit_code)
$(cat "$TMP/priv.txt")"
check "the privilege probe ran" [ "$(jget .exit_code)" = "0" ]
check "no setuid or setgid file in the guest root" grep -qx 'suid: ' "$TMP/priv.txt"
check "user code has an empty capability bounding set" grep -qxE 'CapBnd:[[:space:]]+0+' "$TMP/priv.txt"
check "the guest's network devices were listed" grep -q '^links: lo' "$TMP/priv.txt"
check "no sit0 tunnel device in the guest (sysfs and /proc/net/dev)" \
    bash -c '! grep -qw sit0 "$1"' _ "$TMP/priv.txt"

check_no_leaks "abusive guests"
finish
