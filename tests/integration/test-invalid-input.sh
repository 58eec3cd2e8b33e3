#!/usr/bin/env bash
# Every invalid input gets its typed D-Bus error, and the broker keeps serving.
source "$(dirname "$0")/lib.sh"
start_bus

R=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1 Run)
expect_error() {
    local name=$1 desc=$2; shift 2
    busctl_run "$@"
    if bus_error_is "$name"; then ok "$desc → $name"; else not_ok "$desc → $name"; diag "$(grep -o 'error-name=.*' "$TMP/bus.err" | tail -n1)"; fi
}

expect_error CodeValidation "empty code" 'a{sv}' 1 code s ''
expect_error CodeValidation "whitespace-only code" 'a{sv}' 1 code s '   '
expect_error CodeValidation "missing code" 'a{sv}' 1 language s python
expect_error InvalidInput "unknown language" 'a{sv}' 2 code s 'print(1)' language s cobol
expect_error InvalidInput "timeout 0" 'a{sv}' 2 code s 'print(1)' timeout_seconds u 0
expect_error InvalidInput "timeout 301" 'a{sv}' 2 code s 'print(1)' timeout_seconds u 301
expect_error InvalidInput "memory below 128 MB" 'a{sv}' 2 code s 'print(1)' memory_mb u 64
expect_error InvalidInput "memory beyond the host" 'a{sv}' 2 code s 'print(1)' memory_mb u 4000000000
expect_error InvalidInput "unknown key" 'a{sv}' 2 code s 'print(1)' colour s red
expect_error InvalidInput "timeout of the wrong type" 'a{sv}' 2 code s 'print(1)' timeout_seconds s 10
expect_error EnvVarValidation "env name with a dash" 'a{sv}' 2 code s 'print(1)' env 'a{ss}' 1 BAD-NAME x
expect_error EnvVarValidation "env name starting with a digit" 'a{sv}' 2 code s 'print(1)' env 'a{ss}' 1 1ABC x
expect_error EnvVarValidation "env value with a control character" 'a{sv}' 2 code s 'print(1)' env 'a{ss}' 1 OK $'a\x01b'
args=(); for i in $(seq 101); do args+=("V$i" x); done
expect_error EnvVarValidation "101 env vars" 'a{sv}' 2 code s 'print(1)' env 'a{ss}' 101 "${args[@]}"

# 1 MiB + 1 byte of code goes through the CLI (a busctl argument cannot be that long).
head -c 1048577 /dev/zero | tr '\0' '#' >"$TMP/big.py"
"$SBX" run "$TMP/big.py" >/dev/null 2>"$TMP/e"; rc=$?
check "code over 1 MiB → CodeValidation, CLI exit 2" grep -q CodeValidation "$TMP/e"
check "  (exit status 2)" [ $rc -eq 2 ]

printf 'print(1)\0' >"$TMP/nul.py"
"$SBX" run "$TMP/nul.py" >/dev/null 2>"$TMP/e"; rc=$?
check "code with a NUL byte is refused (D-Bus strings cannot carry NUL)" [ $rc -ne 0 ]

"$SBX" run -e 'NOEQUALS' 'print(1)' >/dev/null 2>&1; rc=$?
check "-e without = is a usage error" [ $rc -eq 2 ]

check "the broker is still up after all of that" broker_alive
out=$("$SBX" run 'print("still serving")' 2>/dev/null)
check "and still runs code" [ "$out" = "still serving" ]

check_no_leaks "invalid inputs"
finish
