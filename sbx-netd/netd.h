/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "domain-match.h"
#include "netd-bpf.h"
#include "netd-client.h"

/* Bounds of the TTL given to addresses learnt from DNS (seconds): short TTLs
 * are raised so a connection can follow its lookup; long ones are cut. */
#define NETD_TTL_MIN 60u
#define NETD_TTL_MAX 3600u
/* How long after its TTL an address stays usable for connections already
 * open (cgroup_skb egress) and for the proxy's name check. */
#define NETD_TTL_GRACE_NS (120ull * 1000000000ull)
#define NETD_MAX_BINDINGS 4096
#define NETD_MAX_VMS 256
#define NETD_MAX_ALLOW_RANGES 64
#define NETD_MAX_ALLOW_UIDS 16

typedef struct Netd Netd;
typedef struct NetdVm NetdVm;
typedef struct DnsPending DnsPending;
typedef struct ProxyConn ProxyConn;
typedef struct ControlConn ControlConn;

/* An address DNS gave a VM for a name. */
typedef struct NameBinding {
        char name[DOMAIN_NAME_MAX + 1];
        uint32_t addr; /* network order */
        uint64_t expires_ns;
} NameBinding;

struct NetdVm {
        Netd *netd;
        NetdVm *next;
        uint64_t cgroup_id;
        char *cgroup_path;
        char label[64]; /* the cgroup's directory name, for logs */
        bool full;
        char (*patterns)[DOMAIN_NAME_MAX + 3];
        size_t n_patterns;

        struct bpf_link *links[NETD_BPF_N_PROGRAMS];
        size_t n_links;

        int dns_fd;
        uint16_t dns_port;
        sd_event_source *dns_source;
        DnsPending *pending;
        size_t n_pending;

        NameBinding *bindings;
        size_t n_bindings;
};

struct Netd {
        sd_event *event;
        NetdBpf *bpf;
        struct sockaddr_in upstream;
        const char *cgroup_root;

        int proxy_fd;
        uint16_t proxy_port;
        sd_event_source *proxy_source;
        ProxyConn *proxy_conns;
        size_t n_proxy_conns;

        const char *control_path;
        int control_fd;
        sd_event_source *control_source;
        ControlConn *control_conns;
        uid_t allow_uids[NETD_MAX_ALLOW_UIDS];
        size_t n_allow_uids;

        NetdVm *vms;
        size_t n_vms;

        /* refusal log rate limit (a VM decides how often it is refused) */
        uint64_t log_window_usec;
        unsigned log_count, log_suppressed;
        sd_event_source *gc_timer;
};

uint64_t now_boottime_ns(void);
/* Whether a refusal may be logged now: at most NETD_LOG_BURST lines a second;
 * the number suppressed is logged when the next window opens. */
#define NETD_LOG_BURST 200
bool netd_log_refusal_ok(Netd *n);
const char *ip4_to_string(uint32_t addr, char buf[static 16]);

/* vm.c */
int netd_vm_new(Netd *n, const char *cgroup_path, uid_t peer_uid, bool full, char *const *patterns, size_t n_patterns,
                const NetdExpose *expose, size_t n_expose, NetdVm **ret, SbxError *error);
NetdVm *netd_vm_free(NetdVm *vm);
NetdVm *netd_vm_find(Netd *n, uint64_t cgroup_id);
bool netd_vm_name_allowed(const NetdVm *vm, const char *name);
void netd_vm_learn(NetdVm *vm, const char *name, uint32_t addr, uint32_t ttl);
bool netd_vm_bound(const NetdVm *vm, const char *name, uint32_t addr);
void netd_vm_gc(NetdVm *vm, uint64_t now);
/* Whether sbx-netd itself may connect there for a VM (same ranges as the BPF programs). */
bool netd_addr_blocked(const Netd *n, uint32_t addr);

/* dns-resolver.c */
int netd_dns_open(NetdVm *vm);
void netd_dns_close(NetdVm *vm);

/* tcp-proxy.c */
int netd_proxy_open(Netd *n, uint16_t port);
void netd_proxy_close(Netd *n);

/* control.c */
int netd_control_open(Netd *n);
void netd_control_close(Netd *n);
