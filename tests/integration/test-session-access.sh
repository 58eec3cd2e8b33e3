#!/usr/bin/env bash
# A session belongs to the uid that opened it: on a system-like bus with our
# policy, another uid gets AccessDenied; root may administer it.
source "$(dirname "$0")/lib.sh"

start_system_bus
B=(org.sbx.Broker1 /org/sbx/Broker1 org.sbx.Broker1)

# uid 65534 opens a session (any local user may run code).
s=$(nobody busctl --address="$SYS" --json=short call "${B[@]}" OpenSession 'a{sv}' 1 language s raw 2>"$TMP/e" | jq -r '.data[0]')
check "an unprivileged user opens a session" grep -q "^/org/sbx/Broker1/session/_" <<<"$s"
[[ "$s" == /org/sbx/Broker1/session/_* ]] || diag "$(cat "$TMP/e")"
r=$(nobody busctl --address="$SYS" --json=short call org.sbx.Broker1 "$s" org.sbx.Session1 Exec 'sa{sv}' 'echo mine' 0 | jq -r '.data[0].stdout.data')
check "  and uses it" [ "$r" = "mine" ]

# Another uid (daemon, 1) may not touch it.
SYSTEMD_LOG_LEVEL=debug setpriv --reuid=1 --regid=1 --clear-groups busctl --address="$SYS" call org.sbx.Broker1 "$s" \
    org.sbx.Session1 Exec 'sa{sv}' 'echo theirs' 0 >/dev/null 2>"$TMP/e"
check "another uid's Exec → AccessDenied" grep -q "error-name=org.sbx.Error.AccessDenied " "$TMP/e"
SYSTEMD_LOG_LEVEL=debug setpriv --reuid=1 --regid=1 --clear-groups busctl --address="$SYS" call "${B[@]}" CloseSession o "$s" \
    >/dev/null 2>"$TMP/e"
check "another uid's CloseSession → AccessDenied" grep -q "error-name=org.sbx.Error.AccessDenied " "$TMP/e"
n=$(setpriv --reuid=1 --regid=1 --clear-groups busctl --address="$SYS" --json=short call "${B[@]}" ListSessions | jq '.data[0] | length')
check "another uid does not see it in ListSessions" [ "$n" = 0 ]

# root administers.
n=$(busctl --address="$SYS" --json=short call "${B[@]}" ListSessions | jq '.data[0] | length')
check "root sees it in ListSessions" [ "$n" -ge 1 ]
busctl --address="$SYS" call "${B[@]}" CloseSession o "$s" >/dev/null 2>&1
check "root closes it with CloseSession" \
    [ "$(busctl --address="$SYS" get-property org.sbx.Broker1 "$s" org.sbx.Session1 Closed | awk '{print $2}')" = true ]

# An administrators' group (admin_group) may administer other users' sessions too.
bp=$(broker_pid); kill -TERM "$bp" 2>/dev/null
for _ in $(seq 50); do [[ -z "$(broker_pid)" ]] && break; sleep 0.1; done
cp "$BUILD/sbx.conf" "$TMP/admin.conf"; echo "admin_group = adm" >>"$TMP/admin.conf"
DBUS_SYSTEM_BUS_ADDRESS=$SYS "$BUILD/sbx-broker/sbx-broker" --system --config "$TMP/admin.conf" 2>"$TMP/broker.log" &
for _ in $(seq 100); do busctl --address="$SYS" call "${B[@]}" GetStatus >/dev/null 2>&1 && break; sleep 0.1; done
s2=$(nobody busctl --address="$SYS" --json=short call "${B[@]}" OpenSession 'a{sv}' 1 language s raw | jq -r '.data[0]')
adm_gid=$(getent group adm | cut -d: -f3)
as_admin() { setpriv --reuid=2 --regid=2 --groups="$adm_gid" "$@"; }
n=$(as_admin busctl --address="$SYS" --json=short call "${B[@]}" ListSessions | jq '.data[0] | length')
check "a member of admin_group sees other users' sessions" [ "$n" -ge 1 ]
SYSTEMD_LOG_LEVEL=debug setpriv --reuid=2 --regid=2 --clear-groups busctl --address="$SYS" call "${B[@]}" CloseSession o "$s2" \
    >/dev/null 2>"$TMP/e"
check "  the same uid without the group → AccessDenied" grep -q "error-name=org.sbx.Error.AccessDenied " "$TMP/e"
as_admin busctl --address="$SYS" call "${B[@]}" CloseSession o "$s2" >/dev/null 2>"$TMP/e"
check "  with the group it closes another user's session" \
    [ "$(busctl --address="$SYS" get-property org.sbx.Broker1 "$s2" org.sbx.Session1 Closed | awk '{print $2}')" = true ]

# Resizing the warm pool is administration too.
SYSTEMD_LOG_LEVEL=debug nobody busctl --address="$SYS" call "${B[@]}" SetPoolSize su python 1 >/dev/null 2>"$TMP/e"
check "an unprivileged user's SetPoolSize → AccessDenied" grep -q "error-name=org.sbx.Error.AccessDenied " "$TMP/e"
n=$(nobody busctl --address="$SYS" --json=short call "${B[@]}" GetPool | jq '[.data[0][] | select(.[1] > 0)] | length')
check "  the pool is unchanged, and GetPool is open to everybody" [ "$n" = 0 ]
as_admin busctl --address="$SYS" call "${B[@]}" SetPoolSize su raw 0 >/dev/null 2>"$TMP/e"
check "  a member of admin_group may resize it" [ $? -eq 0 ]

stop_bus
check_no_leaks "sessions on the system-like bus"
finish
