#!/usr/bin/env bash
# A peer that stops reading never stalls a daemon. A session's worker is
# stopped (SIGSTOP) while the broker hands it a megabyte Exec: other clients'
# calls are answered at once, another uid's Run succeeds, the stopped
# session's call fails with VmTransient once the stall deadline passes, and
# nothing leaks. An Exec whose caller stops reading its output fd gets its
# reply after the drain deadline. Then a cache client that floods sbx-cache with requests and
# reads no reply: other lookups go on, and the client is dropped.
source "$(dirname "$0")/lib.sh"

start_system_bus
B=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1)
for _ in $(seq 100); do busctl --address="$SYS" call "${B[@]}" GetStatus >/dev/null 2>&1 && break; sleep 0.1; done
BP=$(broker_pid)
check "the broker is up on a system-like bus" [ -n "$BP" ]
ms_now() { date +%s%3N; }

# --- a stopped worker and a megabyte Exec ---
s=$(busctl --address="$SYS" --json=short call "${B[@]}" OpenSession 'a{sv}' 1 language s python | jq -r '.data[0]')
check "a python session opens" grep -q "^/org/sbx/Broker1/session/_" <<<"$s"
W=$(worker_pids | head -n1) # the session's: no other VM runs yet
check "its worker is found by the broker's pid" [ -n "$W" ]
kill -STOP "$W"
SBX_BUS_ADDRESS=$SYS "$BUILD/tests/tools/session-exec-client" "$s" --big $((1024 * 1024)) >"$TMP/big.out" 2>&1 &
big=$!
sleep 1

t0=$(ms_now)
busctl --address="$SYS" --timeout=30 call "${B[@]}" GetStatus >/dev/null 2>"$TMP/gs.err"; gs_rc=$?
gs_ms=$(($(ms_now) - t0))
diag "GetStatus with a stopped worker: ${gs_ms} ms"
check "another client's GetStatus answers in under 1 s" [ $gs_rc -eq 0 -a $gs_ms -lt 1000 ]

t0=$(ms_now)
r=$(nobody busctl --address="$SYS" --json=short --timeout=300 call "${B[@]}" Run 'a{sv}' 1 code s 'print(6 * 7)' 2>"$TMP/run.err" |
    jq -r '.data[0].stdout.data')
diag "another uid's Run with a stopped worker: $(($(ms_now) - t0)) ms"
check "another uid's Run succeeds meanwhile" [ "$r" = 42 ]
[[ "$r" == 42 ]] || diag "$(cat "$TMP/run.err")"

wait $big
diag "$(cat "$TMP/big.out")"
big_ms=$(sed -n 's/^ms //p' "$TMP/big.out")
check "the stopped session's Exec fails with VmTransient" grep -q "^error org.sbx.Error.VmTransient" "$TMP/big.out"
check "  once the stall deadline (10 s) has passed" [ "${big_ms:-0}" -ge 9000 -a "${big_ms:-0}" -lt 60000 ]
gone=0
for _ in $(seq 100); do kill -0 "$W" 2>/dev/null || { gone=1; break; }; sleep 0.1; done
check "the stalled worker was stopped" [ $gone -eq 1 ]
r=$(busctl --address="$SYS" get-property org.sbx.Broker1 "$s" org.sbx.Session1 Closed 2>/dev/null | awk '{print $2}')
check "the session is closed" [ "$r" = true ]
check "the broker is the same process" [ "$(broker_pid)" = "$BP" ]
check_no_leaks "a stalled worker"

# --- a session Exec whose caller never reads its stdout_fd ---
s=$(busctl --address="$SYS" --json=short call "${B[@]}" OpenSession 'a{sv}' 1 language s python | jq -r '.data[0]')
SBX_BUS_ADDRESS=$SYS "$BUILD/tests/tools/session-exec-client" "$s" --unread-stdout \
    'import sys; sys.stdout.write("y" * 900000); print("end")' >"$TMP/unread.out" 2>&1
diag "$(tr '\n' ' ' <"$TMP/unread.out")"
check "an Exec whose caller stops reading its fd still replies (drain deadline)" grep -qx "ok 0" "$TMP/unread.out"
check "  with stdout_truncated" grep -qx "stdout_truncated true" "$TMP/unread.out"
r=$(busctl --address="$SYS" --json=short call org.sbx.Broker1 "$s" org.sbx.Session1 Exec 'sa{sv}' 'print("next")' 0 |
    jq -r '.data[0].stdout.data')
check "  and the session serves the next Exec" [ "$r" = next ]
busctl --address="$SYS" call "${B[@]}" CloseSession o "$s" >/dev/null 2>&1
check_no_leaks "an unread Exec"

# --- a cache client that reads no replies ---
SOCK="$BUILD/run/cache.sock"
/usr/bin/python3 - "$SOCK" >"$TMP/flood.out" 2>&1 <<'PY' &
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
# 3000 LIST requests (header only): about a megabyte of replies, far beyond the socket buffer.
s.sendall(struct.pack("<IBBHI", 0x31584253, 1, 4, 0, 0) * 3000)
print("flooded", flush=True)
time.sleep(15)
s.settimeout(5)
try:
    while s.recv(1 << 20):
        pass
    print("dropped")
except socket.timeout:
    print("still connected")
PY
flood=$!
for _ in $(seq 50); do grep -q flooded "$TMP/flood.out" && break; sleep 0.1; done
sleep 1
t0=$(ms_now)
SBX_CONFIG="$BUILD/sbx.conf" "$SBXCTL" cache ls >/dev/null 2>"$TMP/ls.err"; ls_rc=$?
ls_ms=$(($(ms_now) - t0))
diag "sbxctl cache ls beside a client that reads nothing: ${ls_ms} ms"
check "another cache client is answered in under 1 s" [ $ls_rc -eq 0 -a $ls_ms -lt 1000 ]
[[ $ls_rc -eq 0 ]] || diag "$(cat "$TMP/ls.err")"
run_json -c 'print("after")'
check "a run's snapshot lookup is served meanwhile" [ "$(jget .stdout)" = after -a "$(jget .snapshot_tier)" != null ]
wait $flood
check "the client that read nothing was dropped" grep -qx dropped "$TMP/flood.out"
check "sbx-cache stayed up" bash -c "'$SBXCTL' status | grep -q 'restarted 0 time'"
check_no_leaks "the cache flood"
finish
