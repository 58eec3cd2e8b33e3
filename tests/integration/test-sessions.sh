#!/usr/bin/env bash
# Stateful sessions: state across Exec calls, the resilience table, file I/O,
# path attacks, idle timeout, VM death, another uid, the interactive prompt.
source "$(dirname "$0")/lib.sh"
start_bus
"$SBX" run 'pass' >/dev/null 2>&1 # activate the broker

B=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1)
open_session() { # LANGUAGE [IDLE]: prints the object path
    local args=(1 language s "$1")
    [[ -n "${2:-}" ]] && args=(2 language s "$1" idle_timeout_seconds u "$2")
    $BUSCTL --json=short call "${B[@]}" OpenSession 'a{sv}' "${args[@]}" | jq -r '.data[0]'
}
# sexec PATH CODE [TIMEOUT]: result JSON in $TMP/x.json, errors in $TMP/x.err
sexec() {
    local opts=(0)
    [[ -n "${3:-}" ]] && opts=(1 timeout_seconds u "$3")
    SYSTEMD_LOG_LEVEL=debug $BUSCTL --json=short --timeout=400 call org.sbx.Broker1 "$1" org.sbx.Session1 Exec \
        'sa{sv}' "$2" "${opts[@]}" >"$TMP/x.raw" 2>"$TMP/x.err"
    jq '.data[0] | map_values(.data)' "$TMP/x.raw" >"$TMP/x.json" 2>/dev/null
}
xget() { jq -r "$1" "$TMP/x.json"; }
x_error_is() { grep -q "error-name=org.sbx.Error.$1 " "$TMP/x.err"; }
scall() { # PATH METHOD SIG ARGS...: raw call, error name checkable with x_error_is
    local p=$1 m=$2; shift 2
    SYSTEMD_LOG_LEVEL=debug $BUSCTL --json=short call org.sbx.Broker1 "$p" org.sbx.Session1 "$m" "$@" \
        >"$TMP/x.raw" 2>"$TMP/x.err"
}

# --- state across three Exec calls, per language ---
py=$(open_session python)
check "OpenSession returns a session object" grep -q "^/org/sbx/Broker1/session/_" <<<"$py"
sexec "$py" 'import math'; sexec "$py" 'x = math.floor(41.9) + 1'; sexec "$py" 'def f(): return x * 2'
sexec "$py" 'print(x, f())'
check "python: imports, variables and functions persist" [ "$(xget .stdout)" = "42 84" ]

sh=$(open_session raw)
sexec "$sh" 'cd /tmp && export GREETING=hi'; sexec "$sh" 'shout() { echo "${1^^}"; }; COUNT=3'
sexec "$sh" 'echo "$GREETING $(pwd) $COUNT"; shout done'
check "bash: exports, variables, functions and cwd persist" [ "$(xget .stdout)" = "hi /tmp 3"$'\n'"DONE" ]

js=$(open_session javascript)
sexec "$js" 'const base: number = 40'; sexec "$js" 'function add(n: number): number { return base + n }'
sexec "$js" 'console.log(add(2))'
check "javascript/TypeScript: bindings persist" [ "$(xget .stdout)" = "42" ]
[[ "$(xget .stdout)" == 42 ]] || diag "js: $(cat "$TMP/x.json" "$TMP/x.err" | head -c 600)"

# --- the resilience table (python) ---
sexec "$py" 'kept = "yes"'
sexec "$py" 'raise ValueError("boom")'
tb=0; grep -q ValueError <<<"$(xget .stderr)" && tb=1
check "exception → exit 1, traceback on stderr" [ "$(xget .exit_code)" = 1 -a $tb -eq 1 ]
sexec "$py" 'import sys; sys.exit(3)'
check "sys.exit(3) → 3" [ "$(xget .exit_code)" = 3 -a "$(xget .state_reset)" = false ]
sexec "$py" 'this is not python'
check "syntax error → 1" [ "$(xget .exit_code)" = 1 ]
sexec "$py" 'print(kept)'
check "  state kept after exception, sys.exit and syntax error" [ "$(xget .stdout)" = yes ]
sexec "$py" 'import os; os._exit(4)'
check "os._exit(4) → 4, interpreter reset" [ "$(xget .exit_code)" = 4 -a "$(xget .state_reset)" = true ]
sexec "$py" "print('kept' in globals())"
check "  state is fresh after the reset" [ "$(xget .stdout)" = False ]
sexec "$py" 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)'
check "death by SIGKILL → 137, reset" [ "$(xget .exit_code)" = 137 -a "$(xget .state_reset)" = true ]
# Random data: zram would swallow compressible pages and delay the OOM killer.
sexec "$py" 'import os
hog = []
while True: hog.append(os.urandom(16 * 1024 * 1024))' 120
check "OOM kill → 137, reset" [ "$(xget .exit_code)" = 137 -a "$(xget .state_reset)" = true ]
[[ "$(xget .exit_code)" == 137 ]] || diag "oom: exit $(xget .exit_code) $(xget .stderr | tail -c 300)"
sexec "$py" 'while True: pass' 2
check "timeout → -1, reset, reason in stderr" [ "$(xget .exit_code)" = -1 -a "$(xget .timed_out)" = true ]
sexec "$py" 'print("alive")'
check "  the session is usable after all of that" [ "$(xget .stdout)" = alive ]
count=$($BUSCTL get-property org.sbx.Broker1 "$py" org.sbx.Session1 ExecCount | awk '{print $2}')
check "ExecCount counts every Exec ($count)" [ "$count" -ge 14 ]

# Output streams as unicast signals to the caller of Exec (a monitor sees them on the bus).
dbus-monitor --address "$SBX_BUS_ADDRESS" "type='signal',interface='org.sbx.Session1',member='Output'" \
    >"$TMP/monitor" 2>/dev/null &
mon=$!
sleep 0.5
sexec "$py" 'print("streamed-line")'
sleep 0.5; kill $mon 2>/dev/null; wait $mon 2>/dev/null
check "Exec output is also emitted as Output signals, addressed to the caller" \
    grep -q "member=Output" "$TMP/monitor"
check "  (with the data)" grep -q "streamed-line\|73 74 72 65 61 6d 65 64" "$TMP/monitor"

st=$("$SBXCTL" sessions 2>&1)
check "sbxctl sessions lists the open sessions" grep -q "${py##*/}" <<<"$st"

# --- Interrupt: Ctrl-C for a running Exec ---
SYSTEMD_LOG_LEVEL=debug $BUSCTL --json=short --timeout=400 call org.sbx.Broker1 "$py" org.sbx.Session1 Exec \
    'sa{sv}' 'import time; n = 41; print("sleeping", flush=True); time.sleep(120)' 0 >"$TMP/int.raw" 2>"$TMP/int.err" &
intpid=$!
for _ in $(seq 100); do
    [[ "$($BUSCTL get-property org.sbx.Broker1 "$py" org.sbx.Session1 ExecCount 2>/dev/null | awk '{print $2}')" -gt 0 ]] 2>/dev/null && break
    sleep 0.1
done
sleep 2 # inside time.sleep by now
t0=$SECONDS
scall "$py" Interrupt
check "Interrupt on a running Exec says it was running" grep -q '"data":\[true\]' "$TMP/x.raw" || diag "$(cat "$TMP/x.raw" "$TMP/x.err")"
wait $intpid
jq '.data[0] | map_values(.data)' "$TMP/int.raw" >"$TMP/int.json" 2>/dev/null
check "  the Exec returns at once, long before its 120 s ($((SECONDS - t0)) s)" [ $((SECONDS - t0)) -lt 20 ]
check "  with its output and KeyboardInterrupt (exit 1)" \
    eval '[ "$(jq -r .exit_code "$TMP/int.json")" = 1 ] && jq -r .stderr "$TMP/int.json" | grep -q KeyboardInterrupt && [ "$(jq -r .stdout "$TMP/int.json")" = sleeping ]' ||
    diag "$(head -c 600 "$TMP/int.json")"
sexec "$py" 'print(n + 1)'
check "  and the session keeps its state (python)" [ "$(xget .stdout)" = 42 ]
scall "$py" Interrupt
check "Interrupt with nothing running says so" grep -q '"data":\[false\]' "$TMP/x.raw"
# JavaScript: Bun dies of SIGINT, so the session's state is reset, and says so.
SYSTEMD_LOG_LEVEL=debug $BUSCTL --json=short --timeout=400 call org.sbx.Broker1 "$js" org.sbx.Session1 Exec \
    'sa{sv}' 'while (true) {}' 0 >"$TMP/int.raw" 2>"$TMP/int.err" &
intpid=$!
sleep 3
t0=$SECONDS
scall "$js" Interrupt
wait $intpid
jq '.data[0] | map_values(.data)' "$TMP/int.raw" >"$TMP/int.json" 2>/dev/null
check "javascript: an interrupted busy loop ends at once ($((SECONDS - t0)) s), its state reset" \
    eval '[ $((SECONDS - t0)) -lt 20 ] && [ "$(jq -r .state_reset "$TMP/int.json")" = true ]' ||
    diag "$(head -c 600 "$TMP/int.json") $(cat "$TMP/int.err" | tail -3)"
sexec "$js" 'console.log("after")'
check "  and the session still runs code" [ "$(xget .stdout)" = after ]

# --- paths ---
for bad in '../x' '/etc/passwd' 'a/../../b' "$(head -c 4097 /dev/zero | tr '\0' a)" "$(head -c 256 /dev/zero | tr '\0' b)"; do
    scall "$py" ListFiles s "$bad"
    check "ListFiles refuses '${bad:0:24}' → InvalidPath" x_error_is InvalidPath
done
sexec "$py" 'import os; os.symlink("/etc", "evil"); os.symlink("../..", "up")'
scall "$py" ListFiles s evil
check "a symlink escaping home → InvalidPath" x_error_is InvalidPath
scall "$py" ListFiles s up/etc
check "a relative symlink escaping home → InvalidPath" x_error_is InvalidPath
scall "$py" ListFiles s missing-dir
check "a missing path → NotFound" x_error_is NotFound
sexec "$py" 'print("still here")'
check "  path refusals do not close the session" [ "$(xget .stdout)" = "still here" ]

# --- files through the CLI (WriteFile/ReadFile with fds) ---
printf 'name,score\nalice,95\nbob,87\n' >"$TMP/input.csv"
(cd "$TMP" && "$SBX" run -q --upload "$TMP/input.csv:input.csv" --download "output.csv:$TMP/output.csv" \
    -c "open('output.csv','w').write(open('input.csv').read().upper())") >/dev/null 2>"$TMP/adk.err"
check "ADK flow: upload a CSV, transform it, download the result" \
    [ "$(cat "$TMP/output.csv" 2>/dev/null)" = "$(tr a-z A-Z <"$TMP/input.csv")" ]
[[ -f "$TMP/output.csv" ]] || diag "$(cat "$TMP/adk.err")"

# WriteFile into directories that do not exist yet: created like mkdir -p, as the user.
(cd "$TMP" && "$SBX" run -q --upload "$TMP/input.csv:data/in/input.csv" \
    -c "import os; print(open('data/in/input.csv').read().count(chr(10)), oct(os.stat('data/in').st_mode & 0o777), os.stat('data').st_uid)") \
    >"$TMP/mk.out" 2>"$TMP/mk.err"
check "an upload into missing directories creates them (0755, owned by the user)" [ "$(cat "$TMP/mk.out")" = "3 0o755 1000" ] ||
    diag "$(cat "$TMP/mk.out" "$TMP/mk.err")"
printf 'x' >"$TMP/x.txt"
printf 'import os; os.symlink("/tmp", "esc")\n.upload %s esc/new/x.txt\nimport os; print(os.path.exists("/tmp/new"))\n' "$TMP/x.txt" |
    "$SBX" session -q >"$TMP/esc.out" 2>"$TMP/esc.err"
check "  but not through a symlink out of the home (refused, nothing created there)" \
    eval 'grep -qi "invalid\|outside\|escape" "$TMP/esc.err" && grep -qx False "$TMP/esc.out"' ||
    diag "$(cat "$TMP/esc.out" "$TMP/esc.err")"

head -c $((100 * 1024 * 1024)) /dev/urandom >"$TMP/big.bin"
bp=$(broker_pid)
hwm_before=$(awk '/VmHWM/{print $2}' /proc/$bp/status)
( peak=0; while sleep 0.2; do
      for p in $(worker_pids); do v=$(awk '/VmHWM/{print $2}' /proc/$p/status 2>/dev/null); [[ -n "$v" && "$v" -gt $peak ]] && peak=$v; done
      echo $peak >"$TMP/worker-hwm"
  done ) & sampler=$!
start=$SECONDS
"$SBX" run -q -m 512 -t 120 --upload "$TMP/big.bin:big.bin" --download "big.bin:$TMP/big.out" \
    -c 'import os; print(os.path.getsize("big.bin"))' >"$TMP/big.stdout" 2>"$TMP/big.err"
elapsed=$((SECONDS - start))
kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
hwm_after=$(awk '/VmHWM/{print $2}' /proc/$bp/status)
check "a 100 MB file round-trips with an identical sha256" \
    [ "$(sha256sum <"$TMP/big.bin")" = "$(sha256sum <"$TMP/big.out" 2>/dev/null)" ]
[[ -f "$TMP/big.out" ]] || diag "$(cat "$TMP/big.err")"
diag "100 MB up+down in ${elapsed}s; broker VmHWM ${hwm_before} → ${hwm_after} kB; worker peak VmHWM $(cat "$TMP/worker-hwm" 2>/dev/null) kB"
check "the broker's peak memory grew by less than 16 MB" [ $((hwm_after - hwm_before)) -lt 16384 ]
check "the worker's peak memory stayed under 32 MB" [ "$(cat "$TMP/worker-hwm" 2>/dev/null || echo 0)" -lt 32768 ]
rm -f "$TMP/big.bin" "$TMP/big.out"

# --- idle timeout ---
idle=$(open_session raw 10)
q_before=$(qemu_pids | wc -l)
sleep 14
check "an idle session closes at its idle timeout" \
    [ "$($BUSCTL get-property org.sbx.Broker1 "$idle" org.sbx.Session1 Closed 2>/dev/null | awk '{print $2}')" = true ]
sexec "$idle" 'echo hi'
check "  later calls get SessionClosed" x_error_is SessionClosed
check "  and its QEMU process is gone" [ "$(qemu_pids | wc -l)" -lt "$q_before" ]

# --- the VM dies ---
victim=$(open_session python)
sexec "$victim" 'print(1)'
vq=$($SBXCTL status | awk -v p="$victim" '$0 ~ p {print}' ; true)
for q in $(qemu_pids); do :; done
kill -KILL "$(newest_qemu_pid)"
sleep 1
sexec "$victim" 'print(2)'
check "when the session's VM dies, the session closes (SessionClosed)" x_error_is SessionClosed

# --- the interactive prompt through a pty ---
printf 'x = 6\nfor i in range(3):\n    x += i\n\nprint(x * 7)\n.exit\n' >"$TMP/typed"
timeout 120 script -qfec "$SBX session -l python" /dev/null <"$TMP/typed" >"$TMP/pty.out" 2>&1
# Prompts go to stderr without a newline, so the answer may follow one on the same line.
check "sbx session (python) works through a terminal, block input included" grep -qE '(^|[> ])63$' <(tr -d '\r' <"$TMP/pty.out")
grep -qE '(^|[> ])63$' <(tr -d '\r' <"$TMP/pty.out") || diag "$(tr -d '\r' <"$TMP/pty.out" | tail -n 15)"

"$SBXCTL" close "$py" >/dev/null 2>&1
check "sbxctl close closes a session" \
    [ "$($BUSCTL get-property org.sbx.Broker1 "$py" org.sbx.Session1 Closed | awk '{print $2}')" = true ]
for p in "$sh" "$js"; do $BUSCTL call org.sbx.Broker1 "$p" org.sbx.Session1 Close >/dev/null 2>&1; done
check_no_leaks "sessions"
finish
