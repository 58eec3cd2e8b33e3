#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# sbx-netd without VMs (issue 5): a test cgroup under the cgroup2 tree takes
# the place of a VM's cgroup, test hosts live in network namespaces made here
# (TEST-NET addresses on veth pairs), with a test DNS server and HTTP/HTTPS
# servers using a test CA. Probes (curl, python3) run inside the cgroup with
# a private /etc/resolv.conf. Needs root. TAP output.
#
#   test-netd.sh BUILDDIR
set -uo pipefail

BUILD=${1:?usage: test-netd.sh BUILDDIR}
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
NETD="$BUILD/sbx-netd/sbx-netd"
CTL="$BUILD/sbx-netd/sbx-netd-ctl"
PROBE="$HERE/netd/probe.py"
CGROOT=/sys/fs/cgroup/unified
T_NUM=0
T_FAILED=0

ok() { T_NUM=$((T_NUM + 1)); echo "ok $T_NUM - $*"; }
not_ok() { T_NUM=$((T_NUM + 1)); T_FAILED=$((T_FAILED + 1)); echo "not ok $T_NUM - $*"; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
diag() { sed 's/^/# /' <<<"$*"; }

skip_all() { echo "1..0 # SKIP $*"; exit 0; }
[[ $(id -u) -eq 0 ]] || skip_all "needs root"
[[ -x $NETD && -x $CTL ]] || skip_all "sbx-netd not built"
for t in ip bpftool curl openssl python3 unshare; do
    command -v "$t" >/dev/null || skip_all "$t missing"
done
[[ -f $CGROOT/cgroup.procs ]] || skip_all "no cgroup2 tree at $CGROOT"

TMP=$(mktemp -d /tmp/sbx-netd-test.XXXXXX)
chmod 755 "$TMP" # the unprivileged-caller check must reach the socket
ID=$$
NSA="sbxnetd-a-$ID"   # web host A + DNS server: 203.0.113.10, 203.0.113.53
NSB="sbxnetd-b-$ID"   # web host B: 198.51.100.20, 2001:db8:5b::20, 169.254.169.254
VA="sbxa$ID"; VB="sbxb$ID"
CG="$CGROOT/sbx-netd-test-$ID"
CG2="$CGROOT/sbx-netd-test-full-$ID"
CG3="$CGROOT/sbx-netd-test-expose-$ID"
mkdir "$TMP/run" && chown 65534:65534 "$TMP/run"
CTLSOCK="$TMP/run/netd.sock"
PIDS=()
netd_pid=""

cleanup() {
    exec 7>&- 8>&- 2>/dev/null
    [[ -n $netd_pid ]] && kill "$netd_pid" 2>/dev/null
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}" $netd_pid; do kill -9 "$p" 2>/dev/null; done
    for cg in "$CG" "$CG2" "$CG3"; do
        if [[ -d $cg ]]; then
            for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
            sleep 0.1
            rmdir "$cg" 2>/dev/null
        fi
    done
    teardown_hosts
    if [[ -n ${KEEP_TMP:-} ]]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# --- test hosts (shared with test-network.sh), plus IPv6 on host B ---------------
source "$HERE/netd/hosts.sh"

# host B also gets 2001:db8:5b::20 with a listener on port 8080, where the kernel allows it.
setup_hosts_v6() {
    HAVE_V6=0
    if ip -6 addr add 2001:db8:5b::1/64 dev "$VB" nodad 2>/dev/null &&
       ip -n "$NSB" -6 addr add 2001:db8:5b::20/64 dev eth0 nodad 2>/dev/null; then
        HAVE_V6=1
        ip netns exec "$NSB" python3 -c '
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("2001:db8:5b::20", 8080)); s.listen(); print("ready", flush=True)
while True: s.accept()[0].close()' >"$TMP/v6.log" 2>&1 &
        PIDS+=($!)
        for _ in $(seq 50); do grep -q ready "$TMP/v6.log" 2>/dev/null && return 0; sleep 0.1; done
        return 1
    fi
}

# run CGROUP CMD...: CMD in CGROUP (or none for "-") with a resolv.conf that points at a
# nameserver that does not exist: DNS only works through sbx-netd's redirection.
echo "nameserver 192.0.2.53" >"$TMP/resolv.conf"
echo "nameserver 203.0.113.53" >"$TMP/resolv-direct.conf"
run() {
    local cg=$1; shift
    local resolv="$TMP/resolv.conf"
    [[ $cg == - ]] && resolv="$TMP/resolv-direct.conf"
    unshare -m -- bash -c '
        mount --bind "$1" /etc/resolv.conf || exit 99
        [[ $2 == - ]] || echo $$ >"$2/cgroup.procs" || exit 98
        shift 2; exec "$@"' _ "$resolv" "$cg" "$@"
}
curl_() { local cg=$1; shift; run "$cg" curl -sS --max-time 5 --cacert "$TMP/ca.pem" "$@" 2>&1; }
probe() { local cg=$1; shift; run "$cg" python3 "$PROBE" "$@" 2>&1; }
probe_ok() { probe "$@" >/dev/null; }

netd_log_has() {
    for _ in $(seq 20); do grep -q -- "$1" "$TMP/netd.log" && return 0; sleep 0.1; done
    diag "netd log lacks: $1"
    return 1
}

echo "# setting up test hosts"
setup_hosts && setup_hosts_v6 || { echo "Bail out! cannot set up the test hosts"; exit 1; }
LOPORT=$(cat "$TMP/lo-port")

# --- baseline: without sbx-netd every path below is open ---------------------
out=$(curl_ - http://allowed.test/)
check "baseline: http://allowed.test reaches host A without netd" grep -q host-a <<<"$out"
diag "$out"
out=$(curl_ - http://198.51.100.21/)
check "baseline: a direct IP connect works without netd" grep -q host-b <<<"$out"
check "baseline: 169.254.169.254 reachable without netd" probe_ok - tcp 169.254.169.254 80
check "baseline: host loopback reachable without netd" probe_ok - tcp 127.0.0.1 "$LOPORT"
check "baseline: IPv4-mapped IPv6 reaches host B without netd" probe_ok - tcp ::ffff:198.51.100.20 80
probe - udp 198.51.100.20 443 >/dev/null
sleep 0.3
check "baseline: UDP/443 (QUIC) arrives without netd" grep -q "udp 443" "$TMP/web-b.log"
if [[ $HAVE_V6 == 1 ]]; then
    check "baseline: IPv6 reaches host B without netd" probe_ok - tcp 2001:db8:5b::20 8080
fi

# --- netd + a registered cgroup -------------------------------------------------
mkdir "$CG" "$CG2" "$CG3" || { echo "Bail out! cannot create $CG"; exit 1; }
check "sbx-netd starts" start_netd
caps=$(awk '/^CapEff/ {print $2}' /proc/$netd_pid/status)
uid=$(awk '/^Uid/ {print $2}' /proc/$netd_pid/status)
diag "netd uid $uid CapEff $caps"
check "netd runs as an unprivileged uid with only CAP_BPF and CAP_NET_ADMIN" \
    test "$uid" = 65534 -a "$caps" = 0000008000001000

out=$("$CTL" --socket "$CTLSOCK" register "$CG" 'allowed.test' '*.allowed.test' 'Bad Name' 2>&1)
check "a registration with an invalid pattern is refused" grep -q "invalid allowed domain" <<<"$out"
out=$("$CTL" --socket "$CTLSOCK" register "$CGROOT" --full 2>&1)
check "registering the cgroup root is refused" grep -q "below" <<<"$out"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" --socket "$CTLSOCK" register "$CG" --full 2>&1)
check "a registration from an unprivileged uid is refused (SO_PEERCRED)" grep -q "not allowed" <<<"$out"

mkfifo "$TMP/ctl.in" "$TMP/ctl2.in" "$TMP/ctl3.in"
"$CTL" --socket "$CTLSOCK" register "$CG" allowed.test '*.allowed.test' <"$TMP/ctl.in" >"$TMP/ctl.out" 2>&1 &
ctl_pid=$!
PIDS+=($ctl_pid)
exec 7>"$TMP/ctl.in"
for _ in $(seq 50); do grep -q registered "$TMP/ctl.out" && break; sleep 0.1; done
check "the test cgroup is registered (allowed.test, *.allowed.test)" grep -q "registered .* links=7" "$TMP/ctl.out"
cgshow=$(bpftool cgroup show "$CG" 2>&1)
diag "$cgshow"
check "bpftool shows the 7 programs on the cgroup" \
    bash -c '[[ $(grep -c netd_ <<<"$1") -eq 7 ]]' _ "$cgshow"
PROG_IDS=$(awk '/netd_/ {print $1}' <<<"$cgshow" | tr '\n' ' ')
MAP_IDS=$(for p in $PROG_IDS; do bpftool prog show id "$p" 2>/dev/null | sed -n 's/.*map_ids \([0-9,]*\).*/\1/p' | tr ',' '\n'; done | sort -u | tr '\n' ' ')
diag "programs: $PROG_IDS maps: $MAP_IDS"

# allowed
out=$(curl_ "$CG" http://allowed.test/)
check "allowed domain over HTTP works" grep -q "host-a allowed.test" <<<"$out"
diag "$out"
out=$(curl_ "$CG" https://allowed.test/)
check "allowed domain over HTTPS works" grep -q "host-a allowed.test" <<<"$out"
diag "$out"
out=$(curl_ "$CG" https://www.allowed.test/)
check "a *.allowed.test name over HTTPS works" grep -q "host-a www.allowed.test" <<<"$out"

# direct IP
out=$(probe "$CG" tcp 198.51.100.21 80)
check "direct IP connect (never resolved) is refused" grep -q EPERM <<<"$out"
check "... and netd logs it" netd_log_has "connect4 198.51.100.21 port 80 proto 6: address not resolved"
out=$(curl_ "$CG" http://198.51.100.21/)
check "direct IP connect with curl fails" bash -c '! grep -q host- <<<"$1"' _ "$out"
out=$(curl_ "$CG" http://203.0.113.10/)
check "direct IP URL to an allowed host's address (Host is an IP) is refused" bash -c '! grep -q host-a <<<"$1"' _ "$out"
check "... and netd logs it" netd_log_has "refused: vm=sbx-netd-test-$ID proxy 203.0.113.10:80"

out=$(curl_ "$CG" http://b.allowed.test/)
check "a second allowed host (B) over HTTP works" grep -q "host-b b.allowed.test" <<<"$out"

# names that are not allowed
out=$(probe "$CG" resolve other.test)
check "a name that is not allowed does not resolve" grep -q gaierror <<<"$out"
diag "$out"
check "... netd answered NXDOMAIN and logs it" netd_log_has "dns other.test type 1: name not allowed (NXDOMAIN)"
check "... the name never reached the upstream DNS server" bash -c '! grep -q "^other.test" "$1"' _ "$TMP/dns-queries.log"
out=$(curl_ "$CG" http://other.test/)
check "curl to a name that is not allowed fails" bash -c '! grep -q host- <<<"$1"' _ "$out"

# SNI / Host spoofing toward another host's IP (B's address is resolved for b.allowed.test)
out=$(curl_ "$CG" --resolve allowed.test:443:198.51.100.20 https://allowed.test/)
check "SNI of an allowed name sent to another host's IP is refused" bash -c '! grep -q host- <<<"$1"' _ "$out"
diag "$out"
check "... and netd logs it" netd_log_has "proxy 198.51.100.20:443 name allowed.test: DNS did not give this address for it"
out=$(curl_ "$CG" --resolve allowed.test:80:198.51.100.20 http://allowed.test/)
check "Host of an allowed name sent to another host's IP is refused" bash -c '! grep -q host- <<<"$1"' _ "$out"
check "... and netd logs it" netd_log_has "proxy 198.51.100.20:80 name allowed.test: DNS did not give this address for it"
out=$(curl_ "$CG" --resolve evil.test:443:203.0.113.10 https://evil.test/)
check "SNI of a name that is not allowed, to an allowed IP, is refused" bash -c '! grep -q host- <<<"$1"' _ "$out"
check "... and netd logs it" netd_log_has "proxy 203.0.113.10:443 name evil.test not allowed"

# IPv6
out=$(probe "$CG" tcp ::ffff:198.51.100.20 80)
check "IPv4-mapped IPv6 to host B is refused" grep -q EPERM <<<"$out"
out=$(probe "$CG" tcp ::ffff:203.0.113.10 80)
check "IPv4-mapped IPv6 even to an allowed address is refused" grep -q EPERM <<<"$out"
check "... and netd logs it" netd_log_has "connect6 ::ffff:203.0.113.10 port 80 proto 6: IPv6"
if [[ $HAVE_V6 == 1 ]]; then
    out=$(probe "$CG" tcp 2001:db8:5b::20 8080)
    check "IPv6 is refused" grep -q EPERM <<<"$out"
    check "... and netd logs it" netd_log_has "connect6 2001:db8:5b::20 port 8080"
fi

# UDP and QUIC
: >"$TMP/web-b.log.mark"
before=$(grep -c "^udp" "$TMP/web-b.log")
out=$(probe "$CG" udp 198.51.100.20 443)
check "UDP/443 (QUIC) is refused" grep -q EPERM <<<"$out"
out=$(probe "$CG" udp 198.51.100.20 9999)
check "other UDP is refused" grep -q EPERM <<<"$out"
sleep 0.3
check "... no datagram reached host B" bash -c '[[ $(grep -c "^udp" "$1") -eq $2 ]]' _ "$TMP/web-b.log" "$before"
check "... and netd logs it" netd_log_has "sendmsg4 198.51.100.20 port 443 proto 17: UDP other than DNS"

# DNS tunnelling
tunnel_ok=1
for i in $(seq 20); do
    label=$(head -c 60 /dev/urandom | base32 | tr -dc 'a-z2-7' | head -c 60)
    out=$(probe "$CG" resolve "$label.x$i.tunnel.test")
    grep -q gaierror <<<"$out" || tunnel_ok=0
done
check "20 long random subdomains of a name that is not allowed get NXDOMAIN" test "$tunnel_ok" = 1
check "... none of them reached the upstream DNS server" bash -c '! grep -q "tunnel.test" "$1"' _ "$TMP/dns-queries.log"
check "... and netd logs them" netd_log_has "tunnel.test type 1: name not allowed"

# loopback (slirp's 10.0.2.2) and the metadata address
out=$(probe "$CG" tcp 127.0.0.1 "$LOPORT")
check "host loopback 127.0.0.1 is refused" grep -q EPERM <<<"$out"
check "... and netd logs it" netd_log_has "connect4 127.0.0.1 port $LOPORT proto 6: blocked address range"
PROXY_PORT=$(sed -n 's/.*proxy 127.0.0.1:\([0-9]*\).*/\1/p' "$TMP/netd.log" | head -n1)
out=$(probe "$CG" tcp 127.0.0.1 "$PROXY_PORT")
check "netd's own proxy port is not reachable directly" grep -q EPERM <<<"$out"
out=$(probe "$CG" tcp 169.254.169.254 80)
check "169.254.169.254 is refused" grep -q EPERM <<<"$out"
check "... and netd logs it" netd_log_has "connect4 169.254.169.254 port 80 proto 6: blocked address range"
out=$(probe "$CG" tcp 10.255.255.53 53)
check "private ranges are refused" grep -q EPERM <<<"$out"

# --- full outbound access (allow_network without domains) --------------------
"$CTL" --socket "$CTLSOCK" register "$CG2" --full <"$TMP/ctl2.in" >"$TMP/ctl2.out" 2>&1 &
ctl2_pid=$!
PIDS+=($ctl2_pid)
exec 8>"$TMP/ctl2.in"
for _ in $(seq 50); do grep -q registered "$TMP/ctl2.out" && break; sleep 0.1; done
out=$(curl_ "$CG2" http://198.51.100.20/)
check "full access: a direct IP connect works" grep -q host-b <<<"$out"
out=$(curl_ "$CG2" https://other.test/)
check "full access: any name resolves and HTTPS works" grep -q "host-b other.test" <<<"$out"
out=$(probe "$CG2" tcp 127.0.0.1 "$LOPORT")
check "full access: loopback stays refused" grep -q EPERM <<<"$out"
out=$(probe "$CG2" tcp 169.254.169.254 80)
check "full access: 169.254.169.254 stays refused" grep -q EPERM <<<"$out"
out=$(probe "$CG2" udp 198.51.100.20 443)
check "full access: UDP/QUIC stays refused" grep -q EPERM <<<"$out"
out=$(probe "$CG2" tcp ::ffff:198.51.100.20 80)
check "full access: IPv4-mapped IPv6 stays refused" grep -q EPERM <<<"$out"
exec 8>&-
for _ in $(seq 50); do kill -0 "$ctl2_pid" 2>/dev/null || break; sleep 0.1; done
check "unregistering (the holder closes) detaches the programs" \
    bash -c '[[ -z $(bpftool cgroup show "$1" 2>/dev/null | grep netd_) ]]' _ "$CG2"

# --- expose_ports: a server in the "VM" reached from the host, network off ----
listen_in() { # CGROUP PORT: a TCP server on 127.0.0.1:PORT inside CGROUP, answering "exposed"
    run "$1" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("listening", flush=True)
while True:
    c = s.accept()[0]; c.sendall(b"exposed\n"); c.close()' "$2" >"$TMP/listen-$2.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q listening "$TMP/listen-$2.log" && return 0; sleep 0.1; done
    return 1
}
EXPORT=$((20000 + ID % 20000)); NOEXPORT=$((EXPORT + 1))
# Network off: no domains at all, one exposed TCP port (what hostfwd would use).
"$CTL" --socket "$CTLSOCK" register "$CG3" --expose "tcp:$EXPORT" <"$TMP/ctl3.in" >"$TMP/ctl3.out" 2>&1 &
ctl3_pid=$!
PIDS+=($ctl3_pid)
exec 9>"$TMP/ctl3.in"
for _ in $(seq 50); do grep -q registered "$TMP/ctl3.out" && break; sleep 0.1; done
check "network off + exposed port: registered" grep -q registered "$TMP/ctl3.out"
listen_in "$CG3" "$EXPORT"
listen_in "$CG" "$NOEXPORT"
out=$(timeout 5 python3 -c 'import socket,sys; c=socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3); print(c.recv(100).decode().strip())' "$EXPORT" 2>&1)
check "the host reaches the exposed port of the network-off cgroup" grep -q exposed <<<"$out"
out=$(timeout 5 python3 -c 'import socket,sys; c=socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2); print(c.recv(100).decode().strip())' "$NOEXPORT" 2>&1)
check "a port that is not exposed does not answer the host (egress drops its SYN-ACK)" bash -c '! grep -q exposed <<<"$1"' _ "$out"
out=$(probe "$CG3" tcp 203.0.113.10 80)
check "network off: the cgroup cannot connect out" grep -q EPERM <<<"$out"
out=$(probe "$CG3" resolve allowed.test)
check "network off: no name resolves" grep -q gaierror <<<"$out"
out=$(probe "$CG3" udp 198.51.100.20 443)
check "network off: no UDP" grep -q EPERM <<<"$out"
exec 9>&-
for _ in $(seq 50); do kill -0 "$ctl3_pid" 2>/dev/null || break; sleep 0.1; done
for p in $(cat "$CG3/cgroup.procs" "$CG/cgroup.procs" 2>/dev/null); do kill "$p" 2>/dev/null; done

# --- netd killed: fail closed -------------------------------------------------
kill -9 "$netd_pid"
wait "$netd_pid" 2>/dev/null
netd_pid=""
sleep 0.3
check "with netd killed the programs stay attached (the holder keeps the links)" \
    bash -c '[[ $(bpftool cgroup show "$1" | grep -c netd_) -eq 7 ]]' _ "$CG"
out=$(curl_ "$CG" http://allowed.test/)
check "netd killed: an allowed name no longer works (no resolver)" bash -c '! grep -q host- <<<"$1"' _ "$out"
out=$(curl_ "$CG" --resolve allowed.test:80:203.0.113.10 http://allowed.test/)
check "netd killed: the allowed address on port 80 fails (no proxy)" bash -c '! grep -q host- <<<"$1"' _ "$out"
out=$(curl_ "$CG" --resolve allowed.test:443:203.0.113.10 https://allowed.test/)
check "netd killed: the allowed address on port 443 fails (no proxy)" bash -c '! grep -q host- <<<"$1"' _ "$out"
out=$(probe "$CG" tcp 198.51.100.21 80)
check "netd killed: a direct IP connect is still refused" grep -q EPERM <<<"$out"
out=$("$CTL" --socket "$CTLSOCK" register "$CG2" --full 2>&1)
check "netd killed: a new networked registration fails with a clear error" grep -q "sbx-netd is not running" <<<"$out"
diag "$out"
exec 7>&-
for _ in $(seq 50); do kill -0 "$ctl_pid" 2>/dev/null || break; sleep 0.1; done

# --- nothing left behind ------------------------------------------------------
check "restarted netd serves again" start_netd
kill -TERM "$netd_pid"
for _ in $(seq 50); do kill -0 "$netd_pid" 2>/dev/null || break; sleep 0.1; done
check "netd exits on SIGTERM" bash -c '! kill -0 "$1" 2>/dev/null' _ "$netd_pid"
netd_pid=""
check "no programs on the test cgroups (bpftool cgroup show)" \
    bash -c '[[ -z $(for c; do bpftool cgroup show "$c" 2>/dev/null; done) ]]' _ "$CG" "$CG2" "$CG3"
# The kernel frees programs and maps after an RCU grace period and from a
# work queue, not at the moment the last fd closes: give it a few seconds.
for _ in $(seq 50); do
    left=""
    for p in $PROG_IDS; do bpftool prog show id "$p" >/dev/null 2>&1 && left+=" prog $p"; done
    for m in $MAP_IDS; do bpftool map show id "$m" >/dev/null 2>&1 && left+=" map $m"; done
    [[ -z "$left" ]] && break
    sleep 0.1
done
check "no BPF programs or maps of netd left (bpftool prog/map show)" test -z "$left" -a -n "$PROG_IDS" -a -n "$MAP_IDS"
links=$(bpftool link show 2>/dev/null)
leftl=""
for p in $PROG_IDS; do grep -qw "prog $p" <<<"$links" && leftl+=" $p"; done
check "no BPF links of netd left (bpftool link show)" test -z "$leftl"
for p in $(cat "$CG/cgroup.procs" "$CG2/cgroup.procs" "$CG3/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
sleep 0.2
rmdir "$CG" "$CG2" "$CG3"
check "the test cgroups are removed" test ! -d "$CG" -a ! -d "$CG2" -a ! -d "$CG3"

echo "1..$T_NUM"
[[ $T_FAILED -eq 0 ]]
