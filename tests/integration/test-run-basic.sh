#!/usr/bin/env bash
# Hello world in each language through sbx → D-Bus → broker → worker → QEMU → agent.
source "$(dirname "$0")/lib.sh"
start_bus

out=$("$SBX" run 'print("hello")' 2>"$TMP/e"); rc=$?
check "python hello prints hello from the guest" [ "$out" = "hello" -a $rc -eq 0 ]
[[ $rc -eq 0 ]] || diag "$(cat "$TMP/e")"

out=$("$SBX" run -l javascript 'console.log("hello from bun")' 2>"$TMP/e"); rc=$?
check "javascript runs under Bun" [ "$out" = "hello from bun" -a $rc -eq 0 ]
[[ $rc -eq 0 ]] || diag "$(cat "$TMP/e")"

cat >"$TMP/snippet.ts" <<'TS'
interface Point { x: number; y: number }
const norm = (p: Point): number => Math.sqrt(p.x * p.x + p.y * p.y);
console.log(`norm=${norm({ x: 3, y: 4 })}`);
TS
out=$("$SBX" run "$TMP/snippet.ts" 2>"$TMP/e"); rc=$?
check "a TypeScript file runs (language from the .ts extension)" [ "$out" = "norm=5" -a $rc -eq 0 ]

out=$("$SBX" run -l raw 'echo "sum=$((40 + 2))"; echo "$BASH_VERSION" | cut -d. -f1' 2>"$TMP/e"); rc=$?
check "raw runs under GNU bash" [ "$(head -n1 <<<"$out")" = "sum=42" -a "$(tail -n1 <<<"$out")" = "5" ]

out=$("$SBX" run -l raw 'id -u; id -g; cat /proc/self/status | grep CapEff' 2>/dev/null)
check "guest code runs as uid 1000, not root" [ "$(sed -n 1p <<<"$out")" = "1000" ]
check "guest code has no effective capabilities" grep -q "CapEff:.*0000000000000000" <<<"$out"

echo 'print("from stdin")' >"$TMP/stdin.py"
out=$("$SBX" run - <"$TMP/stdin.py" 2>/dev/null)
check "code from stdin" [ "$out" = "from stdin" ]

out=$("$SBX" run -e GREETING=hi -e NAME=sbx 'import os; print(os.environ["GREETING"], os.environ["NAME"])' 2>/dev/null)
check "environment variables reach the code" [ "$out" = "hi sbx" ]

run_json 'import sys; print("out"); print("err", file=sys.stderr)'
check "--json carries stdout, stderr and exit_code" \
    [ "$(jget .stdout)" = "out" -a "$(jget .stderr)" = "err" -a "$(jget .exit_code)" = "0" ]
check "the result reports the accelerator" [ "$(jget .accel)" = "tcg" -o "$(jget .accel)" = "kvm" ]
check "the result carries timings" [ "$(jget .timing_boot_ms)" -gt 0 -a "$(jget .timing_total_ms)" -ge "$(jget .timing_boot_ms)" ]
diag "boot $(jget .timing_boot_ms) ms, exec $(jget .execution_time_ms) ms, total $(jget .timing_total_ms) ms, accel $(jget .accel)"

# Whether the VM had its memory and pids limits, as this host gives them to a worker of the
# embedded mode (the broker's uid): none without cgroup_parent or root; v2 where /sys/fs/cgroup is
# cgroup2 and our cgroup offers memory and pids; v1 where those v1 hierarchies are mounted.
expected_cgroup_mode() {
    local parent own
    parent=$(sed -n 's/^[[:space:]]*cgroup_parent[[:space:]]*=[[:space:]]*//p' "$BUILD/sbx.conf" | tail -n1)
    grep -q '^[[:space:]]*cgroup_parent[[:space:]]*=' "$BUILD/sbx.conf" || parent=sbx
    if [[ -z "$parent" || $(id -u) -ne 0 ]]; then
        echo none
    elif [[ $(stat -fc %T /sys/fs/cgroup) == cgroup2fs ]]; then
        own=$(sed -n 's/^0:://p' /proc/self/cgroup)
        if grep -qw memory "/sys/fs/cgroup$own/cgroup.controllers" && grep -qw pids "/sys/fs/cgroup$own/cgroup.controllers"; then
            echo v2
        else
            echo none
        fi
    elif [[ $(stat -fc %T /sys/fs/cgroup/memory 2>/dev/null) == cgroupfs && $(stat -fc %T /sys/fs/cgroup/pids 2>/dev/null) == cgroupfs ]]; then
        echo v1
    else
        echo none
    fi
}
want_cgroups=$(expected_cgroup_mode)
mode=$(jget .cgroup_mode)
check "the result says whether the VM had cgroup limits (cgroup_mode $mode: v2, v1 or none)" \
    [ "$mode" = v2 -o "$mode" = v1 -o "$mode" = none ]
check "  as this host gives them ($want_cgroups)" [ "$mode" = "$want_cgroups" ]
check "  and GetStatus reports the same" [ "$("$SBXCTL" status --json | jq -r .cgroup_mode)" = "$mode" ]

# QEMU itself, seen from the host while a run is going: not root, no capabilities, and in mount,
# IPC, network and PID namespaces of its own (this VM has no NIC).
"$SBX" run 'import time; time.sleep(5)' >/dev/null 2>&1 &
runner=$!
q=""
for _ in $(seq 100); do q=$(qemu_pids | head -n1); [[ -n "$q" ]] && break; sleep 0.1; done
if [[ -n "$q" ]]; then
    check "QEMU runs as a non-root uid" [ "$(awk '/^Uid:/ {print $3}' /proc/$q/status)" != 0 ]
    check "QEMU has no effective or permitted capabilities" \
        [ "$(awk '/^CapEff:/ {print $2}' /proc/$q/status)$(awk '/^CapPrm:/ {print $2}' /proc/$q/status)" = 00000000000000000000000000000000 ]
    for ns in mnt ipc net pid; do
        check "QEMU has its own $ns namespace" [ "$(readlink /proc/$q/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ]
    done
else
    not_ok "found the QEMU of a running VM"
fi
wait $runner

st=$("$SBXCTL" status)
check "sbxctl status shows the broker and the accelerator" grep -q "accelerator: \(tcg\|kvm\)" <<<"$st"
check "sbxctl status says whether VMs get cgroup limits ($mode)" grep -q "^cgroups:     $mode" <<<"$st"
diag "$st"

check_no_leaks "basic runs"
finish
