/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx-error.h"

/* Client side of sbx-netd's control socket (docs/network.md), for the worker.
 *
 * One connection holds one VM's registration. netd answers a registration
 * with the BPF links it attached to the VM's cgroup, passed as fds: the
 * caller keeps them (and the connection) open for the VM's lifetime, so the
 * programs stay attached even if netd dies, and the VM fails closed. Closing
 * the connection, or netd_unregister(), removes the policy and detaches the
 * programs. */

#define NETD_CONTROL_SOCKET "/run/sbx-netd/control.sock"
#define NETD_MAX_DOMAINS 256
#define NETD_MAX_LINKS 8
#define NETD_LINE_MAX 65536
/* The longest refusal text on the control socket. */
#define NETD_ERROR_MAX 256
#define NETD_MAX_EXPOSE 16

/* A port the VM exposes on the host's 127.0.0.1 (QEMU hostfwd): the host
 * side port, which must be known before QEMU starts. */
typedef struct NetdExpose {
        uint16_t port;
        bool udp;
} NetdExpose;

typedef struct NetdRegistration {
        int fd; /* the control connection; readable (EOF) when netd goes away */
        int link_fds[NETD_MAX_LINKS];
        size_t n_link_fds;
        uint64_t cgroup_id;
} NetdRegistration;

#define NETD_REGISTRATION_NULL                                                                                         \
        { .fd = -1 }

/* Registers the cgroup (a cgroup2 directory) of a VM: full outbound access
 * (full=true; domains ignored) or only the given domain patterns (none: no
 * outbound access at all). expose lists the VM's hostfwd ports, whose
 * answers to loopback clients the programs must let through. Returns 0,
 * or a negative errno with a message in error (netd's refusal, or ours): -ENOENT / -ECONNREFUSED when
 * netd is not running, -EPERM when it refuses the caller, -EINVAL for a bad
 * pattern or path, -ETIMEDOUT when it does not answer within 10 s. */
int netd_register(const char *socket_path, const char *cgroup_path, bool full, char *const *domains, size_t n_domains,
                  const NetdExpose *expose, size_t n_expose, NetdRegistration *ret, SbxError *error);

/* Asks netd to remove the policy and detach the programs now, then closes
 * everything. Returns 0 or a negative errno (everything is closed anyway). */
int netd_unregister(NetdRegistration *r);

/* Closes the connection and the link fds without asking (netd then cleans up). */
void netd_registration_close(NetdRegistration *r);
