// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* sbx-netd's cgroup programs, attached to each networked VM's cgroup.
 * Deny by default: see docs/network.md for the policy they implement. */

#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "netd-bpf-types.h"

#define AF_INET 2
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define LOOPBACK 0x7f000001u
/* Levels of the cgroup tree searched for a VM's policy above the socket's own cgroup. */
#define MAX_CGROUP_LEVEL 12

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by sbx-netd before loading. */
const volatile __u16 proxy_port = 0; /* host order */

struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 1024);
        __type(key, __u64);
        __type(value, struct netd_vm);
} vms SEC(".maps");

struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 65536);
        __type(key, struct netd_allow_key);
        __type(value, struct netd_allow_val);
} allow4 SEC(".maps");

/* cookie of a socket redirected to the proxy or resolver -> its original destination */
struct {
        __uint(type, BPF_MAP_TYPE_LRU_HASH);
        __uint(max_entries, 16384);
        __type(key, __u64);
        __type(value, struct netd_orig);
} sock_orig SEC(".maps");

/* local port of a connection to the proxy (host order) -> its original destination */
struct {
        __uint(type, BPF_MAP_TYPE_LRU_HASH);
        __uint(max_entries, 16384);
        __type(key, __u32);
        __type(value, struct netd_orig);
} proxy_orig SEC(".maps");

struct {
        __uint(type, BPF_MAP_TYPE_HASH);
        __uint(max_entries, 4096);
        __type(key, struct netd_expose_key);
        __type(value, __u8);
} exposed SEC(".maps");

/* private ranges the administrator allows */
struct {
        __uint(type, BPF_MAP_TYPE_LPM_TRIE);
        __uint(max_entries, 64);
        __uint(map_flags, BPF_F_NO_PREALLOC);
        __type(key, struct netd_lpm_key);
        __type(value, __u8);
} admin_allow4 SEC(".maps");

struct {
        __uint(type, BPF_MAP_TYPE_RINGBUF);
        __uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline int in_net(__u32 addr_host, __u32 net, unsigned bits) {
        return (addr_host >> (32 - bits)) == (net >> (32 - bits));
}

/* 2: never reachable; 1: private, reachable only inside an admin range; 0: public. */
static __always_inline int classify4(__u32 addr) {
        __u32 a = bpf_ntohl(addr);

        if (in_net(a, 0x00000000, 8) ||  /* 0.0.0.0/8 "this network" */
            in_net(a, 0x7f000000, 8) ||  /* loopback: slirp's 10.0.2.2 maps here */
            in_net(a, 0xa9fe0000, 16) || /* link-local incl. 169.254.169.254 */
            in_net(a, 0xe0000000, 4) ||  /* multicast */
            in_net(a, 0xf0000000, 4))    /* reserved and broadcast */
                return 2;
        if (in_net(a, 0x0a000000, 8) ||  /* 10/8 */
            in_net(a, 0xac100000, 12) || /* 172.16/12 */
            in_net(a, 0xc0a80000, 16) || /* 192.168/16 */
            in_net(a, 0x64400000, 10) || /* 100.64/10 carrier-grade NAT */
            in_net(a, 0xc0000000, 24) || /* 192.0.0/24 IETF protocol assignments */
            in_net(a, 0xc6120000, 15))   /* 198.18/15 benchmarking */
                return 1;
        return 0;
}

static __always_inline int blocked4(__u32 addr) {
        int c = classify4(addr);
        struct netd_lpm_key k = {.prefixlen = 32, .addr = addr};

        if (c == 2)
                return 1;
        if (c == 1)
                return bpf_map_lookup_elem(&admin_allow4, &k) ? 0 : 1;
        return 0;
}

static __always_inline struct netd_vm *vm_current(__u64 *cg) {
        struct netd_vm *vm;

        *cg = bpf_get_current_cgroup_id();
        vm = bpf_map_lookup_elem(&vms, cg);
        if (vm)
                return vm;
        for (int level = MAX_CGROUP_LEVEL; level >= 1; level--) {
                __u64 id = bpf_get_current_ancestor_cgroup_id(level);
                if (id == 0)
                        continue;
                vm = bpf_map_lookup_elem(&vms, &id);
                if (vm) {
                        *cg = id;
                        return vm;
                }
        }
        return NULL;
}

static __always_inline struct netd_vm *vm_skb(struct __sk_buff *skb, __u64 *cg) {
        struct netd_vm *vm;

        *cg = bpf_skb_cgroup_id(skb);
        vm = bpf_map_lookup_elem(&vms, cg);
        if (vm)
                return vm;
        for (int level = MAX_CGROUP_LEVEL; level >= 1; level--) {
                __u64 id = bpf_skb_ancestor_cgroup_id(skb, level);
                if (id == 0)
                        continue;
                vm = bpf_map_lookup_elem(&vms, &id);
                if (vm) {
                        *cg = id;
                        return vm;
                }
        }
        return NULL;
}

static __always_inline void report(__u64 cg, __u8 hook, __u8 reason, __u8 protocol, __u32 addr, const __u32 *addr6,
                                   __u16 port) {
        struct netd_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

        if (!e)
                return;
        __builtin_memset(e, 0, sizeof(*e));
        e->cgroup_id = cg;
        e->hook = hook;
        e->reason = reason;
        e->protocol = protocol;
        e->addr = addr;
        if (addr6) {
                e->addr6[0] = addr6[0];
                e->addr6[1] = addr6[1];
                e->addr6[2] = addr6[2];
                e->addr6[3] = addr6[3];
        }
        e->port = port;
        bpf_ringbuf_submit(e, 0);
}

static __always_inline int is_exposed(__u64 cg, __u16 port, __u8 protocol) {
        struct netd_expose_key k = {.cgroup_id = cg, .port = port, .protocol = protocol};

        return bpf_map_lookup_elem(&exposed, &k) != NULL;
}

static __always_inline int resolved(__u64 cg, __u32 addr, int check_expiry) {
        struct netd_allow_key k = {.cgroup_id = cg, .addr = addr};
        struct netd_allow_val *v = bpf_map_lookup_elem(&allow4, &k);

        if (!v)
                return 0;
        return !check_expiry || v->expires_ns > bpf_ktime_get_boot_ns();
}

/* UDP to port 53 goes to this VM's resolver in sbx-netd. */
static __always_inline int redirect_dns(struct bpf_sock_addr *ctx, __u64 cg, struct netd_vm *vm) {
        struct netd_orig o = {.cgroup_id = cg, .addr = ctx->user_ip4, .port = (__u16) ctx->user_port};
        __u64 cookie = bpf_get_socket_cookie(ctx);

        bpf_map_update_elem(&sock_orig, &cookie, &o, BPF_ANY);
        ctx->user_ip4 = bpf_htonl(LOOPBACK);
        ctx->user_port = bpf_htons(vm->dns_port);
        return 1;
}

SEC("cgroup/connect4")
int netd_connect4(struct bpf_sock_addr *ctx) {
        __u32 addr = ctx->user_ip4;
        __u16 port = bpf_ntohs((__u16) ctx->user_port);
        __u8 proto = (__u8) ctx->protocol;
        __u64 cg;
        struct netd_vm *vm = vm_current(&cg);

        if (!vm) {
                report(cg, NETD_HOOK_CONNECT4, NETD_REASON_NO_POLICY, proto, addr, NULL, port);
                return 0;
        }
        if (ctx->type == SOCK_DGRAM && ctx->protocol == IPPROTO_UDP) {
                if (port == 53)
                        return redirect_dns(ctx, cg, vm);
                report(cg, NETD_HOOK_CONNECT4, NETD_REASON_UDP, proto, addr, NULL, port);
                return 0;
        }
        if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP) {
                report(cg, NETD_HOOK_CONNECT4, NETD_REASON_PROTOCOL, proto, addr, NULL, port);
                return 0;
        }
        if (blocked4(addr)) {
                report(cg, NETD_HOOK_CONNECT4, NETD_REASON_BLOCKED_RANGE, proto, addr, NULL, port);
                return 0;
        }
        if (vm->flags & NETD_VM_FULL)
                return 1;
        if (!resolved(cg, addr, 1)) {
                report(cg, NETD_HOOK_CONNECT4, NETD_REASON_NOT_RESOLVED, proto, addr, NULL, port);
                return 0;
        }
        if (port == 80 || port == 443) {
                /* The proxy checks the Host header or the TLS SNI against DNS. */
                struct netd_orig o = {.cgroup_id = cg, .addr = addr, .port = (__u16) ctx->user_port};
                __u64 cookie = bpf_get_socket_cookie(ctx);

                bpf_map_update_elem(&sock_orig, &cookie, &o, BPF_ANY);
                ctx->user_ip4 = bpf_htonl(LOOPBACK);
                ctx->user_port = bpf_htons(proxy_port);
        }
        return 1;
}

/* Hands the original destination of a proxied connection to sbx-netd, keyed
 * by the local port, which is known once the kernel picked it. */
SEC("sockops")
int netd_sockops(struct bpf_sock_ops *skops) {
        if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB || skops->family != AF_INET)
                return 1;
        __u64 cookie = bpf_get_socket_cookie(skops);
        struct netd_orig *o = bpf_map_lookup_elem(&sock_orig, &cookie);
        if (!o)
                return 1;
        __u32 lport = skops->local_port;
        bpf_map_update_elem(&proxy_orig, &lport, o, BPF_ANY);
        bpf_map_delete_elem(&sock_orig, &cookie);
        return 1;
}

SEC("cgroup/connect6")
int netd_connect6(struct bpf_sock_addr *ctx) {
        __u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
        __u64 cg;

        vm_current(&cg);
        report(cg, NETD_HOOK_CONNECT6, NETD_REASON_IPV6, (__u8) ctx->protocol, 0, a, bpf_ntohs((__u16) ctx->user_port));
        return 0;
}

SEC("cgroup/sendmsg4")
int netd_sendmsg4(struct bpf_sock_addr *ctx) {
        __u16 port = bpf_ntohs((__u16) ctx->user_port);
        __u64 cg;
        struct netd_vm *vm = vm_current(&cg);

        if (!vm) {
                report(cg, NETD_HOOK_SENDMSG4, NETD_REASON_NO_POLICY, IPPROTO_UDP, ctx->user_ip4, NULL, port);
                return 0;
        }
        if (port == 53)
                return redirect_dns(ctx, cg, vm);
        /* an answer to a client of an exposed UDP port (hostfwd) */
        struct bpf_sock *sk = ctx->sk;
        if (sk && ctx->user_ip4 == bpf_htonl(LOOPBACK) && is_exposed(cg, (__u16) sk->src_port, IPPROTO_UDP))
                return 1;
        report(cg, NETD_HOOK_SENDMSG4, NETD_REASON_UDP, IPPROTO_UDP, ctx->user_ip4, NULL, port);
        return 0;
}

SEC("cgroup/sendmsg6")
int netd_sendmsg6(struct bpf_sock_addr *ctx) {
        __u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
        __u64 cg;

        vm_current(&cg);
        report(cg, NETD_HOOK_SENDMSG6, NETD_REASON_IPV6, IPPROTO_UDP, 0, a, bpf_ntohs((__u16) ctx->user_port));
        return 0;
}

/* DNS replies appear to come from the server the guest asked. */
SEC("cgroup/recvmsg4")
int netd_recvmsg4(struct bpf_sock_addr *ctx) {
        __u64 cg, cookie;
        struct netd_vm *vm;
        struct netd_orig *o;

        if (ctx->user_ip4 != bpf_htonl(LOOPBACK))
                return 1;
        vm = vm_current(&cg);
        if (!vm || bpf_ntohs((__u16) ctx->user_port) != vm->dns_port)
                return 1;
        cookie = bpf_get_socket_cookie(ctx);
        o = bpf_map_lookup_elem(&sock_orig, &cookie);
        if (o) {
                ctx->user_ip4 = o->addr;
                ctx->user_port = o->port;
        }
        return 1;
}

/* The backstop: every packet the VM's sockets send must fit the policy. */
SEC("cgroup_skb/egress")
int netd_egress(struct __sk_buff *skb) {
        struct iphdr ip;
        __u16 ports[2] = {};
        __u64 cg;
        struct netd_vm *vm = vm_skb(skb, &cg);

        if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
                report(cg, NETD_HOOK_EGRESS, NETD_REASON_IPV6, 0, 0, NULL, 0);
                return 0;
        }
        if (skb->protocol != bpf_htons(ETH_P_IP) || bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
                return 0;
        if (!vm) {
                report(cg, NETD_HOOK_EGRESS, NETD_REASON_NO_POLICY, ip.protocol, ip.daddr, NULL, 0);
                return 0;
        }

        int first_fragment = (bpf_ntohs(ip.frag_off) & 0x1fff) == 0;
        if (first_fragment && (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP))
                if (bpf_skb_load_bytes(skb, ip.ihl * 4, ports, sizeof(ports)) < 0)
                        return 0;
        __u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);

        /* answers of an exposed port (hostfwd) to its loopback clients */
        if (first_fragment && ip.saddr == bpf_htonl(LOOPBACK) && ip.daddr == bpf_htonl(LOOPBACK) &&
            (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) && is_exposed(cg, sport, ip.protocol))
                return 1;

        if (ip.protocol == IPPROTO_UDP) {
                if (ip.daddr == bpf_htonl(LOOPBACK) && first_fragment && dport == vm->dns_port)
                        return 1;
                report(cg, NETD_HOOK_EGRESS, NETD_REASON_UDP, ip.protocol, ip.daddr, NULL, dport);
                return 0;
        }
        if (ip.protocol != IPPROTO_TCP) {
                report(cg, NETD_HOOK_EGRESS, NETD_REASON_PROTOCOL, ip.protocol, ip.daddr, NULL, 0);
                return 0;
        }
        if (ip.daddr == bpf_htonl(LOOPBACK) && first_fragment && dport == proxy_port)
                return 1;
        if (blocked4(ip.daddr)) {
                report(cg, NETD_HOOK_EGRESS, NETD_REASON_BLOCKED_RANGE, ip.protocol, ip.daddr, NULL, dport);
                return 0;
        }
        if ((vm->flags & NETD_VM_FULL) || resolved(cg, ip.daddr, 0))
                return 1;
        report(cg, NETD_HOOK_EGRESS, NETD_REASON_NOT_RESOLVED, ip.protocol, ip.daddr, NULL, dport);
        return 0;
}
