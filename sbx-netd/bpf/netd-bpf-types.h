/* SPDX-License-Identifier: Apache-2.0 */
/* Types shared by the BPF programs (bpf/netd.bpf.c) and sbx-netd. */
#pragma once

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* struct netd_vm.flags */
#define NETD_VM_FULL 1u /* allow_network without domains: any address that is not always blocked */

/* Per VM, keyed by the cgroup id of the VM's cgroup (cgroup2). */
struct netd_vm {
        __u32 flags;
        __u16 dns_port; /* host order: sbx-netd's resolver socket for this VM on 127.0.0.1 */
        __u16 pad;
};

/* Addresses a VM may connect to, learnt from DNS answers. */
struct netd_allow_key {
        __u64 cgroup_id;
        __u32 addr; /* network order */
        __u32 pad;
};

struct netd_allow_val {
        __u64 expires_ns; /* CLOCK_BOOTTIME */
};

/* The destination a redirected socket asked for. */
struct netd_orig {
        __u64 cgroup_id;
        __u32 addr; /* network order */
        __u16 port; /* network order */
        __u16 pad;
};

/* A port the VM exposes on the host's 127.0.0.1 (QEMU hostfwd): packets from
 * it back to loopback clients are answers to inbound connections. */
struct netd_expose_key {
        __u64 cgroup_id;
        __u16 port; /* host order */
        __u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
        __u8 pad[5];
};

struct netd_lpm_key {
        __u32 prefixlen;
        __u32 addr; /* network order */
};

enum {
        NETD_HOOK_CONNECT4 = 1,
        NETD_HOOK_CONNECT6,
        NETD_HOOK_SENDMSG4,
        NETD_HOOK_SENDMSG6,
        NETD_HOOK_EGRESS,
};

enum {
        NETD_REASON_NO_POLICY = 1, /* the cgroup has programs but no policy (being torn down) */
        NETD_REASON_BLOCKED_RANGE, /* loopback, link-local, private, multicast, ... */
        NETD_REASON_NOT_RESOLVED,  /* not an address DNS gave this VM */
        NETD_REASON_IPV6,
        NETD_REASON_UDP,      /* UDP other than DNS (QUIC included) */
        NETD_REASON_PROTOCOL, /* neither TCP nor UDP (ICMP, raw, ...) */
};

struct netd_event {
        __u64 cgroup_id;
        __u32 addr;     /* IPv4, network order */
        __u32 addr6[4]; /* IPv6, network order */
        __u16 port;     /* host order */
        __u8 hook;
        __u8 reason;
        __u8 protocol; /* IPPROTO_* */
        __u8 pad[3];
};
