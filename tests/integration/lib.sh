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
# start_bus [CONF]: a private bus (dbus/session.conf, or e.g. system-test.conf: the system bus
# policy, where other uids are other users) whose activation starts the broker from the build tree.
start_bus() {
    local out
    out=$(dbus-daemon --config-file="$BUILD/dbus/${1:-session.conf}" --fork --print-address=1 --print-pid=1) || {
        echo "Bail out! cannot start dbus-daemon"; exit 1; }
    export SBX_BUS_ADDRESS=$(sed -n 1p <<<"$out")
    _bus_pid=$(sed -n 2p <<<"$out")
    # The broker can spawn a probe the first time; give activation time.
    export BUSCTL="busctl --address=$SBX_BUS_ADDRESS"
}
# A system-like bus: SYS is its address.
start_system_bus() {
    start_bus system-test.conf
    SYS=$SBX_BUS_ADDRESS
}
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# The broker is whoever owns org.sbx.Broker1 on our bus: the bus knows its pid. Asking
# does not activate it (empty output when no broker runs).
broker_pid() {
    [[ -n "$_bus_pid" ]] || return 0
    $BUSCTL call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        GetConnectionUnixProcessID s org.sbx.Broker1 2>/dev/null | sed -n 's/^u //p'
}

stop_bus() {
    local bp
    bp=$(broker_pid)
    [[ -n "$bp" ]] && kill -TERM "$bp" 2>/dev/null
    # It gives up the name before it exits: wait for the process itself.
    for _ in $(seq 50); do [[ -n "$bp" ]] && kill -0 "$bp" 2>/dev/null || break; sleep 0.1; done
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
# Workers and QEMUs are found by pid: the descendants of this test and of the broker on its bus
# (the bus activates it, but it is not the bus's child), recorded with their start time in
# $TMP/pids as they are seen, so one orphaned by a killed broker stays visible and a reused pid
# is not mistaken for it.
# _identity PID: "START KIND" of PID: the kernel's start time (field 22 of /proc/PID/stat) and
# worker, qemu or other by its name; fails for a zombie or a process that is gone.
_identity() {
    local stat comm kind=other
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    comm=${stat#*(}; comm=${comm%)*}
    stat=${stat##*) }
    set -- $stat
    [[ $1 != Z ]] || return 1
    case "$comm" in
        sbx-vmworker) kind=worker ;;
        qemu-system-x86*) kind=qemu ;;
    esac
    echo "${20} $kind"
}
# _track: records the workers and QEMUs below this test and its broker not recorded yet.
_track() {
    local pid id
    ps -e -o pid=,ppid= | awk -v roots="$$ $(broker_pid)" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            n = split(roots, queue, " ")
            for (i = 1; i <= n; i++) {
                m = split(kids[queue[i]], k, " ")
                for (j = 1; j <= m; j++) queue[++n] = k[j]
                if (i > 1) print queue[i]
            }
        }' | while read -r pid; do
        id=$(_identity "$pid") || continue
        [[ $id == *" other" ]] && continue
        grep -qx "$pid $id" "$TMP/pids" 2>/dev/null || echo "$pid $id" >>"$TMP/pids"
    done
}
# _live KIND: "PID START" of each recorded process of KIND (worker, qemu) that still runs.
_live() {
    local pid start kind
    _track
    [[ -f "$TMP/pids" ]] || return 0
    while read -r pid start kind; do
        [[ $kind == "$1" && "$(_identity "$pid")" == "$start $kind" ]] && echo "$pid $start"
    done <"$TMP/pids"
}
qemu_pids() { _live qemu | cut -d' ' -f1; }
worker_pids() { _live worker | cut -d' ' -f1; }
# The QEMU started last.
newest_qemu_pid() { _live qemu | sort -k2,2n | tail -n1 | cut -d' ' -f1; }
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
