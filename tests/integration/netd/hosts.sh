# SPDX-License-Identifier: Apache-2.0
# The test hosts of test-netd.sh and test-network.sh, sourced by both. The caller sets NSA and NSB
# (network namespace names), VA and VB (host-side veth names), HERE (tests/integration), TMP, and
# the array PIDS, which collects the servers started here.
#   host A (NSA): web server 203.0.113.10 ("host-a") and the test DNS server 203.0.113.53
#   host B (NSB): web server 198.51.100.20 ("host-b"), 198.51.100.21 (in no DNS answer), and
#                 169.254.169.254 (the cloud metadata address)
#   the host's loopback: a TCP listener whose port is in $TMP/lo-port (what slirp's 10.0.2.2 maps to)
# A test CA ($TMP/ca.pem) signs one certificate for every test name.
# start_netd runs sbx-netd for both ($NETD, $CTLSOCK, $CGROOT; its pid in netd_pid).

# Returns non-zero when the hosts cannot be set up.
setup_hosts() {
    ip netns add "$NSA" && ip netns add "$NSB" || return 1
    ip link add "$VA" type veth peer name eth0 netns "$NSA" || return 1
    ip link add "$VB" type veth peer name eth0 netns "$NSB" || return 1
    ip addr add 203.0.113.1/24 dev "$VA" && ip link set "$VA" up || return 1
    ip addr add 198.51.100.1/24 dev "$VB" && ip link set "$VB" up || return 1
    ip route add 169.254.169.254/32 dev "$VB" || return 1
    ip -n "$NSA" addr add 203.0.113.10/24 dev eth0
    ip -n "$NSA" addr add 203.0.113.53/24 dev eth0
    ip -n "$NSA" link set eth0 up && ip -n "$NSA" link set lo up
    ip -n "$NSB" addr add 198.51.100.20/24 dev eth0
    ip -n "$NSB" addr add 198.51.100.21/24 dev eth0 # in no DNS answer
    ip -n "$NSB" addr add 169.254.169.254/32 dev eth0
    ip -n "$NSB" link set eth0 up && ip -n "$NSB" link set lo up
    ip -n "$NSA" route add default dev eth0
    ip -n "$NSB" route add default dev eth0
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=sbx-test-ca -keyout "$TMP/ca.key" \
        -out "$TMP/ca.pem" 2>/dev/null || return 1
    openssl req -newkey rsa:2048 -nodes -subj /CN=allowed.test -keyout "$TMP/srv.key" -out "$TMP/srv.csr" \
        2>/dev/null || return 1
    printf 'subjectAltName=DNS:allowed.test,DNS:www.allowed.test,DNS:other.test,DNS:b.allowed.test,DNS:evil.test\n' \
        >"$TMP/ext.cnf"
    openssl x509 -req -in "$TMP/srv.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -CAcreateserial -days 2 \
        -extfile "$TMP/ext.cnf" -out "$TMP/srv.pem" 2>/dev/null || return 1

    ip netns exec "$NSA" python3 "$HERE/netd/dns-server.py" 203.0.113.53 53 "$TMP/dns-queries.log" \
        allowed.test=203.0.113.10 www.allowed.test=203.0.113.10 b.allowed.test=198.51.100.20 \
        other.test=198.51.100.20 evil.test=198.51.100.20 >"$TMP/dns.out" 2>&1 &
    PIDS+=($!)
    ip netns exec "$NSA" python3 "$HERE/netd/web-server.py" 203.0.113.10 host-a "$TMP/srv.pem" "$TMP/srv.key" \
        >"$TMP/web-a.log" 2>&1 &
    PIDS+=($!)
    ip netns exec "$NSB" python3 "$HERE/netd/web-server.py" 0.0.0.0 host-b "$TMP/srv.pem" "$TMP/srv.key" \
        >"$TMP/web-b.log" 2>&1 &
    PIDS+=($!)
    # A service on the host's loopback: what slirp's 10.0.2.2 maps to.
    python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True)
while True: s.accept()[0].close()' >"$TMP/lo-port" 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 50); do
        grep -q ready "$TMP/web-a.log" 2>/dev/null && grep -q ready "$TMP/web-b.log" 2>/dev/null &&
            [[ -s $TMP/lo-port ]] && return 0
        sleep 0.1
    done
    return 1
}

teardown_hosts() {
    ip netns del "$NSA" 2>/dev/null
    ip netns del "$NSB" 2>/dev/null
    ip link del "$VA" 2>/dev/null
    ip link del "$VB" 2>/dev/null
}

# sbx-netd with least privilege: uid 65534 with CAP_BPF and CAP_NET_ADMIN only. Non-zero when it
# does not come up within 5 s.
start_netd() {
    setpriv --reuid=65534 --regid=65534 --clear-groups \
        --inh-caps=-all,+bpf,+net_admin --ambient-caps=-all,+bpf,+net_admin --bounding-set=-all,+bpf,+net_admin \
        "$NETD" --control "$CTLSOCK" --upstream 203.0.113.53 --cgroup-root "$CGROOT" >>"$TMP/netd.log" 2>&1 &
    netd_pid=$!
    for _ in $(seq 50); do [[ -S $CTLSOCK ]] && grep -q ready "$TMP/netd.log" && return 0; sleep 0.1; done
    return 1
}
