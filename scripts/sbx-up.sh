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
        # The broker is the bus's child through activation; stop it first so it cancels its VMs.
        source "$envfile"
        pkill -TERM -f "$build/sbx-broker/sbx-broker" 2>/dev/null || true
        sleep 0.5
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
