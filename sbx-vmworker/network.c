/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "network.h"
#include "sbx-error.h"

/* Binds 127.0.0.1:port (0: any free one) and returns the bound port; the socket is closed again, and
 * QEMU binds the port for its hostfwd a moment later. */
static int probe_port(uint16_t port, bool udp, uint16_t *ret) {
        _cleanup_close_ int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {
                .sin_family = AF_INET,
                .sin_port = htons(port),
                .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
        };
        socklen_t len = sizeof sa;

        if (fd < 0)
                return -errno;
        /* QEMU's hostfwd sets SO_REUSEADDR too, so a TIME_WAIT of ours does not block it. */
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
        if (bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        *ret = ntohs(sa.sin_port);
        return 0;
}

int vm_network_pick_ports(VmNetwork *n, const RunRequest *req, SbxError *error) {
        int r;

        n->enabled = run_request_wants_nic(req);
        n->restrict_outbound = !req->network;
        n->n_hostfwd = 0;
        n->mappings[0] = NULL;
        if (!n->enabled)
                return 0;

        for (size_t i = 0; i < req->n_expose; i++) {
                const RunExpose *e = &req->expose[i];
                uint16_t port = 0;

                r = probe_port(e->external, e->udp, &port);
                if (r < 0 && e->external)
                        return sbx_error_set(error, r, "Cannot expose port %u: 127.0.0.1:%u/%s is not free (%s).",
                                             e->internal, e->external, e->udp ? "udp" : "tcp", strerror(-r));
                if (r < 0)
                        return sbx_error_set(error, r, "Cannot pick a free host port for port %u/%s: %s.", e->internal,
                                             e->udp ? "udp" : "tcp", strerror(-r));
                for (size_t j = 0; j < n->n_hostfwd; j++)
                        if (n->hostfwd[j].host_port == port && n->hostfwd[j].udp == e->udp)
                                /* Port 0 picked one that an explicit entry asked for: refuse, do not guess. */
                                return sbx_error_set(error, -EADDRINUSE, "Host port %u/%s would be exposed twice.",
                                                     port, e->udp ? "udp" : "tcp");
                n->hostfwd[n->n_hostfwd] = (QemuHostfwd){
                        .host_port = port,
                        .guest_port = e->internal,
                        .udp = e->udp,
                };
                snprintf(n->mapping_buf[n->n_hostfwd], sizeof n->mapping_buf[0], "%s %u 127.0.0.1:%u",
                         e->udp ? "udp" : "tcp", e->internal, port);
                n->mappings[n->n_hostfwd] = n->mapping_buf[n->n_hostfwd];
                n->n_hostfwd++;
                n->mappings[n->n_hostfwd] = NULL;
                log_info("Exposing guest port %u/%s on 127.0.0.1:%u.", e->internal, e->udp ? "udp" : "tcp", port);
        }
        return 0;
}

void vm_network_qemu_options(const VmNetwork *n, QemuOptions *o) {
        o->nic = n->enabled;
        o->nic_restrict = n->enabled && n->restrict_outbound;
        o->hostfwd = n->hostfwd;
        o->n_hostfwd = n->n_hostfwd;
}

int vm_network_register(VmNetwork *n, const RunRequest *req, const char *cgroup_dir, const char *socket_path,
                        SbxError *error) {
        NetdExpose expose[SBX_EXPOSE_MAX];
        int r;

        if (!n->enabled)
                return 0;
        if (!cgroup_dir)
                return sbx_error_set(error, -EOPNOTSUPP,
                                     "The VM has no cgroup2 directory for sbx-netd's programs (cgroup_parent empty, "
                                     "or no cgroup2 tree); networked VMs are refused.");
        if (!socket_path || !*socket_path)
                return sbx_error_set(error, -ENOENT, "No netd_socket is configured; networked VMs are refused.");
        for (size_t i = 0; i < n->n_hostfwd; i++)
                expose[i] = (NetdExpose){.port = n->hostfwd[i].host_port, .udp = n->hostfwd[i].udp};

        /* Network off (ports exposed only): domain mode without patterns, i.e. no outbound access. */
        bool full = req->network && req->n_domains == 0;
        r = netd_register(socket_path, cgroup_dir, full, req->network ? req->domains : NULL,
                          req->network ? req->n_domains : 0, expose, n->n_hostfwd, &n->reg, error);
        if (r < 0)
                return r;
        n->registered = true;
        log_info("Registered %s with sbx-netd (cgroup id %" PRIu64 ", %zu links): %s.", cgroup_dir, n->reg.cgroup_id,
                 n->reg.n_link_fds,
                 !req->network ? "no outbound access"
                 : full        ? "full outbound access"
                               : "allowed domains only");
        return 0;
}

int vm_network_watch(VmNetwork *n, sd_event *event, sd_event_io_handler_t on_lost, void *userdata) {
        int r;

        if (!n->registered)
                return 0;
        r = sd_event_add_io(event, &n->netd_io, n->reg.fd, EPOLLIN | EPOLLRDHUP, on_lost, userdata);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(n->netd_io, "netd-control");
        return 0;
}

void vm_network_release(VmNetwork *n) {
        n->netd_io = sd_event_source_disable_unref(n->netd_io);
        if (!n->registered)
                return;
        n->registered = false;

        /* Readable now means netd is gone (or broke the protocol): do not wait for an answer. */
        struct pollfd p = {.fd = n->reg.fd, .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) != 0) {
                log_debug("sbx-netd's connection is closed or unusable; dropping the registration.");
                netd_registration_close(&n->reg);
                return;
        }
        int r = netd_unregister(&n->reg);
        if (r < 0)
                log_warning_errno(r, "Failed to unregister the VM from sbx-netd (closed the connection instead): %m");
        else
                log_debug("Unregistered the VM from sbx-netd.");
}
