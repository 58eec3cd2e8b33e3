#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks the generated private bus configurations and the broker's bus policy:
#
#   verify-dbus.sh BUILDDIR/dbus BROKER
#
# 1. session.conf: dbus-daemon starts, and org.sbx.Broker1 is activatable.
# 2. system-test.conf (needs root, to run the bus as root and act as another
#    user): an unprivileged user may not own org.sbx.Broker1; root's call
#    activates the broker; the unprivileged user may call GetStatus and read
#    properties but not Set them or call unknown methods.
set -euo pipefail

dir=${1:?BUILDDIR/dbus}
broker=${2:?broker binary}
[[ -x $broker ]] || { echo "FAIL: $broker is not executable" >&2; exit 1; }

# The broker inherits the bus's environment: no KVM probe in a test.
export SBX_ACCEL=tcg

pids=()
cleanup() {
        for p in "${pids[@]}"; do
                kill "$p" 2>/dev/null || true
        done
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

start_bus() {
        local out
        out=$(dbus-daemon --config-file="$1" --print-address=1 --print-pid=1 --fork) ||
                fail "dbus-daemon --config-file=$1 did not start"
        bus_address=$(sed -n 1p <<<"$out")
        bus_pid=$(sed -n 2p <<<"$out")
        pids+=("$bus_pid")
        echo "started $(basename "$1"): $bus_address (pid $bus_pid)"
}

expect_ok() {
        local what=$1
        shift
        local out
        out=$("$@" 2>&1) || fail "$what: expected success, got: $out"
        echo "ok: $what"
}

expect_denied() {
        local what=$1
        shift
        local out
        if out=$("$@" 2>&1); then
                fail "$what: expected access denied, but it succeeded: $out"
        fi
        grep -qiE 'access ?denied' <<<"$out" || fail "$what: expected access denied, got: $out"
        echo "ok: $what (denied)"
}

# 1. session bus
start_bus "$dir/session.conf"
busctl --address="$bus_address" call org.freedesktop.DBus / org.freedesktop.DBus ListActivatableNames |
        grep -q '"org.sbx.Broker1"' || fail "org.sbx.Broker1 is not activatable on the session bus"
echo "ok: session bus lists org.sbx.Broker1 as activatable"
kill "$bus_pid"

# 2. system-type bus with the real policy
start_bus "$dir/system-test.conf"
sys=$bus_address
busctl --address="$sys" call org.freedesktop.DBus / org.freedesktop.DBus ListActivatableNames |
        grep -q '"org.sbx.Broker1"' || fail "org.sbx.Broker1 is not activatable on the system test bus"
echo "ok: system test bus lists org.sbx.Broker1 as activatable"

if [[ $(id -u) -ne 0 ]] || ! command -v setpriv >/dev/null || ! command -v dbus-send >/dev/null; then
        echo "policy checks need root, setpriv and dbus-send; checked the configurations only"
        exit 0
fi
as_nobody() {
        setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
B=(org.sbx.Broker1 /org/sbx/Broker1)

expect_denied "nobody owns org.sbx.Broker1" \
        as_nobody dbus-send --bus="$sys" --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.RequestName string:org.sbx.Broker1 uint32:0

expect_ok "root activates the broker (GetStatus)" \
        busctl --address="$sys" --timeout=60 call "${B[@]}" org.sbx.Broker1 GetStatus
broker_pid=$(busctl --address="$sys" call org.freedesktop.DBus / org.freedesktop.DBus \
        GetConnectionUnixProcessID s org.sbx.Broker1 | awk '{print $2}')
pids=("$broker_pid" "${pids[@]}")

expect_ok "nobody calls GetStatus" as_nobody busctl --address="$sys" call "${B[@]}" org.sbx.Broker1 GetStatus
expect_ok "nobody reads Version" as_nobody busctl --address="$sys" get-property "${B[@]}" org.sbx.Broker1 Version
expect_ok "nobody reads all properties" \
        as_nobody busctl --address="$sys" call "${B[@]}" org.freedesktop.DBus.Properties GetAll s org.sbx.Broker1
expect_ok "nobody introspects" as_nobody busctl --address="$sys" introspect "${B[@]}"
expect_ok "nobody pings" as_nobody busctl --address="$sys" call "${B[@]}" org.freedesktop.DBus.Peer Ping
expect_denied "nobody sets ActiveRuns" \
        as_nobody busctl --address="$sys" set-property "${B[@]}" org.sbx.Broker1 ActiveRuns u 5
expect_denied "nobody calls an unknown method" \
        as_nobody busctl --address="$sys" call "${B[@]}" org.sbx.Broker1 Shutdown
expect_denied "nobody calls GetManagedObjects" \
        as_nobody busctl --address="$sys" call "${B[@]}" org.freedesktop.DBus.ObjectManager GetManagedObjects
echo "all D-Bus checks passed"
