#!/usr/bin/env bash
# Starts the suite in its embedded mode, without systemd: a private D-Bus
# daemon whose activation directory starts sbx-broker from the build tree on
# the first call. Idempotent: an already running bus is reused.
# Prints the address; `source BUILDDIR/sbx-bus.env` makes sbx and sbxctl use it.
# Usage: scripts/sbx-up.sh [BUILDDIR] | scripts/sbx-up.sh --stop [BUILDDIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
stop=0
if [[ "${1:-}" == "--stop" ]]; then stop=1; shift; fi
build=${1:-$root/build}
envfile="$build/sbx-bus.env"
pidfile="$build/sbx-bus.pid"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [[ $stop -eq 1 ]]; then
    if running; then
        # Stop the broker first so it cancels its VMs. The bus activates it on the first call
        # (and again after a crash), so the bus, not a file, knows the pid of the one that runs.
        source "$envfile"
        broker=$(busctl --address="$SBX_BUS_ADDRESS" call org.freedesktop.DBus /org/freedesktop/DBus \
            org.freedesktop.DBus GetConnectionUnixProcessID s org.sbx.Broker1 2>/dev/null | sed -n 's/^u //p') || true
        if [[ -n "$broker" ]]; then
            kill -TERM "$broker" 2>/dev/null || true
            for _ in $(seq 100); do kill -0 "$broker" 2>/dev/null || break; sleep 0.1; done
        fi
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
    rm -f "$pidfile" "$envfile"
    exit 0
fi

if ! running; then
    out=$(dbus-daemon --config-file="$build/dbus/session.conf" --fork --print-address=1 --print-pid=1)
    address=$(sed -n 1p <<<"$out")
    pid=$(sed -n 2p <<<"$out")
    echo "$pid" >"$pidfile"
    echo "export SBX_BUS_ADDRESS='$address'" >"$envfile"
    # sbxctl cache finds sbx-cache's socket through the suite's config.
    echo "export SBX_CONFIG='$build/sbx.conf'" >>"$envfile"
fi
cat "$envfile"
