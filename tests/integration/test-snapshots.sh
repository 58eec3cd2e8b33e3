#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# L1 memory snapshots (docs/snapshots.md), driven through one worker at a time with
# sbx-worker-client (no broker): build, restore, two restores from one snapshot get different
# random bytes and the right clock, corrupt snapshots are dropped and rebuilt (never restored),
# a snapshot that fails to restore falls back to a cold boot and is rebuilt next time, LRU
# eviction, and `sbxctl cache ls/purge`.
source "$(dirname "$0")/lib.sh"

WC="$BUILD/sbx-vmworker/sbx-worker-client"
WORKER="$BUILD/sbx-vmworker/sbx-vmworker"
CONF="$TMP/sbx.conf"
CACHE="$TMP/state/cache/l1"
grep -v '^state_dir\|^cache_max_mb' "$BUILD/sbx.conf" >"$CONF"
echo "state_dir = $TMP/state" >>"$CONF"
export SBX_CONFIG="$CONF"

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
key() { find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{64}' | head -n1; }
qemus() { pgrep -f -- "-kernel $KERNEL" | wc -l; }
show() { diag "$(cat "$TMP/$1.err" | grep -v '^>' | tail -n 12)"; }

# --- build ---
session build python 'print(6*7)'
check "first session builds the snapshot (tier cold, saved)" tier_is build cold
check "... reports saved=1" saved_is build 1
check "... runs the code" grep -qx 42 "$TMP/build.out" || show build
check "the cache holds one snapshot" test "$(entries)" -eq 1
K=$(key)
check "snapshot has ram, state and meta" test -f "$K/ram" -a -f "$K/state" -a -f "$K/meta"
check "RAM file is owned by us and not writable by QEMU's user" \
    test "$(stat -c %u:%a "$K/ram")" = "$(id -u):644"
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
session c2 python 'print(2)'
check "the rebuilt snapshot restores" tier_is c2 l1

K=$(key)
truncate -s 100 "$K/state"
session c3 python 'print(3)'
check "truncated state: not restored, dropped" note_has c3 "wrong size"
check "... rebuilt" saved_is c3 1

K=$(key)
echo garbage >"$K/meta"
session c4 python 'print(4)'
check "garbage meta: not restored, dropped" note_has c4 "dropped"
check "... rebuilt" saved_is c4 1

K=$(key)
truncate -s 128M "$K/ram"
session c5 python 'print(5)'
check "short RAM file: not restored, dropped" note_has c5 "RAM file"
check "... rebuilt" saved_is c5 1

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
session c8 python 'print(8)'
check "... and the one after restores it" tier_is c8 l1

# --- sbxctl cache ---
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
session j1 javascript "$JS"
session j2 javascript "$JS"
check "javascript sessions restored" tier_is j1 l1 && tier_is j2 l1
check "Math.random and randomUUID differ between two restores" test "$(cat "$TMP/j1.out")" != "$(cat "$TMP/j2.out")" -a \
    "$(cut -d' ' -f1 "$TMP/j1.out")" != "$(cut -d' ' -f1 "$TMP/j2.out")"
diag "j1: $(cat "$TMP/j1.out")  j2: $(cat "$TMP/j2.out")"
"$SBXCTL" cache purge >/dev/null

# --- LRU eviction under cache_max_mb: the second language evicts the first ---
echo "cache_max_mb = 300" >>"$CONF"
session e1 python 'print(1)'
session e2 raw 'echo 2'
check "raw session built its own snapshot" saved_is e2 1
check "... evicting the python one (least recently used) to fit cache_max_mb" \
    test "$("$SBXCTL" cache ls --json | jq -r '[.snapshots[].language] | join(",")')" = raw

# --- nothing left behind ---
check "no QEMU left running" test "$(qemus)" -eq 0
check "no build directories left" test -z "$(find "$CACHE" -maxdepth 1 -name '*.tmp-*' -o -maxdepth 1 -name '*.drop-*')"
finish
