#!/usr/bin/env bash
# Admission: Capacity for a full queue (queue_max) and after queue_timeout_seconds; on a
# system-like bus with two uids, the per-uid limits answer Capacity naming the limit, root is
# exempt, and one uid's burst does not starve another uid's single run (round-robin across uids).
source "$(dirname "$0")/lib.sh"

start_system_bus
B=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1)
as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups "$@"; }

# start_broker 'key = value'...: our own broker with these lines on top of BUILDDIR/sbx.conf.
start_broker() {
    local bp
    bp=$(broker_pid); [[ -n "$bp" ]] && kill -TERM "$bp"
    for _ in $(seq 50); do [[ -z "$(broker_pid)" ]] && break; sleep 0.1; done
    cp "$BUILD/sbx.conf" "$TMP/sbx.conf"
    printf '%s\n' "$@" >>"$TMP/sbx.conf"
    DBUS_SYSTEM_BUS_ADDRESS=$SYS "$BUILD/sbx-broker/sbx-broker" --system --config "$TMP/sbx.conf" 2>>"$TMP/broker.log" &
    # Wait for the name without calling it (a call would bus-activate a broker with the default config).
    for _ in $(seq 100); do
        busctl --address="$SYS" list --no-legend 2>/dev/null | awk '$1 == "org.sbx.Broker1" && $2 != "-" { f = 1 } END { exit !f }' &&
            return 0
        sleep 0.1
    done
    return 1
}
status_field() { busctl --address="$SYS" --json=short call "${B[@]}" GetStatus | jq -r ".data[0].$1.data"; }
wait_status() { # KEY VALUE
    for _ in $(seq 150); do [[ "$(status_field "$1")" == "$2" ]] && return 0; sleep 0.1; done
    return 1
}
# call_run NAME UID CODE: a raw Run as that uid; reply in $TMP/NAME.json, errors in $TMP/NAME.err,
# the time it returned in $TMP/NAME.done.
call_run() {
    SYSTEMD_LOG_LEVEL=debug as_uid "$2" busctl --address="$SYS" --json=short --timeout=300 call "${B[@]}" Run 'a{sv}' 2 \
        language s raw code s "$3" >"$TMP/$1.json" 2>"$TMP/$1.err"
    date +%s%N >"$TMP/$1.done"
}
run_stdout() { jq -r '.data[0].stdout.data' "$TMP/$1.json" 2>/dev/null; }
capacity() { # NAME TEXT: the call failed with Capacity, and its message has TEXT
    grep -q "error-name=org.sbx.Error.Capacity " "$TMP/$1.err" && grep -qF -- "$2" "$TMP/$1.err"
}

# Part 1: the queue. One VM at once, one request may wait, for 2 s.
check "broker with max_vms = 1, queue_max = 1, queue_timeout_seconds = 2" \
    start_broker "max_vms = 1" "queue_max = 1" "queue_timeout_seconds = 2" "warm_pool_size = 0"
call_run long 0 'sleep 4; echo long' &
long_pid=$!
wait_status active_runs 1
call_run waits 0 'echo never' &
waits_pid=$!
wait_status queued 1
call_run full 0 'echo never'
check "a full queue → Capacity at once" capacity full "already waiting"
wait "$waits_pid"
check "a request that waits past queue_timeout_seconds → Capacity" capacity waits "No VM slot became free within 2 s"
diag "$(grep -h "Call failed" "$TMP/full.err" "$TMP/waits.err")"
wait "$long_pid"
check "  the run holding the VM finishes normally" [ "$(run_stdout long)" = long ]

# Part 2: per-uid limits. Two VMs at once, one per uid, one session per uid.
check "broker with max_vms = 2, max_vms_per_uid = 1, max_sessions_per_uid = 1" \
    start_broker "max_vms = 2" "max_vms_per_uid = 1" "max_sessions_per_uid = 1" "queue_timeout_seconds = 3" \
    "warm_pool_size = 0"
s=$(as_uid 65534 busctl --address="$SYS" --json=short --timeout=120 call "${B[@]}" OpenSession 'a{sv}' 1 language s raw |
    jq -r '.data[0]')
check "uid 65534 opens a session" grep -q "^/org/sbx/Broker1/session/_" <<<"$s"
SYSTEMD_LOG_LEVEL=debug as_uid 65534 busctl --address="$SYS" call "${B[@]}" OpenSession 'a{sv}' 1 language s raw \
    >/dev/null 2>"$TMP/second.err"
check "  its second session → Capacity naming max_sessions_per_uid" capacity second "max_sessions_per_uid = 1"
call_run mine 65534 'echo mine' &
mine_pid=$!
call_run theirs 1 'echo theirs'
check "uid 1's run starts while uid 65534 is at its limit" [ "$(run_stdout theirs)" = theirs ]
wait "$mine_pid"
check "  uid 65534's run waits for its own VM, then → Capacity naming max_vms_per_uid" \
    capacity mine "max_vms_per_uid = 1"
diag "$(grep -h "Call failed" "$TMP/second.err" "$TMP/mine.err")"
as_uid 65534 busctl --address="$SYS" call "${B[@]}" CloseSession o "$s" >/dev/null
r1=$(busctl --address="$SYS" --json=short --timeout=120 call "${B[@]}" OpenSession 'a{sv}' 1 language s raw | jq -r '.data[0]')
r2=$(busctl --address="$SYS" --json=short --timeout=120 call "${B[@]}" OpenSession 'a{sv}' 1 language s raw | jq -r '.data[0]')
check "root is exempt: two sessions" \
    [ "${r1#/org/sbx/Broker1/session/_}" != "$r1" -a "${r2#/org/sbx/Broker1/session/_}" != "$r2" ]

# Part 3: round-robin. One VM at once: uid 65534 sends four runs, then uid 1 one.
check "broker with max_vms = 1" start_broker "max_vms = 1" "warm_pool_size = 0"
pids=()
for i in 1 2 3 4; do
    call_run burst$i 65534 "sleep 2; echo b$i" &
    pids+=($!)
done
wait_status queued 3
call_run single 1 'echo single' &
pids+=($!)
wait "${pids[@]}"
good=0
for i in 1 2 3 4; do [[ "$(run_stdout burst$i)" == b$i ]] && good=$((good + 1)); done
check "uid 65534's four runs and uid 1's run all finish" [ "$good" -eq 4 -a "$(run_stdout single)" = single ]
before=0
for i in 1 2 3 4; do [[ $(cat "$TMP/burst$i.done") -lt $(cat "$TMP/single.done") ]] && before=$((before + 1)); done
check "uid 1's single run is served after at most one of the burst (FIFO would make it last): $before" [ "$before" -le 1 ]

stop_bus
check_no_leaks "admission"
[[ $T_FAILED -eq 0 ]] || diag "$(tail -n 30 "$TMP/broker.log")"
finish
