#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# L1 memory snapshots (docs/snapshots.md), driven through one worker at a time with
# sbx-worker-client (no broker), against a real sbx-cache that runs as another user (nobody) on a
# socket made by systemd-socket-activate, as under sbx-cache.socket: build, restore, two restores
# from one snapshot get different random bytes and the right clock, corrupt snapshots are dropped
# and rebuilt (never restored), a snapshot that fails to restore falls back to a cold boot and is
# rebuilt next time, sbx-cache killed mid-session and restarted, refused peers, LRU eviction, and
# `sbxctl cache ls/purge/verify`.
source "$(dirname "$0")/lib.sh"

WC="$BUILD/sbx-vmworker/sbx-worker-client"
WORKER="$BUILD/sbx-vmworker/sbx-vmworker"
CONF="$TMP/sbx.conf"
CACHE="$TMP/state/cache/l1"
SOCK="$TMP/run/cache.sock"
CACHE_UID=65534
grep -v '^state_dir\|^cache_max_mb\|^runtime_dir' "$BUILD/sbx.conf" >"$CONF"
echo "state_dir = $TMP/state" >>"$CONF"
echo "runtime_dir = $TMP/run" >>"$CONF"
export SBX_CONFIG="$CONF"
# The cache belongs to sbx-cache's user, which must reach it.
chmod 755 "$TMP"
mkdir -p "$TMP/run" "$CACHE"
chmod 755 "$TMP/state" "$TMP/state/cache"
chown "$CACHE_UID:$CACHE_UID" "$CACHE"

# sbx-cache as nobody, on a listening socket made by root (like systemd's sbx-cache.socket).
CACHE_PID=""
start_cache() {
    systemd-socket-activate -l "$SOCK" -E SBX_CONFIG -- \
        setpriv --reuid=$CACHE_UID --regid=$CACHE_UID --clear-groups --inh-caps=-all \
        "$BUILD/sbx-cache/sbx-cache" --dir="$CACHE" "$@" 2>>"$TMP/cache.log" &
    CACHE_PID=$!
    for _ in $(seq 50); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
    chmod 666 "$SOCK" # SocketMode=0666 in sbx-cache.socket: sbx-cache checks its peers itself
}
stop_cache() {
    [[ -n "$CACHE_PID" ]] && kill "$CACHE_PID" 2>/dev/null && wait "$CACHE_PID" 2>/dev/null
    CACHE_PID=""
    rm -f "$SOCK"
}
trap 'stop_cache; cleanup' EXIT
cache_alive() { kill -0 "$CACHE_PID" 2>/dev/null; }
start_cache

# session NAME LANG [EXEC_CODE...]: one session with SNAPSHOT=1 running each code; output in
# $TMP/NAME.out, the client's log in $TMP/NAME.err.
session() {
    local name=$1 lang=$2; shift 2
    { for c in "$@"; do echo "exec $c"; done; echo close; } >"$TMP/$name.script"
    "$WC" --worker "$WORKER" --lang "$lang" --session --snapshot --timing "$TMP/$name.script" \
        >"$TMP/$name.out" 2>"$TMP/$name.err"
}
ready() { grep '^session_ready' "$TMP/$1.err"; }
tier_is() { ready "$1" | grep -q " tier=$2 "; }
saved_is() { ready "$1" | grep -q " saved=$2"; }
note_has() { ready "$1" | grep -q "note=.*$2"; }
entries() { find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{64}' | wc -l; }
langs() { "$SBXCTL" cache ls --json | jq -r '[.snapshots[].language] | join(",")'; }
langs_become() { for _ in $(seq 100); do [[ "$(langs)" == "$1" ]] && return 0; sleep 0.2; done; return 1; }
tmps() { find "$CACHE" -mindepth 1 -maxdepth 1 -name '*.tmp-*' -o -mindepth 1 -maxdepth 1 -name '*.drop-*'; }
# sbx-cache copies and commits a new snapshot in the background: wait for N entries, no .tmp left.
committed() {
    local n=${1:-1}
    for _ in $(seq 100); do [[ "$(entries)" -eq $n && -z "$(tmps)" ]] && return 0; sleep 0.2; done
    return 1
}
key() { find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{64}' | head -n1; }
qemus() { qemu_pids | wc -l; }
show() { diag "$(cat "$TMP/$1.err" | grep -v '^>' | tail -n 12)"; }

# --- build ---
session build python 'print(6*7)'
check "first session builds the snapshot (tier cold, saved)" tier_is build cold
check "... reports saved=1" saved_is build 1
check "... runs the code" grep -qx 42 "$TMP/build.out" || show build
check "sbx-cache commits one snapshot" committed 1
K=$(key)
check "snapshot has ram, state and meta" test -f "$K/ram" -a -f "$K/state" -a -f "$K/meta"
check "RAM file belongs to sbx-cache's user, read-only for everyone else (QEMU, the worker)" \
    test "$(stat -c %u:%a "$K/ram")" = "$CACHE_UID:644"
check "the cache directory is sbx-cache's alone (0700)" test "$(stat -c %u:%a "$CACHE")" = "$CACHE_UID:700"
check "meta records the RAM file's content hash" grep -q '^ram_sha256 [0-9a-f]\{64\}$' "$K/meta"
check "RAM file has the guest memory size" test "$(stat -c %s "$K/ram")" -eq $((256 * 1024 * 1024))
RAM_SUM=$(sha256sum <"$K/ram")

# --- two restores from one snapshot, at the same time ---
# The first exec checks that nothing imported (and so seeded) random before user code.
CHECK='import sys; print(int("random" in sys.modules))'
CODE='import os, time, random; print(os.urandom(16).hex()); print(open("/dev/urandom","rb").read(16).hex()); print(random.getrandbits(64)); print("%.3f" % time.time())'
T0=$(date +%s.%N)
session a python "$CHECK" "$CODE" & PA=$!
session b python "$CHECK" "$CODE" & PB=$!
wait $PA; RA=$?; wait $PB; RB=$?
T1=$(date +%s.%N)
check "two sessions restored (tier l1)" test $RA -eq 0 -a $RB -eq 0
check "... session a is l1" tier_is a l1 || show a
check "... session b is l1" tier_is b l1 || show b
check "Python's random module is not imported before user code" test "$(sed -n 1p "$TMP/a.out")" = 0
check "os.urandom differs between the two" test "$(sed -n 2p "$TMP/a.out")" != "$(sed -n 2p "$TMP/b.out")"
check "/dev/urandom differs between the two" test "$(sed -n 3p "$TMP/a.out")" != "$(sed -n 3p "$TMP/b.out")"
check "random.getrandbits differs between the two" test "$(sed -n 4p "$TMP/a.out")" != "$(sed -n 4p "$TMP/b.out")"
clock_ok() { awk -v g="$(sed -n 5p "$TMP/$1.out")" -v t0="$T0" -v t1="$T1" 'BEGIN { exit !(g >= t0 - 1 && g <= t1 + 1) }'; }
check "clock of restore a is the host's (within 1 s)" clock_ok a
check "clock of restore b is the host's (within 1 s)" clock_ok b
diag "a: $(tr '\n' ' ' <"$TMP/a.out")"
diag "b: $(tr '\n' ' ' <"$TMP/b.out")"
diag "host: $T0 .. $T1"
check "the RAM file is unchanged by the restores" test "$(sha256sum <"$K/ram")" = "$RAM_SUM"
grep timing "$TMP/a.err" | while read -r l; do diag "$l"; done

# --- corruption is detected, dropped and rebuilt, never restored ---
printf 'X' | dd of="$K/state" bs=1 seek=1000 conv=notrunc status=none
session c1 python 'print(1)'
check "modified state: not restored (tier cold)" tier_is c1 cold
check "... dropped as corrupt" note_has c1 "checksum"
check "... rebuilt (saved=1)" saved_is c1 1
check "... the code still ran" grep -qx 1 "$TMP/c1.out"
committed 1
session c2 python 'print(2)'
check "the rebuilt snapshot restores" tier_is c2 l1

K=$(key)
truncate -s 100 "$K/state"
session c3 python 'print(3)'
check "truncated state: not restored, dropped" note_has c3 "wrong size"
check "... rebuilt" saved_is c3 1
committed 1

K=$(key)
echo garbage >"$K/meta"
session c4 python 'print(4)'
check "garbage meta: not restored, dropped" note_has c4 "dropped"
check "... rebuilt" saved_is c4 1
committed 1

K=$(key)
truncate -s 128M "$K/ram"
session c5 python 'print(5)'
check "short RAM file: not restored, dropped" note_has c5 "RAM file"
check "... rebuilt" saved_is c5 1
committed 1

# A state file that passes the checks but that QEMU refuses: the restore fails, the session boots
# cold, and the snapshot is marked invalid so that the next session rebuilds it.
K=$(key)
head -c "$(stat -c %s "$K/state")" /dev/urandom >"$K/state"
sed -i "s/^state_sha256 .*/state_sha256 $(sha256sum <"$K/state" | cut -d' ' -f1)/" "$K/meta"
session c6 python 'print(6)'
check "unloadable state: the session falls back to a cold boot" tier_is c6 cold || show c6
check "... says the restore failed" note_has c6 "restore failed"
check "... and still runs the code" grep -qx 6 "$TMP/c6.out" || show c6
session c7 python 'print(7)'
check "... the next session drops and rebuilds it" saved_is c7 1
committed 1
session c8 python 'print(8)'
check "... and the one after restores it" tier_is c8 l1

# --- sbxctl cache verify: re-hashes the RAM file (a flipped byte with the right size) ---
"$SBXCTL" cache verify >"$TMP/verify.txt" 2>&1
check "cache verify passes an intact snapshot" grep -q "^Verified: 0 bad" "$TMP/verify.txt" || diag "$(cat "$TMP/verify.txt")"
K=$(key)
OFF=$(( $(stat -c %s "$K/ram") / 2 ))
printf '\x42' | dd of="$K/ram" bs=1 seek=$OFF conv=notrunc status=none
"$SBXCTL" cache verify >"$TMP/verify.txt" 2>&1
check "cache verify drops a RAM file changed in place" grep -q "^Verified: 1 bad" "$TMP/verify.txt" || diag "$(cat "$TMP/verify.txt")"
check "... it is gone" test "$(entries)" -eq 0
session v1 python 'print(1)'
committed 1

# --- peers: only root and the allowed uids use the cache; only root and admin_group purge ---
setpriv --reuid=12345 --regid=12345 --clear-groups "$SBXCTL" cache ls >"$TMP/peer.txt" 2>&1
check "another uid may not list the cache" grep -q "access denied" "$TMP/peer.txt" || diag "$(cat "$TMP/peer.txt")"
setpriv --reuid=12345 --regid=12345 --clear-groups "$SBXCTL" cache purge >"$TMP/peer.txt" 2>&1
check "another uid may not purge it" grep -q "access denied" "$TMP/peer.txt"
check "... nothing was removed" test "$(entries)" -eq 1
check "... and sbx-cache logged the refusals" grep -q "Refused purge the cache for uid 12345" "$TMP/cache.log"

# --- sbx-cache killed: sessions go on (cold, with a note), then it comes back ---
kill -9 "$CACHE_PID"; wait "$CACHE_PID" 2>/dev/null; CACHE_PID=""; rm -f "$SOCK"
session k1 python 'print(41)'
check "with sbx-cache dead a session still runs (tier cold)" tier_is k1 cold
check "... and says why" note_has k1 "sbx-cache is not available"
check "... output intact" grep -qx 41 "$TMP/k1.out"
start_cache
session k2 python 'print(42)'
check "restarted sbx-cache serves the snapshot again (l1)" tier_is k2 l1 || show k2
# A socket at the cache's path served by another user is not trusted (its snapshots would become
# guest memory): the worker checks SO_PEERCRED and boots cold.
stop_cache
chmod 1777 "$TMP/run" # (for the impostor only; sbx-cache.socket's directory is root's)
setpriv --reuid=$CACHE_UID --regid=$CACHE_UID --clear-groups socat UNIX-LISTEN:"$SOCK",fork,mode=666 EXEC:/bin/cat &
FAKE=$!
for _ in $(seq 50); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
session f1 python 'print(5)'
check "a cache socket owned by another uid is refused (tier cold)" eval 'tier_is f1 cold && note_has f1 "not permitted"' || show f1
check "... and the session still ran" grep -qx 5 "$TMP/f1.out"
kill $FAKE 2>/dev/null; wait $FAKE 2>/dev/null; rm -f "$SOCK"
chmod 755 "$TMP/run"
start_cache
# Killed in the middle of storing a new snapshot: the .tmp directory is removed at the next start.
"$SBXCTL" cache purge >/dev/null
session k3 raw 'echo 3' &
KP=$!
for _ in $(seq 150); do [[ -n "$(tmps)" ]] && break; sleep 0.05; done
kill -9 "$CACHE_PID"; wait "$CACHE_PID" 2>/dev/null; CACHE_PID=""; rm -f "$SOCK"
wait $KP
check "the session whose snapshot was being stored still ran" grep -qx 3 "$TMP/k3.out"
start_cache
"$SBXCTL" cache ls >/dev/null 2>&1
check "a restarted sbx-cache removes half-stored snapshots" test -z "$(tmps)"
"$SBXCTL" cache purge >/dev/null

# --- sbxctl cache ---
session l1 python 'print(1)'
committed 1
"$SBXCTL" cache ls >"$TMP/ls.txt" 2>&1
check "cache ls lists the snapshot" grep -q "^$(basename "$(key)" | cut -c1-12) *python" "$TMP/ls.txt" || diag "$(cat "$TMP/ls.txt")"
check "cache ls --json is JSON with one python snapshot" \
    test "$("$SBXCTL" cache ls --json | jq -r '[.snapshots[] | select(.language == "python")] | length')" = 1
"$SBXCTL" cache purge >"$TMP/purge.txt" 2>&1
check "cache purge removes it" test "$(entries)" -eq 0
check "cache ls is empty afterwards" test "$("$SBXCTL" cache ls --json | jq '.snapshots | length')" = 0

# --- two sessions at once with no snapshot: one builds it, the other boots cold meanwhile ---
session p1 python 'print(11)' & P1=$!
session p2 python 'print(12)' & P2=$!
wait $P1; wait $P2
check "concurrent first sessions both ran" grep -qx 11 "$TMP/p1.out" && grep -qx 12 "$TMP/p2.out"
check "... exactly one built the snapshot" test "$(cat "$TMP/p1.err" "$TMP/p2.err" | grep -c '^session_ready.* saved=1')" -eq 1
check "... the other booted cold without waiting" \
    test "$(cat "$TMP/p1.err" "$TMP/p2.err" | grep -c 'note=another worker is building the snapshot')" -eq 1

# --- JavaScript: Math.random must not repeat across restores (Bun seeds it once per process) ---
JS='console.log(Math.random(), crypto.randomUUID())'
session j0 javascript "$JS"
committed 1
session j1 javascript "$JS"
session j2 javascript "$JS"
check "javascript sessions restored" tier_is j1 l1 && tier_is j2 l1
check "Math.random and randomUUID differ between two restores" test "$(cat "$TMP/j1.out")" != "$(cat "$TMP/j2.out")" -a \
    "$(cut -d' ' -f1 "$TMP/j1.out")" != "$(cut -d' ' -f1 "$TMP/j2.out")"
diag "j1: $(cat "$TMP/j1.out")  j2: $(cat "$TMP/j2.out")"
"$SBXCTL" cache purge >/dev/null

# --- LRU eviction under cache_max_mb: the second language evicts the first ---
echo "cache_max_mb = 270" >>"$CONF"
stop_cache; start_cache
session e1 python 'print(1)'
committed 1
session e2 raw 'echo 2'
check "raw session built its own snapshot" saved_is e2 1
if langs_become raw; then ok "... evicting the python one (least recently used) to fit cache_max_mb"; else
    not_ok "... evicting the python one (least recently used) to fit cache_max_mb"
    diag "$("$SBXCTL" cache ls 2>&1; grep -i evict "$TMP/cache.log" | tail -n 5)"
fi

# --- nothing left behind ---
check "no QEMU left running" test "$(qemus)" -eq 0
check "no build directories left" test -z "$(tmps)"
check "sbx-cache is still up" cache_alive
check "no worker scratch files left" test -z "$(find /var/tmp -maxdepth 1 -name 'sbx-l1-*' 2>/dev/null)"
finish
