#!/usr/bin/env bash
# Four concurrent runs all return their own correct results.
source "$(dirname "$0")/lib.sh"
start_bus

for i in 1 2 3 4; do
    "$SBX" run --json "import time; time.sleep(1); print($i * 111)" >"$TMP/r$i.json" 2>"$TMP/e$i" &
done
wait
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
