#!/usr/bin/env bash
# The documented D-Bus API (dbus/org.sbx.Broker1.xml, installed as is) is exactly
# what the running broker exports: the broker object, a job object and a session
# object are introspected live and compared member by member (introspect-diff.py).
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
DOC="$HERE/../../dbus/org.sbx.Broker1.xml"
DIFF=(/usr/bin/python3 "$HERE/introspect-diff.py")
start_bus

B=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1)
$BUSCTL --timeout=120 call "${B[@]}" GetStatus >/dev/null # activates the broker

# A job: busctl leaves the bus after the reply, which cancels the job; its object
# stays for job_linger_seconds, long enough to introspect it.
job=$($BUSCTL --json=short call "${B[@]}" StartRun 'a{sv}' 1 code s 'import time; time.sleep(60)' | jq -r '.data[0]')
check "StartRun returns a job object" grep -q "^/org/sbx/Broker1/job/_[0-9]" <<<"$job"

# A session: OpenSession replies once its VM is up.
session=$($BUSCTL --json=short --timeout=400 call "${B[@]}" OpenSession 'a{sv}' 1 language s python |
    jq -r '.data[0]')
check "OpenSession returns a session object" grep -q "^/org/sbx/Broker1/session/_[0-9]" <<<"$session"

live=()
for obj in /org/sbx/Broker1 "$job" "$session"; do
    f="$TMP/live-${#live[@]}.xml"
    if [[ "$obj" == /* ]] && $BUSCTL introspect --xml-interface org.sbx.Broker1 "$obj" >"$f" 2>"$TMP/err"; then
        live+=("$obj=$f")
    else
        diag "cannot introspect '$obj': $(cat "$TMP/err")"
    fi
done
check "the three objects introspect" [ ${#live[@]} -eq 3 ]

"${DIFF[@]}" "$DOC" "${live[@]}" >"$TMP/diff" 2>&1
rc=$?
check "the documented interfaces are exactly the exported ones" [ $rc -eq 0 ]
diag "$(cat "$TMP/diff")"

# The comparison must see drift: a renamed method, a changed property type, a
# missing interface.
sed 's/<method name="Cancel"\/>/<method name="Abort"\/>/' "$DOC" >"$TMP/renamed.xml"
"${DIFF[@]}" "$TMP/renamed.xml" "${live[@]}" >"$TMP/diff" 2>&1
check "  a renamed method is reported" grep -q "method Cancel is exported but not documented" "$TMP/diff"
sed 's/<property name="ExecCount" type="u"/<property name="ExecCount" type="t"/' "$DOC" >"$TMP/retyped.xml"
"${DIFF[@]}" "$TMP/retyped.xml" "${live[@]}" >"$TMP/diff" 2>&1
check "  a changed property type is reported" grep -q "property ExecCount: type is 'u', documented 't'" "$TMP/diff"
"${DIFF[@]}" "$DOC" "${live[@]:0:2}" >"$TMP/diff" 2>&1
check "  a documented interface missing from the live objects is reported" \
    grep -q "org.sbx.Session1: documented, but on none of the live objects" "$TMP/diff"

$BUSCTL call org.sbx.Broker1 "$session" org.sbx.Session1 Close >/dev/null 2>&1
check_no_leaks "a job and a session"
finish
