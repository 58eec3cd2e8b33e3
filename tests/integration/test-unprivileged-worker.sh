#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The worker as the systemd unit runs it: an unprivileged user (here nobody, there sbx-qemu),
# talking to an sbx-cache that allows that uid. Without root the worker cannot give QEMU another
# uid, but it still gives it mount, IPC, network and PID namespaces, inside a user namespace of
# QEMU's own that maps only the worker's uid, and QEMU keeps no capability. Snapshots work the same
# (built, then restored), and a wrong uid cannot use the cache.
source "$(dirname "$0")/lib.sh"

WC="$BUILD/sbx-vmworker/sbx-worker-client"
WORKER="$BUILD/sbx-vmworker/sbx-vmworker"
USER_UID=65534
CONF="$TMP/sbx.conf"
chmod 755 "$TMP"
mkdir -p "$TMP/run" "$TMP/state"
chown "$USER_UID:$USER_UID" "$TMP/state"
grep -v '^state_dir\|^runtime_dir' "$BUILD/sbx.conf" >"$CONF"
echo "state_dir = $TMP/state" >>"$CONF"
echo "runtime_dir = $TMP/run" >>"$CONF"
chmod 644 "$CONF"
export SBX_CONFIG="$CONF"

# sbx-cache as root (its own cache directory), letting the worker's uid in, like
# `sbx-cache --allow-uid=sbx-qemu` in the unit.
"$BUILD/sbx-cache/sbx-cache" --dir="$TMP/cache" --allow-uid=$USER_UID 2>"$TMP/cache.log" &
CACHE_PID=$!
trap 'kill $CACHE_PID 2>/dev/null; wait $CACHE_PID 2>/dev/null; cleanup' EXIT
for _ in $(seq 50); do [[ -S "$TMP/run/cache.sock" ]] && break; sleep 0.1; done

as_user() { (cd / && setpriv --reuid=$USER_UID --regid=$USER_UID --clear-groups "$@"); }

# A run that sleeps, to look at its QEMU from the host.
as_user "$WC" --worker "$WORKER" 'import os, time; print(os.getuid(), flush=True); time.sleep(4); print("done")' \
    >"$TMP/run1.out" 2>"$TMP/run1.err" &
RUNNER=$!
standin=""
for _ in $(seq 200); do
    standin=$(grep -o 'qemu_pid=[0-9]*' "$TMP/run1.err" 2>/dev/null | head -n1 | cut -d= -f2)
    [[ -n "$standin" ]] && grep -q '^status phase=running' "$TMP/run1.err" && break
    sleep 0.1
done
q=$(pgrep -P "$standin" 2>/dev/null | head -n1)
if [[ -n "$q" ]]; then
    check "QEMU runs as the worker's unprivileged uid" [ "$(awk '/^Uid:/ {print $3}' /proc/$q/status)" = $USER_UID ]
    check "QEMU has no effective, permitted or bounding capabilities" \
        [ "$(awk '/^Cap(Eff|Prm|Bnd):/ {printf "%s", $2}' /proc/$q/status)" = 000000000000000000000000000000000000000000000000 ]
    for ns in user mnt ipc net pid; do
        check "QEMU has its own $ns namespace" [ "$(readlink /proc/$q/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ]
    done
    check "QEMU is PID 1 of its PID namespace" [ "$(awk '/^NSpid:/ {print $3}' /proc/$q/status)" = 1 ]
    check "its user namespace maps only the worker's uid" \
        [ "$(awk '{print $1, $2, $3}' /proc/$q/uid_map)" = "$USER_UID $USER_UID 1" ]
else
    not_ok "found the QEMU of the unprivileged worker"
    diag "$(cat "$TMP/run1.out" "$TMP/run1.err" | tail -n 20)"
fi
wait $RUNNER
check "the run completes (guest uid 1000)" [ "$(tr '\n' ' ' <"$TMP/run1.out")" = "1000 done " ]

# Snapshots through sbx-cache, as the unit configuration has them.
session() {
    local name=$1; shift
    printf 'exec %s\nclose\n' "$1" >"$TMP/$name.script"
    chmod 644 "$TMP/$name.script"
    as_user "$WC" --worker "$WORKER" --session --snapshot "$TMP/$name.script" >"$TMP/$name.out" 2>"$TMP/$name.err"
}
session s1 'print(6*7)'
check "an unprivileged worker builds a snapshot (saved=1)" grep -q '^session_ready.* saved=1' "$TMP/s1.err" ||
    diag "$(grep '^session_ready' "$TMP/s1.err")"
check "... and runs the code" grep -qx 42 "$TMP/s1.out"
for _ in $(seq 100); do [[ -z "$(find "$TMP/cache" -maxdepth 1 -name '*.tmp-*')" ]] && break; sleep 0.2; done
session s2 'print(7*6)'
check "... and restores it (tier l1)" grep -q '^session_ready.* tier=l1 ' "$TMP/s2.err" ||
    diag "$(grep '^session_ready' "$TMP/s2.err")"
check "... output intact" grep -qx 42 "$TMP/s2.out"
check "the snapshot belongs to sbx-cache's user (root here), not the worker's" \
    [ "$(stat -c %u "$(find "$TMP/cache" -mindepth 2 -name ram | head -n1)")" = 0 ]

# Another unprivileged uid: sbx-cache refuses it, its session boots cold and still runs.
printf 'exec print(1)\nclose\n' >"$TMP/o.script"; chmod 644 "$TMP/o.script"
(cd / && setpriv --reuid=12345 --regid=12345 --clear-groups "$WC" --worker "$WORKER" --session --snapshot \
    "$TMP/o.script" >"$TMP/o.out" 2>"$TMP/o.err")
check "a uid sbx-cache does not allow gets no snapshot (tier cold)" grep -q '^session_ready.* tier=cold .*access denied' "$TMP/o.err" ||
    diag "$(grep '^session_ready' "$TMP/o.err")"
check "... but its session runs" grep -qx 1 "$TMP/o.out"

check "no QEMU left running" test -z "$(qemu_pids)"
finish
