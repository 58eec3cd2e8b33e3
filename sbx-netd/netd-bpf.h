/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

#include "netd-bpf-types.h"

/* The loaded BPF object (one for all VMs) and its maps. */

#define NETD_BPF_N_PROGRAMS 7

typedef struct NetdBpf NetdBpf;
struct bpf_link;

typedef void (*netd_bpf_event_fn)(const struct netd_event *e, void *userdata);

int netd_bpf_load(uint16_t proxy_port, NetdBpf **ret);
NetdBpf *netd_bpf_free(NetdBpf *b);

/* Attaches every program to the cgroup (by fd); on success *n_links is NETD_BPF_N_PROGRAMS. */
int netd_bpf_attach(NetdBpf *b, int cgroup_fd, struct bpf_link **links, size_t *n_links);
/* Detaches (even if another process holds the link fds) and frees. */
void netd_bpf_detach(struct bpf_link **links, size_t *n_links);
int netd_bpf_link_fd(struct bpf_link *link);

int netd_bpf_vm_set(NetdBpf *b, uint64_t cgroup_id, const struct netd_vm *vm);
/* Removes the VM's policy and every map entry it owns. */
void netd_bpf_vm_remove(NetdBpf *b, uint64_t cgroup_id);
int netd_bpf_expose(NetdBpf *b, uint64_t cgroup_id, uint16_t port, uint8_t protocol);
int netd_bpf_allow(NetdBpf *b, uint64_t cgroup_id, uint32_t addr, uint64_t expires_ns);
/* Drops entries that expired before `before` (CLOCK_BOOTTIME ns). */
void netd_bpf_allow_gc(NetdBpf *b, uint64_t before);
int netd_bpf_admin_allow(NetdBpf *b, uint32_t addr, uint8_t prefixlen);
/* Looks up and removes the original destination of a proxied connection. */
int netd_bpf_take_proxy_orig(NetdBpf *b, uint16_t local_port, struct netd_orig *ret);

/* The ring buffer of refusals: an fd to poll, and a call that consumes it. */
int netd_bpf_events_open(NetdBpf *b, netd_bpf_event_fn fn, void *userdata);
int netd_bpf_events_fd(NetdBpf *b);
int netd_bpf_events_consume(NetdBpf *b);
