#!/usr/bin/env bash
# The systemd path without systemd: sbx-vmworker.socket's contract (Accept=yes,
# the connection as fd 3) played by systemd-socket-activate, and a broker
# configured with worker_socket instead of spawning workers itself.
source "$(dirname "$0")/lib.sh"
start_bus

sock="$TMP/vmworker.sock"
cp "$BUILD/sbx.conf" "$TMP/sbx.conf"
echo "worker_socket = $sock" >>"$TMP/sbx.conf"

systemd-socket-activate --accept -l "$sock" -E SBX_CONFIG="$TMP/sbx.conf" -E SBX_LOG_LEVEL=info \
    "$BUILD/sbx-vmworker/sbx-vmworker" 2>"$TMP/activate.log" &
activator=$!
for _ in $(seq 50); do [[ -S "$sock" ]] && break; sleep 0.1; done

# Start the broker by hand on our private bus (as the starter bus), not by activation.
DBUS_SESSION_BUS_ADDRESS=$SBX_BUS_ADDRESS DBUS_STARTER_BUS_TYPE=session \
    "$BUILD/sbx-broker/sbx-broker" --config "$TMP/sbx.conf" 2>"$TMP/broker.log" &
broker=$!
for _ in $(seq 100); do "$SBXCTL" status >/dev/null 2>&1 && break; sleep 0.1; done

st=$("$SBXCTL" status 2>&1)
check "the broker reports socket-activated workers" grep -q "socket-activated" <<<"$st"

out=$("$SBX" run 'print("hello via socket activation")' 2>"$TMP/e"); rc=$?
check "a run through a socket-activated worker works" [ "$out" = "hello via socket activation" -a $rc -eq 0 ]
[[ $rc -eq 0 ]] || diag "$(cat "$TMP/e" "$TMP/activate.log" "$TMP/broker.log")"

"$SBX" run -q -c 'print(1)' -c 'print(2)' >"$TMP/two" 2>&1
check "two concurrent runs get one worker each" [ "$(grep -c 'Spawned' "$TMP/activate.log")" -ge 3 ]

kill $broker; wait $broker 2>/dev/null
kill $activator; wait $activator 2>/dev/null

# A worker socket that belongs to another uid is refused: whoever listens there would get the code.
fake="$TMP/fake.sock"
chmod 1777 "$TMP"
setpriv --reuid=65534 --regid=65534 --clear-groups socat UNIX-LISTEN:"$fake",fork,mode=777 EXEC:/bin/cat &
faker=$!
for _ in $(seq 50); do [[ -S "$fake" ]] && break; sleep 0.1; done
sed "s|^worker_socket = .*|worker_socket = $fake|" "$TMP/sbx.conf" >"$TMP/fake.conf"
DBUS_SESSION_BUS_ADDRESS=$SBX_BUS_ADDRESS DBUS_STARTER_BUS_TYPE=session \
    "$BUILD/sbx-broker/sbx-broker" --config "$TMP/fake.conf" 2>"$TMP/broker2.log" &
broker=$!
for _ in $(seq 100); do "$SBXCTL" status >/dev/null 2>&1 && break; sleep 0.1; done
"$SBX" run 'print("must not run")' >"$TMP/o" 2>"$TMP/e"; rc=$?
refused=0; grep -q "Refusing worker socket" "$TMP/broker2.log" && refused=1
check "a worker socket owned by another uid is refused" [ $rc -ne 0 -a $refused -eq 1 ]
diag "$(cat "$TMP/e")"
kill $broker $faker 2>/dev/null; wait $broker $faker 2>/dev/null
check_no_leaks "socket-activated runs"
finish
