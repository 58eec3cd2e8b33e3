/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A VM's network (docs/network.md): QEMU user-mode networking (slirp) whose
 * host sockets live in the VM's cgroup2 directory, where sbx-netd enforces
 * the request's policy with cgroup BPF programs.
 *
 *   vm_network_pick_ports()  before the QEMU command line: free host ports for exposed ports
 *   vm_network_register()    after the cgroups, before the seccomp filter (it forbids connect())
 *                            and before QEMU runs: netd attaches the programs, we keep the links
 *   vm_network_watch()       EOF on the control connection = netd died: the VM must go
 *   vm_network_release()     after QEMU is gone, before the cgroup is removed
 *
 * Fail closed: a VM that asked for a NIC never runs without a registration. */

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "netd-client.h"
#include "qemu.h"
#include "run-request.h"

/* "udp 65535 127.0.0.1:65535" */
#define VM_NETWORK_MAPPING_MAX 32u

typedef struct VmNetwork {
        bool enabled;           /* the VM has a NIC: network on, or ports exposed */
        bool restrict_outbound; /* network off: slirp's restrict=on */
        NetdRegistration reg;
        bool registered;
        sd_event_source *netd_io;
        QemuHostfwd hostfwd[SBX_EXPOSE_MAX];
        size_t n_hostfwd;
        char mapping_buf[SBX_EXPOSE_MAX][VM_NETWORK_MAPPING_MAX];
        char *mappings[SBX_EXPOSE_MAX + 1]; /* "tcp INTERNAL 127.0.0.1:EXTERNAL", NULL-terminated */
} VmNetwork;

#define VM_NETWORK_NULL                                                                                                \
        { .reg = NETD_REGISTRATION_NULL }

/* Picks a free 127.0.0.1 port (bind to port 0, read it, close) for every exposed port without an
 * external one, and fills hostfwd and mappings. Does nothing when the request wants no NIC. Returns 0,
 * or a negative errno with a message in error. */
int vm_network_pick_ports(VmNetwork *n, const RunRequest *req, SbxError *error);
/* Sets the NIC options of the QEMU command line. */
void vm_network_qemu_options(const VmNetwork *n, QemuOptions *o);
/* Registers cgroup_dir (a cgroup2 directory, NULL when the VM has none) with sbx-netd at socket_path.
 * Returns 0, or a negative errno with netd's (or our) message in error. */
int vm_network_register(VmNetwork *n, const RunRequest *req, const char *cgroup_dir, const char *socket_path,
                        SbxError *error);
/* Calls on_lost once when netd's control connection becomes readable (EOF: netd is gone). */
int vm_network_watch(VmNetwork *n, sd_event *event, sd_event_io_handler_t on_lost, void *userdata);
/* Unregisters (asks netd, then closes the links), or only closes when netd is already gone.
 * Idempotent. Call once QEMU is gone. */
void vm_network_release(VmNetwork *n);
