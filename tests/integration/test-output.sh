#!/usr/bin/env bash
# Output limits: cut and flagged, never silently dropped; nothing under the cap lost.
source "$(dirname "$0")/lib.sh"
start_bus

run_json 'import sys; sys.stdout.write("x" * 2_000_000)'
check "stdout beyond 1 MiB is flagged stdout_truncated" [ "$(jget .stdout_truncated)" = "true" ]
check "exactly 1 MiB of stdout is kept" [ "$(jq -j .stdout "$TMP/out.json" | wc -c)" -eq 1048576 ]

run_json 'import sys; sys.stderr.write("e" * 200_000)'
check "stderr beyond 100 KiB is flagged stderr_truncated" [ "$(jget .stderr_truncated)" = "true" ]
check "exactly 100 KiB of stderr is kept" [ "$(jq -j .stderr "$TMP/out.json" | wc -c)" -eq 102400 ]

run_json 'print("small")'
check "small output is not flagged" [ "$(jget .stdout_truncated)" = "false" -a "$(jget .stderr_truncated)" = "false" ]

# Streaming to the caller's fd (what plain `sbx run` does): every line arrives.
"$SBX" run 'for i in range(50000): print(i)' >"$TMP/lines" 2>/dev/null
check "50,000 streamed lines all arrive in order" \
    [ "$(wc -l <"$TMP/lines")" -eq 50000 -a "$(tail -n1 "$TMP/lines")" = "49999" ]

"$SBX" run 'import sys; sys.stdout.write("y" * 3_000_000)' >"$TMP/big" 2>/dev/null
check "streamed stdout is cut at 1 MiB too" [ "$(wc -c <"$TMP/big")" -eq 1048576 ]

"$SBX" run -l javascript 'for (let i = 0; i < 1000; i++) console.log("line " + i)' >"$TMP/js" 2>/dev/null
check "Bun output through a pipe is complete" [ "$(wc -l <"$TMP/js")" -eq 1000 ]

# Live streaming: the first line reaches us long before the run ends.
"$SBX" run -l raw 'echo first; sleep 3; echo second' 2>/dev/null | while IFS= read -r line; do
    echo "$(date +%s%N) $line"
done >"$TMP/timed"
t1=$(awk '$2=="first"{print $1}' "$TMP/timed"); t2=$(awk '$2=="second"{print $1}' "$TMP/timed")
gap=-1; [[ -n "$t1" && -n "$t2" ]] && gap=$(((t2 - t1) / 1000000))
check "output streams live (first line ≥2 s before the second)" [ $gap -ge 2000 ]
diag "gap between the two lines: ${gap} ms"

run_json 'import sys; sys.stdout.buffer.write(b"ok \xff\xfe\n")'
check "invalid UTF-8 output is replaced, not fatal" grep -q "^ok " <<<"$(jget .stdout)"

check_no_leaks "output runs"
finish
