#!/usr/bin/env bash
# Faults around the runs rather than in the guest protocol:
#   - SIGKILL of the broker mid-run: clients get an error (no hang), every worker
#     and QEMU of that broker goes away by itself, nothing leaks, and the next
#     call bus-activates a fresh broker that runs code;
#   - a client that stops reading a large output mid-stream, or drops off the bus,
#     while another run streams its output: the job ends, nothing leaks, the other
#     run's output is intact;
#   - a guest disk that fills up: the code sees ENOSPC, the run ends normally, the
#     next run works;
#   - SIGKILL of sbx-cache (the broker's own, embedded mode) mid-run: the run is not
#     disturbed, runs go on (cold) meanwhile, the broker restarts it, snapshots serve
#     again, and no half-stored snapshot is left.
source "$(dirname "$0")/lib.sh"
CLIENT="$BUILD/tests/tools/start-run-client"
start_bus
"$SBX" run 'print("warm")' >/dev/null 2>&1 # activate the broker first

# wait_for_text FILE TEXT SECONDS
wait_for_text() {
    local deadline=$((SECONDS + $3))
    while [[ $SECONDS -lt $deadline ]]; do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
    return 1
}

# ---- SIGKILL of the broker mid-run ----
old_broker=$(broker_pid)
SLEEPER='import time; print("started", flush=True); time.sleep(50)'
"$SBX" run -t 60 "$SLEEPER" >"$TMP/k1.out" 2>"$TMP/k1.err" &
c1=$!
# The second through StartRun without snapshot or pool, i.e. a cold open and one exec to its worker.
"$CLIENT" --cold --echo --timeout 60 --language raw 'echo started; sleep 50' >"$TMP/k2.out" 2>"$TMP/k2.err" &
c2=$!
wait_for_text "$TMP/k1.out" started 120 && wait_for_text "$TMP/k2.out" started 120
check "two runs are running before the broker is killed" [ $? -eq 0 ]
diag "workers: $(worker_pids | tr '\n' ' ') QEMU: $(qemu_pids | tr '\n' ' ')"
t0=$SECONDS
kill -KILL "$old_broker"
# Bounded: a client that hangs is killed by timeout(1)'s stand-in below and fails the check.
for _ in $(seq 150); do kill -0 $c1 2>/dev/null || kill -0 $c2 2>/dev/null || break; sleep 0.2; done
kill -0 $c1 2>/dev/null || kill -0 $c2 2>/dev/null
hung=$?
[[ $hung -eq 0 ]] && kill -KILL $c1 $c2 2>/dev/null
wait $c1; rc1=$?
wait $c2; rc2=$?
check "SIGKILL of the broker: both clients end within 30 s (took $((SECONDS - t0)) s)" [ $hung -ne 0 ]
check "  Run: the client gets a D-Bus error, not a result (exit $rc1)" [ $rc1 -ne 0 -a $rc1 -ne 137 ]
check "    and says so" grep -qi "error" "$TMP/k1.err"
diag "Run client: $(head -c 300 "$TMP/k1.err")"
check "  StartRun: no Finished, and the client sees the broker leave the bus (exit $rc2)" \
    [ $rc2 -eq 4 ] && grep -q "^broker vanished" "$TMP/k2.out"
[[ $rc2 -eq 4 ]] || diag "StartRun client: $(cat "$TMP/k2.out" "$TMP/k2.err" | head -c 300)"
check "every worker and QEMU of that broker goes away by itself (EOF on the broker socket)" wait_gone 20
diag "left: workers $(worker_pids | tr '\n' ' ') QEMU $(qemu_pids | tr '\n' ' ')"
# Before any new broker could run sbx-vmworker --remove-stale: the workers cleaned up themselves.
check_no_leaks "a SIGKILLed broker (before a new broker starts)"
out=$("$SBX" run 'print("fresh broker")' 2>"$TMP/e")
new_broker=$(broker_pid)
check "the next call bus-activates a fresh broker" [ -n "$new_broker" -a "$new_broker" != "$old_broker" ]
check "  which runs code" [ "$out" = "fresh broker" ]
[[ $out == "fresh broker" ]] || diag "$(cat "$TMP/e")"
check_no_leaks "the fresh broker's first run"

# ---- clients that stop reading a large output mid-stream ----
# A concurrent run whose output must arrive intact: 50,000 numbered lines (350 KB).
python3 -c 'print("\n".join(f"{i:06d}" for i in range(50000)))' >"$TMP/expected.out"
# It pauses now and then, so it streams while the faults below happen.
"$SBX" run -q -t 120 'import time
for i in range(50000):
    print(f"{i:06d}")
    if i % 2500 == 0: time.sleep(1)' >"$TMP/concurrent.out" 2>"$TMP/concurrent.err" &
conc=$!

# StartRun with stdout_fd; the reader takes 64 KiB of a 5 MiB output and closes its end,
# but the client stays on the bus: the job still ends (output past the reader is dropped).
BIG='import sys
for _ in range(80): sys.stdout.write("z" * 65536)
print("done", file=sys.stderr)'
t0=$SECONDS
timeout 200 "$CLIENT" --read 65536 --timeout 60 "$BIG" >"$TMP/a.out" 2>"$TMP/a.err"
rc=$?
check "StartRun, reader closes after 64 KiB: the job still finishes (took $((SECONDS - t0)) s)" \
    [ $rc -eq 0 ] && grep -q '^finished ' "$TMP/a.out"
[[ $rc -eq 0 ]] || diag "rc=$rc $(cat "$TMP/a.out" "$TMP/a.err" | head -c 600)"
res=$(sed -n 's/^finished //p' "$TMP/a.out")
check "  with the program's own result (exit 0, stdout truncated at the cap)" \
    [ "$(jq -r .exit_code <<<"$res")" = 0 -a "$(jq -r .stdout_truncated <<<"$res")" = true ]
check "  the reader got its 64 KiB" grep -q '^read 65536$' "$TMP/a.out"

# The same through the CLI (Run with stdout_fd): sbx's stdout is a pipe whose reader exits early.
t0=$SECONDS
timeout 200 "$SBX" run -q -t 60 "$BIG" 2>"$TMP/b.err" | head -c 100000 >"$TMP/b.out"
rc=${PIPESTATUS[0]}
check "Run with stdout_fd, reader gone after 100 KB: sbx returns the result (exit $rc, $((SECONDS - t0)) s)" [ $rc -eq 0 ]
[[ $rc -eq 0 ]] || diag "$(head -c 400 "$TMP/b.err")"

# A StartRun client that closes its pipe and then drops off the bus mid-stream: the job is
# cancelled and its VM goes away long before the code's own end (it would write for 60 s).
"$CLIENT" --read 65536 --timeout 60 --disconnect 'import sys
while True: sys.stdout.write("w" * 65536)' >"$TMP/c.out" 2>"$TMP/c.err"
check "StartRun client gone mid-stream: it had read 64 KiB" grep -q '^read 65536$' "$TMP/c.out"
[[ $? -eq 0 ]] || diag "$(cat "$TMP/c.out" "$TMP/c.err" | head -c 400)"
job=$(sed -n 's/^job //p' "$TMP/c.out")
state=
for _ in $(seq 75); do
    state=$($BUSCTL get-property org.sbx.Broker1 "$job" org.sbx.Job1 State 2>/dev/null | awk '{print $2}' | tr -d '"')
    [[ $state == cancelled || $state == failed || $state == finished ]] && break
    sleep 0.2
done
check "  its job is cancelled within 15 s (state $state), long before the code's own 60 s" [ "$state" = cancelled ]
check "  the concurrent run was still streaming meanwhile" kill -0 $conc

# A reader that neither reads nor closes: the output piles up to the caps, the job ends, and the
# reply waits at most the broker's 10 s drain deadline for it, so the caller is not held hostage.
rm -f "$TMP/d.rc"
t0=$SECONDS
{ timeout 200 "$SBX" run -q -t 60 "$BIG" 2>"$TMP/d.err"; echo $? >"$TMP/d.rc"; } | sleep 45 &
stall=$!
for _ in $(seq 200); do [[ -s $TMP/d.rc ]] && break; sleep 0.2; done
check "a stalled reader: sbx still returns while the reader holds the pipe (exit $(cat "$TMP/d.rc" 2>/dev/null), $((SECONDS - t0)) s)" \
    [ "$(cat "$TMP/d.rc" 2>/dev/null)" = 0 ]
kill $stall 2>/dev/null
wait $stall 2>/dev/null

wait $conc
rc=$?
check "the concurrent run was not disturbed (exit $rc)" [ $rc -eq 0 ]
check "  and its 350 KB of output arrived intact" cmp -s "$TMP/expected.out" "$TMP/concurrent.out"
cmp "$TMP/expected.out" "$TMP/concurrent.out" >/dev/null 2>&1 || diag "$(wc -c <"$TMP/concurrent.out") bytes; $(head -c 300 "$TMP/concurrent.err")"
check "the disconnected client's VM went away" wait_gone 30
check_no_leaks "clients that stopped reading"
check "the broker survived it" [ "$(broker_pid)" = "$new_broker" ]

# ---- a guest disk that fills up ----
# Each writable file system in turn: /tmp, the home, /dev/shm and the root overlay
# (/var/tmp lives on its tmpfs upper layer). Each is emptied again before the next,
# so the guest's RAM holds at most one full file system; the last one stays full.
FILL='import errno, os
for d in ["/var/tmp", "/dev/shm", "/tmp", "/home/user"]:
    path, block, n = d + "/fill", b"x" * (1 << 20), 0
    try:
        with open(path, "wb") as f:
            while True:
                f.write(block)
                f.flush()
                n += 1
    except OSError as e:
        print(d, errno.errorcode.get(e.errno, e.errno), n, "MiB", flush=True)
    if d != "/home/user":
        os.unlink(path)
        with open(d + "/small", "w") as f:
            f.write("fits again")
        print(d, "usable again:", open(d + "/small").read(), flush=True)
print("end of code")'
run_json -t 240 -m 256 "$FILL"
diag "$(jget .stdout)"
check "a full disk: the run ends with a normal result (exit 0)" [ "$RC" -eq 0 -a "$(jget .exit_code)" = 0 ]
[[ $RC -eq 0 ]] || diag "$(head -c 500 "$TMP/out.json") $(head -c 300 "$TMP/err.txt")"
for d in /var/tmp /dev/shm /tmp /home/user; do
    check "  $d: the code got ENOSPC" grep -q "^$d ENOSPC " <<<"$(jget .stdout)"
done
check "  the emptied file systems are usable again" [ "$(jget .stdout | grep -c 'usable again: fits again')" = 3 ]
check "  the code ran to its end" grep -q "end of code" <<<"$(jget .stdout)"
check_no_leaks "a full disk"

# A session upload larger than the home (50 % of 128 MiB): a clear error, not a hang or a broken VM.
truncate -s 80M "$TMP/big.bin"
t0=$SECONDS
timeout 200 "$SBX" run -m 128 -l raw --upload "$TMP/big.bin:big.bin" 'ls -l big.bin' >"$TMP/u.out" 2>"$TMP/u.err"
rc=$?
check "an upload that does not fit: it fails (exit $rc, $((SECONDS - t0)) s)" [ $rc -ne 0 -a $rc -ne 124 ]
check "  saying the disk is full" grep -q "No space left on device" "$TMP/u.err"
diag "$(head -c 300 "$TMP/u.err")"
check_no_leaks "an upload into a full disk"
out=$("$SBX" run 'print("after the full disk")' 2>/dev/null)
check "the next run works" [ "$out" = "after the full disk" ]

# ---- SIGKILL of sbx-cache mid-run ----
# The pid GetStatus reports, when that process runs as the broker's child.
cache_pid() {
    local pid
    pid=$("$SBXCTL" status --json 2>/dev/null | jq -r '.cache_pid // 0 | select(. > 0)')
    [[ -n "$pid" && "$(ps -o ppid= -p "$pid" | tr -d ' ')" == "$(broker_pid)" ]] && echo "$pid"
}
CACHE_DIR="$BUILD/state/cache/l1"
cache_tmps() { find "$CACHE_DIR" -mindepth 1 -maxdepth 1 -name '*.tmp-*' 2>/dev/null; }
old_cache=$(cache_pid)
check "the broker runs its own sbx-cache" [ -n "$old_cache" ]
"$SBX" run -t 60 'import time; print("before", flush=True); time.sleep(4); print("after")' >"$TMP/ck.out" 2>"$TMP/ck.err" &
ck=$!
wait_for_text "$TMP/ck.out" before 60
kill -9 "$old_cache"
out=$("$SBX" run 'print("cache is down")' 2>/dev/null)
check "a run while sbx-cache is dead works" [ "$out" = "cache is down" ]
wait $ck; rc=$?
check "the run that was going on when sbx-cache died finished normally (exit $rc)" \
    [ $rc -eq 0 -a "$(tr '\n' ' ' <"$TMP/ck.out")" = "before after " ]
new_cache=""
for _ in $(seq 50); do new_cache=$(cache_pid); [[ -n "$new_cache" && "$new_cache" != "$old_cache" ]] && break; sleep 0.1; done
check "the broker restarted sbx-cache" [ -n "$new_cache" -a "$new_cache" != "$old_cache" ]
st=$("$SBXCTL" status 2>&1)
check "  sbxctl status shows it running again, restarted once" \
    grep -q "^snapshots:   sbx-cache running (pid $new_cache, restarted 1 time(s))" <<<"$st" || diag "$st"
"$SBX" run 'print(1)' >/dev/null 2>&1 # builds the snapshot if the kill cost it
for _ in $(seq 100); do [[ -z "$(cache_tmps)" ]] && break; sleep 0.2; done
run_json 'print("from the cache")'
check "snapshots are served again (tier $(jget .snapshot_tier))" [ "$RC" -eq 0 -a "$(jget .snapshot_tier)" = l1 ]
check "no half-stored snapshot is left" [ -z "$(cache_tmps)" ]
check_no_leaks "SIGKILL of sbx-cache"
check "the broker survived all of it" broker_alive
check_no_leaks "the last run"
finish
