#!/usr/bin/env bash
# A deliberately broken guest agent (tests/tools/broken-agent.c) writes garbage,
# oversized, truncated and otherwise invalid frames into the guest channel, or
# floods it, or says nothing. Each run must end within a bounded time with a
# typed error (or, for a flood or silence, a timed-out result), the broker must
# stay up, nothing may leak, and a real guest must still run code afterwards.
source "$(dirname "$0")/lib.sh"

BROKEN="$BUILD/tests/tools/initramfs-broken.cpio"
if [[ ! -f "$BROKEN" ]]; then
    echo "1..0 # SKIP $BROKEN not built (the guest is off in this build)"
    exit 0
fi
start_bus

# A broker of our own whose guests boot the broken initramfs. Snapshots off (a
# snapshot build would send its own warm-up exec first) and no warm pool.
grep -vE '^[[:space:]]*(initrd|snapshots|warm_pool_size|accel)[[:space:]]*=' "$BUILD/sbx.conf" >"$TMP/broken.conf"
# The accelerator probe boots the guest; reuse the cached verdict of the real image.
accel=$(awk 'NR == 1 { print $1 }' "$BUILD/state/accel-probe" 2>/dev/null)
[[ $accel == kvm || $accel == tcg ]] || accel=auto
cat >>"$TMP/broken.conf" <<EOF
initrd = $BROKEN
snapshots = no
accel = $accel
EOF
# As the bus itself would start it (sd_bus_open() follows DBUS_STARTER_*).
DBUS_STARTER_ADDRESS="$SBX_BUS_ADDRESS" DBUS_STARTER_BUS_TYPE=session DBUS_SESSION_BUS_ADDRESS="$SBX_BUS_ADDRESS" \
    "$BUILD/sbx-broker/sbx-broker" --config "$TMP/broken.conf" 2>"$TMP/broker.log" &
BROKER=$!
# Wait for it to own the name without asking for it (a call would activate the default broker).
has_owner() {
    [[ "$($BUSCTL call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus NameHasOwner s org.sbx.Broker1 2>/dev/null)" == "b true" ]]
}
for _ in $(seq 600); do has_owner && break; kill -0 "$BROKER" 2>/dev/null || break; sleep 0.1; done
# The broker that owns the name is ours, and it answers.
ours_answers() { [[ "$(broker_pid)" == "$BROKER" ]] && "$SBXCTL" status >/dev/null; }
check "a broker with the broken initramfs is up" ours_answers
[[ "$(broker_pid)" == "$BROKER" ]] || { diag "$(cat "$TMP/broker.log")"; finish; }

# run_mode MODE TIMEOUT_S: one run of the broken agent; result or error in $TMP/out.json, seconds in $ELAPSED.
run_mode() {
    local t0=$SECONDS
    timeout 180 "$SBX" run --json -l raw -t "$2" "$1" >"$TMP/out.json" 2>"$TMP/err.txt"
    RC=$?
    ELAPSED=$((SECONDS - t0))
}
# error_is NAME: the run failed with org.sbx.Error.NAME.
error_is() { [[ "$(jget '.error // empty' 2>/dev/null)" == "org.sbx.Error.$1" ]]; }
# after MODE BOUND: the common checks after each mode.
after() {
    check "  $1: ended within $2 s (took $ELAPSED s)" [ "$ELAPSED" -le "$2" ]
    check "  $1: the broker is still the same process and answers" ours_answers
    check_no_leaks "mode $1"
}
show() { diag "rc=$RC $(head -c 600 "$TMP/out.json") $(head -c 300 "$TMP/err.txt")"; }

# The control: the broken agent can also behave, so failures below are the modes', not the harness's.
run_mode ok 10
check "ok: the broken agent's control mode runs (exit 0, its output)" \
    [ "$RC" -eq 0 -a "$(jget .exit_code)" = 0 -a "$(jget .stdout)" = "broken-agent ok" ]
[[ $RC -eq 0 ]] || show
after ok 60

# Protocol violations: the VM is destroyed and the run fails with VmTransient (safe to retry).
for mode in garbage bad-magic oversized truncated bad-tlv unknown-type hello-again; do
    run_mode "$mode" 10
    check "$mode: org.sbx.Error.VmTransient, exit status 75" error_is VmTransient
    [[ $RC -eq 75 ]] || show
    case $mode in
    truncated) check "  $mode: the message says the channel closed or QEMU exited" \
        grep -qiE "closed|QEMU" <<<"$(jget .error_message)" ;;
    *) check "  $mode: the message blames the guest's protocol" grep -q "broke the protocol" <<<"$(jget .error_message)" ;;
    esac
    after "$mode" 60
done

# An unknown mode: the agent answers G_ERROR, i.e. "could not run the code".
run_mode no-such-mode 10
check "no-such-mode: G_ERROR → org.sbx.Error.VmTransient" error_is VmTransient
after no-such-mode 60

# EXIT twice, or EXIT then garbage: the first EXIT ends the run; what follows is never read.
for mode in double-exit exit-then-garbage; do
    run_mode "$mode" 10
    if error_is VmTransient; then
        ok "$mode: org.sbx.Error.VmTransient"
    else
        check "$mode: the first EXIT is the result (exit 42, stdout \"first\")" \
            [ "$(jget .exit_code)" = 42 -a "$(jget .stdout)" = first ]
    fi
    [[ $RC -eq 42 || $RC -eq 75 ]] || show
    after "$mode" 60
done

# A flood of valid output: capped at 1 MiB (stdout) / 100 KiB (stderr), ended by the timeout.
run_mode flood 3
if error_is VmTransient || error_is Internal; then
    ok "flood: a typed error ($(jget .error))"
else
    check "flood: a timed-out result (exit -1, timed_out)" [ "$(jget .exit_code)" = -1 -a "$(jget .timed_out)" = true ]
    check "  flood: both streams truncated at their caps" \
        [ "$(jget .stdout_truncated)" = true -a "$(jget .stderr_truncated)" = true ]
    n=$(jq -r '.stdout | length' "$TMP/out.json")
    check "  flood: stdout holds at most 1 MiB ($n bytes)" [ "$n" -gt 0 -a "$n" -le 1048576 ]
fi
[[ $RC -eq 124 ]] || show
after flood 60

# Silence after the exec: the agent never reports, so past the run's timeout plus the worker's
# grace the VM counts as failed (VmTransient, safe to retry), not the code as timed out.
run_mode silent 2
check "silent: org.sbx.Error.VmTransient, exit status 75" error_is VmTransient
check "  silent: the error says the VM stopped responding" grep -q "stopped responding" <<<"$(jget .error_message)"
[[ $RC -eq 75 ]] || show
after silent 60

# Several broken runs at once do not disturb each other.
t0=$SECONDS
pids=()
for mode in garbage silent oversized; do
    timeout 180 "$SBX" run --json -l raw -t 2 "$mode" >"$TMP/par-$mode.json" 2>/dev/null &
    pids+=($!)
done
wait "${pids[@]}" # not a bare wait: the broker is our child too
ELAPSED=$((SECONDS - t0))
check "three broken runs at once: each gets its own outcome" \
    [ "$(jq -r .error "$TMP/par-garbage.json")" = org.sbx.Error.VmTransient -a \
      "$(jq -r .error "$TMP/par-silent.json")" = org.sbx.Error.VmTransient -a \
      "$(jq -r .error "$TMP/par-oversized.json")" = org.sbx.Error.VmTransient ]
after "three at once" 180

# Sessions: the same modes in a VM that serves several execs (a violation closes it).
B=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1)
# sexec PATH CODE TIMEOUT: result JSON in $TMP/x.json, errors in $TMP/x.err, seconds in $ELAPSED
sexec() {
    local t0=$SECONDS
    SYSTEMD_LOG_LEVEL=debug timeout 180 $BUSCTL --json=short --timeout=170 call org.sbx.Broker1 "$1" org.sbx.Session1 \
        Exec 'sa{sv}' "$2" 1 timeout_seconds u "$3" >"$TMP/x.raw" 2>"$TMP/x.err"
    jq '.data[0] | map_values(.data)' "$TMP/x.raw" >"$TMP/x.json" 2>/dev/null
    ELAPSED=$((SECONDS - t0))
}
x_error_is() { grep -q "error-name=org.sbx.Error.$1 " "$TMP/x.err"; }
closed() { [ "$($BUSCTL get-property org.sbx.Broker1 "$1" org.sbx.Session1 Closed 2>/dev/null | awk '{print $2}')" = true ]; }
for mode in garbage oversized double-exit flood silent; do
    sess=$($BUSCTL --json=short call "${B[@]}" OpenSession 'a{sv}' 1 language s raw 2>"$TMP/x.err" | jq -r '.data[0]')
    if [[ $sess != /org/sbx/Broker1/session/_* ]]; then
        not_ok "session $mode: OpenSession on the broken agent"
        diag "$(cat "$TMP/x.err")"
        continue
    fi
    sexec "$sess" "$mode" 3
    case $mode in
    double-exit)
        check "session $mode: the first EXIT answers the Exec (exit 42)" [ "$(jq -r .exit_code "$TMP/x.json")" = 42 ]
        # The second EXIT arrives when no exec runs: a violation that ends the session.
        for _ in $(seq 50); do closed "$sess" && break; sleep 0.2; done
        check "  session $mode: the stray second EXIT closes the session" closed "$sess"
        sexec "$sess" "ok" 3
        check "  session $mode: a later Exec gets SessionClosed" x_error_is SessionClosed ;;
    flood | silent)
        if x_error_is VmTransient; then
            ok "session $mode: org.sbx.Error.VmTransient"
        else
            check "session $mode: a timed-out result" [ "$(jq -r .timed_out "$TMP/x.json")" = true ]
        fi
        [[ $mode == flood ]] && ! x_error_is VmTransient &&
            check "  session $mode: stdout capped at 1 MiB" [ "$(jq -r '.stdout | length' "$TMP/x.json")" -le 1048576 ] ;;
    *)
        check "session $mode: org.sbx.Error.VmTransient" x_error_is VmTransient
        check "  session $mode: the session is closed" closed "$sess" ;;
    esac
    diag "session $mode: $(grep -o 'error-name=org[^ ]*' "$TMP/x.err" | head -n1) $(jq -c '{exit_code, timed_out}' "$TMP/x.json" 2>/dev/null)"
    $BUSCTL call "${B[@]}" CloseSession o "$sess" >/dev/null 2>&1
    after "session $mode" 60
done

if grep -qE "AddressSanitizer|runtime error|Assertion" "$TMP/broker.log"; then
    not_ok "the broker logged no sanitizer or assertion failure"
    diag "$(grep -E "AddressSanitizer|runtime error|Assertion" "$TMP/broker.log" | head -5)"
else
    ok "the broker logged no sanitizer or assertion failure"
fi

# Back to the real guest: stop this broker; the next call bus-activates one with the default config.
kill -TERM "$BROKER" 2>/dev/null
for _ in $(seq 100); do kill -0 "$BROKER" 2>/dev/null || break; sleep 0.1; done
check "the broken-agent broker stopped on SIGTERM" bash -c "! kill -0 $BROKER 2>/dev/null"
out=$("$SBX" run 'print("real agent")' 2>"$TMP/err.txt")
check "a real guest runs code afterwards" [ "$out" = "real agent" ]
[[ $out == "real agent" ]] || diag "$(cat "$TMP/err.txt")"
check_no_leaks "the real run"
finish
