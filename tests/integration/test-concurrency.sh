#!/usr/bin/env bash
# Four concurrent runs all return their own correct results.
source "$(dirname "$0")/lib.sh"
start_bus

for i in 1 2 3 4; do
    "$SBX" run --json "import time; time.sleep(1); print($i * 111)" >"$TMP/r$i.json" 2>"$TMP/e$i" &
done
# While they run: each QEMU has a uid of its own (qemu_uid_range), none of them root.
uids=""
for _ in $(seq 100); do
    pids=$(qemu_pids)
    [[ $(wc -w <<<"$pids") -ge 2 ]] && { uids=$(for p in $pids; do awk '/^Uid:/ {print $2}' /proc/$p/status 2>/dev/null; done); break; }
    sleep 0.1
done
wait
n=$(sort -u <<<"$uids" | grep -c .)
check "concurrent QEMUs run under distinct non-root uids ($(tr '\n' ' ' <<<"$uids"))" \
    [ "$n" -ge 2 -a "$n" -eq "$(grep -c . <<<"$uids")" ] && ! grep -qx 0 <<<"$uids"
good=0
for i in 1 2 3 4; do
    [[ "$(jq -r .stdout "$TMP/r$i.json" 2>/dev/null)" == "$((i * 111))" && "$(jq -r .exit_code "$TMP/r$i.json")" == 0 ]] && good=$((good + 1))
done
check "4 concurrent runs (separate clients) all correct" [ $good -eq 4 ]
[[ $good -eq 4 ]] || diag "$(cat "$TMP"/e* "$TMP"/r*.json)"

"$SBX" run -q -c 'print("a")' -c 'print("b")' -c 'print("c")' -c 'print("d")' >"$TMP/multi" 2>&1; rc=$?
check "one sbx call with four sources runs them all" [ $rc -eq 0 -a "$(grep -c '^\[[1-4]\] [abcd]$' "$TMP/multi")" -eq 4 ]
diag "$(cat "$TMP/multi")"

check_no_leaks "concurrent runs"
finish
