# Shared helpers for the integration tests (bash, TAP output).
# Each test file gets its own private dbus-daemon; the broker is started by
# bus activation from the build tree, exactly as in the quick start.
set -uo pipefail

BUILD=${1:?usage: test.sh BUILDDIR}
BUILD=$(cd "$BUILD" && pwd)
SBX="$BUILD/sbx/sbx"
SBXCTL="$BUILD/sbxctl/sbxctl"
KERNEL="$BUILD/images/bzImage"
TMP=$(mktemp -d /tmp/sbx-test.XXXXXX)
T_NUM=0
T_FAILED=0

_bus_pid=""
start_bus() {
    local out
    out=$(dbus-daemon --config-file="$BUILD/dbus/session.conf" --fork --print-address=1 --print-pid=1) || {
        echo "Bail out! cannot start dbus-daemon"; exit 1; }
    export SBX_BUS_ADDRESS=$(sed -n 1p <<<"$out")
    _bus_pid=$(sed -n 2p <<<"$out")
    # The broker can spawn a probe the first time; give activation time.
    export BUSCTL="busctl --address=$SBX_BUS_ADDRESS"
}

broker_pid() { pgrep -f "^$BUILD/sbx-broker/sbx-broker" | head -n1; }

stop_bus() {
    local bp
    bp=$(broker_pid)
    [[ -n "$bp" ]] && kill -TERM "$bp" 2>/dev/null
    for _ in $(seq 50); do [[ -z "$(broker_pid)" ]] && break; sleep 0.1; done
    [[ -n "$_bus_pid" ]] && kill "$_bus_pid" 2>/dev/null
    _bus_pid=""
}

cleanup() {
    stop_bus
    rm -rf "$TMP"
}
trap cleanup EXIT

ok() { T_NUM=$((T_NUM + 1)); echo "ok $T_NUM - $*"; }
not_ok() { T_NUM=$((T_NUM + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_NUM - $*"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
diag() { sed 's/^/# /' <<<"$*"; }
finish() { echo "1..$T_NUM"; [[ $T_FAILED -eq 0 ]]; exit $?; }

# run_json ARGS...: `sbx run --json`, result in $TMP/out.json, exit status in $RC.
run_json() { "$SBX" run --json "$@" >"$TMP/out.json" 2>"$TMP/err.txt"; RC=$?; }
jget() { jq -r "$1" "$TMP/out.json"; }

# busctl_run 'a{sv}' ARGS...: raw Run call; stdout JSON in $TMP/bus.json, stderr in $TMP/bus.err.
# sd-bus debug logging is the one place busctl shows the error name.
busctl_run() {
    SYSTEMD_LOG_LEVEL=debug $BUSCTL --json=short --timeout=400 call org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1 Run "$@" \
        >"$TMP/bus.json" 2>"$TMP/bus.err"
}
bus_error_is() { grep -q "error-name=org.sbx.Error.$1 " "$TMP/bus.err"; }

# Processes and files a run may leave behind; all must be gone after each run.
qemu_pids() { pgrep -f "qemu-system-x86_64.*$KERNEL" || true; }
worker_pids() { pgrep -f "^$BUILD/sbx-vmworker/sbx-vmworker" || true; }
# VM cgroups are named vm-<run>-<worker pid>: one whose worker is gone is a leak
# (a live one may belong to another run on the same machine). The memory
# hierarchy may nest them below the caller's own cgroup, hence the depth.
vm_cgroups() {
    local d
    for d in $(find /sys/fs/cgroup -maxdepth 7 -type d -path '*/sbx/vm-*' 2>/dev/null); do
        kill -0 "${d##*-}" 2>/dev/null || echo "$d"
    done
}
# (cache.sock is the broker's sbx-cache socket: it lives as long as the broker.)
runtime_files() { find "$BUILD/run" -mindepth 1 ! -name cache.sock 2>/dev/null || true; }

# wait_gone SECONDS: waits until no QEMU/worker of ours is left.
wait_gone() {
    local deadline=$((SECONDS + ${1:-10}))
    while [[ $SECONDS -lt $deadline ]]; do
        [[ -z "$(qemu_pids)$(worker_pids)" ]] && return 0
        sleep 0.2
    done
    return 1
}

check_no_leaks() {
    local what=${1:-runs}
    wait_gone 15
    local q w c f
    q=$(qemu_pids); w=$(worker_pids); c=$(vm_cgroups); f=$(runtime_files)
    if [[ -z "$q$w$c$f" ]]; then
        ok "nothing leaked after $what (QEMU, workers, cgroups, runtime files)"
    else
        not_ok "nothing leaked after $what"
        diag "qemu: $q workers: $w cgroups: $c files: $f"
    fi
}

broker_alive() { [[ -n "$(broker_pid)" ]] && "$SBXCTL" status >/dev/null 2>&1; }
