#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Networked VMs (issue 5) with real VMs: the worker registers each VM's cgroup2
# directory with sbx-netd, QEMU's user-mode network (slirp) carries the guest's
# traffic, and the guest configures eth0 itself. Test hosts live in network
# namespaces made here (TEST-NET addresses on veth pairs), with a test DNS
# server and HTTP/HTTPS servers using a test CA (tests/integration/netd/, as in
# test-netd.sh). sbx-netd runs as uid 65534 with CAP_BPF and CAP_NET_ADMIN, its
# control socket under $TMP, and the workers find it through `netd_socket` in a
# copy of BUILDDIR/sbx.conf. The VMs are driven through the worker directly
# (tests/tools/sbx-worker-client, the broker's protocol) so that this file does
# not depend on the broker's request keys. Needs root. TAP output.
#
#   test-network.sh BUILDDIR
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
NETD="$BUILD/sbx-netd/sbx-netd"
WC="$BUILD/sbx-vmworker/sbx-worker-client"
CGROOT=/sys/fs/cgroup/unified

skip_all() { echo "1..0 # SKIP $*"; exit 0; }
[[ $(id -u) -eq 0 ]] || skip_all "needs root"
[[ -x $NETD ]] || skip_all "sbx-netd not built"
[[ -x $WC ]] || skip_all "sbx-worker-client not built"
[[ -r $KERNEL && -r $BUILD/images/rootfs.erofs ]] || skip_all "no guest images in $BUILD/images"
for t in ip bpftool openssl python3 setpriv curl; do
    command -v "$t" >/dev/null || skip_all "$t missing"
done
[[ -f $CGROOT/cgroup.procs ]] || CGROOT=/sys/fs/cgroup
[[ -f $CGROOT/cgroup.procs && $(stat -f -c %T "$CGROOT") == cgroup2fs ]] || skip_all "no cgroup2 tree"

chmod 755 "$TMP"
ID=$$
NSA="sbxvn-a-$ID"   # web host A + DNS server: 203.0.113.10, 203.0.113.53
NSB="sbxvn-b-$ID"   # web host B: 198.51.100.20/.21, 169.254.169.254
VA="sbxva$ID"; VB="sbxvb$ID"
mkdir "$TMP/run" && chown 65534:65534 "$TMP/run"
CTLSOCK="$TMP/run/netd.sock"
PIDS=()
netd_pid=""

net_cleanup() {
    [[ -n $netd_pid ]] && kill "$netd_pid" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}" $netd_pid; do kill -9 "$p" 2>/dev/null; done
    teardown_hosts
    if [[ -n ${KEEP_TMP:-} ]]; then cp -a "$TMP" "$TMP.kept"; echo "# kept $TMP.kept"; fi
    cleanup
}
trap net_cleanup EXIT

# --- test hosts (shared with test-netd.sh) ----------------------------------
source "$HERE/netd/hosts.sh"

netd_log_has() {
    for _ in $(seq 20); do grep -q -- "$1" "$TMP/netd.log" && return 0; sleep 0.1; done
    diag "netd log lacks: $1"
    return 1
}

# The workers' configuration: the build's, plus netd's socket. TCG, as the rest of the suite measures.
cp "$BUILD/sbx.conf" "$TMP/sbx.conf"
echo "netd_socket = $CTLSOCK" >>"$TMP/sbx.conf"
export SBX_CONFIG="$TMP/sbx.conf"

# vm NAME [worker-client options] -- CODE: one run; stdout in $TMP/NAME.out, the client's stderr
# (status/result/error lines) in $TMP/NAME.err, exit status in $RC.
vm() {
    local name=$1; shift
    "$WC" --timeout 200 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
    RC=$?
}
# line NAME KEY: the value a guest check printed as "KEY=VALUE".
line() { sed -n "s/^$2=//p" "$TMP/$1.out" | head -n1; }
# starts NAME KEY PREFIX: the guest check KEY's line starts with PREFIX.
starts() { [[ $(line "$1" "$2") == "$3"* ]]; }
port_of() { sed -n "s/.*port_mapping='tcp $2 127.0.0.1:\([0-9]*\)'.*/\1/p" "$TMP/$1.err" | head -n1; }

echo "# setting up test hosts"
setup_hosts || { echo "Bail out! cannot set up the test hosts"; exit 1; }
LOPORT=$(cat "$TMP/lo-port")

# --- no netd: networked requests fail closed --------------------------------
vm nonetd --lang raw --network --allow-domain allowed.test -- 'echo ran'
check "without sbx-netd a networked run is refused (kind 5, SBX_ERR_NETWORK)" \
    grep -q "^error kind=5 message=sbx-netd is not running" "$TMP/nonetd.err"
check "  and the code never ran" bash -c '! grep -q ran "$1"' _ "$TMP/nonetd.out"
vm noexpose --lang raw --expose 8000 -- 'echo ran'
check "without sbx-netd a port-exposing run is refused too" grep -q "^error kind=5" "$TMP/noexpose.err"

check "sbx-netd starts" start_netd

# --- a VM without network has no NIC ------------------------------------------
vm off --lang raw -- 'ls /sys/class/net; cat /etc/resolv.conf'
check "network off: the VM has no eth0" bash -c '[[ $1 -eq 0 ]] && ! grep -q eth0 "$2"' _ "$RC" "$TMP/off.out"
diag "$(cat "$TMP/off.out")"

# --- allowed domains, and everything that must fail ---------------------------
# The guest checks print KEY=ok|fail lines. The test CA goes in with the code (never into the image).
cat >"$TMP/guest-checks.sh" <<EOF
cat >/tmp/ca.pem <<'CA'
$(cat "$TMP/ca.pem")
CA
cat >/tmp/probe.py <<'PY'
$(cat "$HERE/netd/probe.py")
PY
c() { local k=\$1; shift; if "\$@" >/tmp/c.out 2>&1; then echo "\$k=ok \$(head -c 200 /tmp/c.out | tr '\n' ' ')"; else echo "\$k=fail \$(head -c 200 /tmp/c.out | tr '\n' ' ')"; fi; }
p() { python3 /tmp/probe.py "\$@"; }
cu() { curl -sS --max-time 8 --cacert /tmp/ca.pem "\$@"; }
echo "ADDR=\$(cat /sys/class/net/eth0/address) \$(cat /etc/resolv.conf)"
c http cu http://allowed.test/
c https cu https://allowed.test/
c https_www cu https://www.allowed.test/
c direct_ip p tcp 198.51.100.21 80
c direct_ip_curl cu http://198.51.100.21/
c other_name p resolve other.test
c b_http cu http://b.allowed.test/
c sni_spoof cu --resolve allowed.test:443:198.51.100.20 https://allowed.test/
c host_spoof cu --resolve allowed.test:80:198.51.100.20 http://allowed.test/
c ipv6 p tcp 2001:db8:5b::20 8080
c ipv4_mapped p tcp ::ffff:198.51.100.21 80
p udp 198.51.100.20 443 >/dev/null 2>&1; p udp 198.51.100.20 9999 >/dev/null 2>&1; echo udp_sent=done
tunnel=ok
for i in \$(seq 20); do
    label=\$(head -c 60 /dev/urandom | base32 | tr -dc 'a-z2-7' | head -c 60)
    python3 /tmp/probe.py resolve "\$label.x\$i.tunnel.test" >/dev/null 2>&1 && tunnel=resolved
done
echo tunnel=\$tunnel
c gateway p tcp 10.0.2.2 $LOPORT
c metadata p tcp 169.254.169.254 80
EOF
udp_before=$(grep -c "^udp" "$TMP/web-b.log")
vm domains --lang raw --network --allow-domain allowed.test --allow-domain '*.allowed.test' - <"$TMP/guest-checks.sh"
diag "$(cat "$TMP/domains.out")"
check "networked run with allowed domains finishes (exit 0)" grep -q "^result exit_code=0" "$TMP/domains.err"
[[ $RC -eq 0 ]] || diag "$(cat "$TMP/domains.err")"
check "the guest configured eth0 and resolv.conf (nameserver 10.0.2.3)" grep -q "^ADDR=.*nameserver 10.0.2.3" "$TMP/domains.out"
check "allowed domain over HTTP works from the guest" starts domains http "ok host-a allowed.test"
check "allowed domain over HTTPS works from the guest (test CA passed with the code)" \
    starts domains https "ok host-a allowed.test"
check "a *.allowed.test name over HTTPS works" starts domains https_www "ok host-a www.allowed.test"
check "direct IP connect fails" starts domains direct_ip fail
check "  and netd logs it" netd_log_has "connect4 198.51.100.21 port 80 proto 6: address not resolved"
check "direct IP with curl fails" starts domains direct_ip_curl fail
check "a name that is not allowed does not resolve" starts domains other_name "fail gaierror"
check "  netd answered NXDOMAIN and logs it" netd_log_has "dns other.test type 1: name not allowed (NXDOMAIN)"
check "  and the name never reached the upstream DNS server" bash -c '! grep -q "^other.test" "$1"' _ "$TMP/dns-queries.log"
check "a second allowed name (host B) works, so B's address is one DNS gave this VM" \
    starts domains b_http "ok host-b b.allowed.test"
check "SNI of an allowed name sent to another host's IP fails" starts domains sni_spoof fail
check "  and netd logs it" netd_log_has "proxy 198.51.100.20:443 name allowed.test: DNS did not give this address for it"
check "Host of an allowed name sent to another host's IP fails" starts domains host_spoof fail
check "  and netd logs it" netd_log_has "proxy 198.51.100.20:80 name allowed.test: DNS did not give this address for it"
check "IPv6 fails (the guest has no IPv6, slirp runs with ipv6=off)" starts domains ipv6 fail
check "IPv4-mapped IPv6 fails" starts domains ipv4_mapped fail
check "  and netd logs it (slirp's connect to the address)" netd_log_has "connect4 198.51.100.21 port 80"
sleep 0.3
check "UDP/443 (QUIC) and other UDP from the guest never reach host B" \
    bash -c '[[ $(grep -c "^udp" "$1") -eq $2 ]]' _ "$TMP/web-b.log" "$udp_before"
check "  and netd logs it" netd_log_has "sendmsg4 198.51.100.20 port 443 proto 17: UDP other than DNS"
check "20 long random subdomains of a name that is not allowed do not resolve" \
    starts domains tunnel ok
check "  none reached the upstream DNS server" bash -c '! grep -q "tunnel.test" "$1"' _ "$TMP/dns-queries.log"
check "  and netd logs them" netd_log_has "tunnel.test type 1: name not allowed"
check "10.0.2.2 (the host's loopback through slirp) fails" starts domains gateway fail
check "  and netd logs it" netd_log_has "connect4 127.0.0.1 port $LOPORT proto 6: blocked address range"
check "169.254.169.254 fails" starts domains metadata fail
check "  and netd logs it" netd_log_has "connect4 169.254.169.254 port 80 proto 6: blocked address range"
check "netd registered the VM's cgroup2 directory and unregistered it after the run" \
    bash -c 'grep -q "registered vm=vm-1-.* cgroup=$2/.*2 domain(s)" "$1" && grep -q "unregistered vm=vm-1-" "$1"' \
    _ "$TMP/netd.log" "$CGROOT"
check_no_leaks "the networked run"

# --- full outbound access (network on, no domains) -------------------------------
vm full --lang raw --network -- "curl -sS --max-time 8 http://198.51.100.20/; python3 -c 'import socket; socket.create_connection((\"10.0.2.2\", $LOPORT), timeout=5)' 2>&1 | tail -n1"
check "full access: a direct IP connect works" grep -q "host-b 198.51.100.20" "$TMP/full.out"
check "full access: 10.0.2.2 (host loopback) stays refused" grep -q "Error" "$TMP/full.out"
diag "$(cat "$TMP/full.out")"

# --- expose_ports with the network off: a session with a guest HTTP server ---------
cat >"$TMP/expose.script" <<'EOF'
exec cd /tmp && echo guest-page >index.html && (python3 -m http.server 8000 >/tmp/http.log 2>&1 &) && sleep 1 && echo server-started
exec curl -sS --max-time 5 http://203.0.113.10/ >/dev/null 2>&1 && echo OUT=open || echo OUT=closed; python3 -c 'import socket; socket.create_connection(("203.0.113.10", 80), timeout=5)' >/dev/null 2>&1 && echo OUT2=open || echo OUT2=closed
sleep 12
exec cat /tmp/http.log
close
EOF
"$WC" --session --lang raw --timeout 30 --expose 8000 "$TMP/expose.script" >"$TMP/expose.out" 2>"$TMP/expose.err" &
wc_pid=$!
for _ in $(seq 200); do grep -q OUT2= "$TMP/expose.out" 2>/dev/null && break; sleep 0.2; done
EXT=$(port_of expose 8000)
diag "$(grep session_ready "$TMP/expose.err")"
check "the session's SESSION_READY carries the mapping (tcp 8000 127.0.0.1:EXT, EXT picked)" test -n "$EXT"
# The server may still be starting under emulation: give it a few seconds.
for _ in $(seq 25); do
    page=$(curl -sS --max-time 5 "http://127.0.0.1:$EXT/index.html" 2>&1)
    [[ $page == guest-page ]] && break
    sleep 0.2
done
check "the host reaches the guest's python3 -m http.server through the exposed port" test "$page" = guest-page
diag "$page"
check "network off: the guest cannot connect out by name" grep -q "OUT=closed" "$TMP/expose.out"
check "network off: the guest cannot connect out by address" grep -q "OUT2=closed" "$TMP/expose.out"
wait "$wc_pid"
check "the session ran to its end" test $? -eq 0
check "  and the guest's server logged the host's request" grep -q "GET /index.html" "$TMP/expose.out"
check "the port is closed after the session" bash -c '! curl -s --max-time 2 "http://127.0.0.1:$1/" >/dev/null' _ "$EXT"

# A run with an explicit external port: the mapping comes back in W_SESSION_READY (the running status) and with the result.
FIXED=$((30000 + ID % 20000))
vm fixed --lang raw --expose "8080:$FIXED" -- 'echo x'
check "a run with --expose 8080:$FIXED reports the mapping in the running status" \
    grep -q "^status phase=running.*port_mapping='tcp 8080 127.0.0.1:$FIXED'" "$TMP/fixed.err"
check "  and in the result" grep -q "^result .*port_mapping='tcp 8080 127.0.0.1:$FIXED'" "$TMP/fixed.err"

# The worker refuses L1 snapshots for such VMs (the broker never asks).
cat >"$TMP/snap.script" <<'EOF'
exec echo x
close
EOF
"$WC" --session --lang raw --snapshot --network "$TMP/snap.script" >"$TMP/snap.out" 2>"$TMP/snap.err"
check "a networked session with SNAPSHOT is refused (kind 4)" grep -q "^error kind=4 .*never restored" "$TMP/snap.err"
check_no_leaks "the exposed-port VMs"

# --- through the broker (D-Bus Run with allow_network / allowed_domains / expose_ports) ----------------
# The workers the broker spawns read the same SBX_CONFIG (netd_socket). Skipped while the broker does not
# know the keys yet.
start_bus
DBUS_STARTER_ADDRESS=$SBX_BUS_ADDRESS "$BUILD/sbx-broker/sbx-broker" --config "$TMP/sbx.conf" 2>"$TMP/broker.log" &
for _ in $(seq 50); do $BUSCTL status org.sbx.Broker1 >/dev/null 2>&1 && break; sleep 0.1; done
busctl_run 'a{sv}' 5 language s raw code s 'curl -sS --max-time 8 http://allowed.test/; curl -sS --max-time 5 http://other.test/ || echo other-refused' \
    allow_network b true allowed_domains as 1 allowed.test expose_ports as 1 8000
diag "$(head -c 600 "$TMP/bus.json")"
check "broker: Run with allow_network + allowed_domains reaches allowed.test" grep -q "host-a allowed.test" "$TMP/bus.json"
check "broker: a name that is not allowed fails" grep -q "other-refused" "$TMP/bus.json"
check "broker: the result carries exposed_ports (tcp 8000 → 127.0.0.1:EXT)" \
    bash -c 'jq -e ".data[0].exposed_ports.data[0][0] == \"tcp\" and .data[0].exposed_ports.data[0][1] == 8000" "$1" >/dev/null' _ "$TMP/bus.json"

# The CLI: --allow-domain, --network (with its warning), --expose (URL printed before the run).
"$SBX" run -l raw --allow-domain allowed.test 'curl -sS --max-time 8 http://allowed.test/' >"$TMP/cli.out" 2>"$TMP/cli.err"
check "sbx run --allow-domain reaches allowed.test" grep -q "host-a allowed.test" "$TMP/cli.out"
[[ -s "$TMP/cli.out" ]] || diag "$(cat "$TMP/cli.err")"
"$SBX" run -l raw --network 'true' >/dev/null 2>"$TMP/cli2.err"
check "sbx run --network without --allow-domain warns about full access" grep -q "full outbound access" "$TMP/cli2.err"
"$SBX" run -l raw -t 60 --expose 8000 \
    'cd /tmp && echo hello-from-guest >index.html && timeout 40 python3 -m http.server 8000 >/dev/null 2>&1' \
    >/dev/null 2>"$TMP/cli3.err" &
cli=$!
url=""
for _ in $(seq 100); do
    url=$(sed -n 's|.*guest port 8000/tcp is at \(http://[0-9.:]*\).*|\1|p' "$TMP/cli3.err")
    [[ -n $url ]] && break
    sleep 0.1
done
got=""
for _ in $(seq 100); do
    got=$(curl -s --max-time 2 "$url/index.html" 2>/dev/null)
    [[ "$got" == hello-from-guest ]] && break
    sleep 0.3
done
check "sbx run --expose: the host reaches the guest's server at the printed URL ($url)" [ "$got" = hello-from-guest ]
kill "$cli" 2>/dev/null
wait "$cli" 2>/dev/null
stop_bus

# --- netd killed mid-run: fail closed -----------------------------------------------
PROG_IDS=$(bpftool prog show 2>/dev/null | sed -n 's/^\([0-9]*\): .*name netd_.*/\1/p' | tr '\n' ' ')
"$WC" --lang raw --timeout 60 --network --allow-domain allowed.test -- \
    'curl -sS --max-time 5 http://allowed.test/; echo started; sleep 40; echo survived' \
    >"$TMP/kill.out" 2>"$TMP/kill.err" &
wc_pid=$!
for _ in $(seq 300); do grep -q started "$TMP/kill.out" 2>/dev/null && break; sleep 0.2; done
check "a networked run is running (it reached allowed.test)" grep -q "host-a allowed.test" "$TMP/kill.out"
qemu=$(sed -n 's/^status phase=running qemu_pid=\([0-9]*\).*/\1/p' "$TMP/kill.err")
kill -9 "$netd_pid"; wait "$netd_pid" 2>/dev/null; netd_pid=""
t0=$SECONDS
wait "$wc_pid"
check "netd killed mid-run: the run fails with kind 5 and a clear message" \
    grep -q "^error kind=5 message=sbx-netd stopped during the run" "$TMP/kill.err"
diag "$(grep ^error "$TMP/kill.err") after $((SECONDS - t0)) s"
check "  the code did not go on" bash -c '! grep -q survived "$1"' _ "$TMP/kill.out"
check "  and its QEMU is gone" bash -c '! kill -0 "$1" 2>/dev/null' _ "${qemu:-0}"
vm after --lang raw --network -- 'echo ran'
check "with netd dead a new networked run is refused (fail closed)" grep -q "^error kind=5 message=sbx-netd is not running" "$TMP/after.err"

# --- nothing left behind ---------------------------------------------------------------
check_no_leaks "netd was killed"
# Programs and maps are freed after an RCU grace period, from a work queue: wait a little.
for _ in $(seq 50); do
    [[ -z $(bpftool prog show 2>/dev/null | grep "name netd_") ]] && break
    sleep 0.1
done
left=""
for p in $PROG_IDS; do bpftool prog show id "$p" >/dev/null 2>&1 && left+=" prog $p"; done
check "no netd BPF programs left (bpftool prog show)" \
    bash -c '[[ -z $(bpftool prog show 2>/dev/null | grep "name netd_") ]]'
check "no netd BPF maps left (bpftool map show)" \
    bash -c '[[ -z $(bpftool map show 2>/dev/null | grep -E "name (vms|allow4|sock_orig|proxy_orig|exposed|admin_allow4|events)\b") ]]'
check "no cgroup BPF links left (bpftool link show)" \
    bash -c '[[ -z $(bpftool link show 2>/dev/null | grep -B1 -A2 "type cgroup" | grep -i netd) ]]'
vmcg=$(find "$CGROOT" -maxdepth 4 -type d -name 'vm-*' 2>/dev/null | while read -r d; do kill -0 "${d##*-}" 2>/dev/null || echo "$d"; done)
check "no VM cgroup2 directories left under $CGROOT" test -z "$vmcg"
[[ -z $vmcg ]] || diag "$vmcg"
finish
