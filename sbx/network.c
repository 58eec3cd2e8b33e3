/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "macro.h"
#include "network.h"

int sbx_network_add_domain(SbxNetworkOptions *o, const char *arg) {
        char canonical[SBX_DOMAIN_MAX + 1];
        const char *reason;

        if (o->n_domains >= SBX_ALLOWED_DOMAINS_MAX) {
                fprintf(stderr, "sbx: at most %u --allow-domain\n", SBX_ALLOWED_DOMAINS_MAX);
                return -EINVAL;
        }
        if (sbx_validate_domain_pattern(arg, canonical, &reason) < 0) {
                fprintf(stderr, "sbx: --allow-domain %s: the name %s\n", arg, reason);
                return -EINVAL;
        }
        o->domains[o->n_domains++] = arg;
        o->network = true;
        return 0;
}

/* Asks the kernel for a free port; another program could take it before the
 * VM binds it, in which case the run fails with a clear error. */
static int pick_port(bool udp, uint16_t *ret) {
        _cleanup_close_ int fd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;

        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        *ret = ntohs(sa.sin_port);
        return 0;
}

int sbx_network_add_expose(SbxNetworkOptions *o, const char *arg) {
        SbxExpose e;
        const char *reason;
        int r;

        if (o->n_expose >= SBX_EXPOSE_MAX) {
                fprintf(stderr, "sbx: at most %u --expose\n", SBX_EXPOSE_MAX);
                return -EINVAL;
        }
        if (sbx_parse_expose(arg, &e, &reason) < 0) {
                fprintf(stderr, "sbx: --expose %s: the mapping %s\n", arg, reason);
                return -EINVAL;
        }
        if (e.external == 0) {
                r = pick_port(e.udp, &e.external);
                if (r < 0) {
                        fprintf(stderr, "sbx: --expose %s: cannot find a free port: %s\n", arg, strerror(-r));
                        return r;
                }
        }
        o->expose[o->n_expose++] = e;
        return 0;
}

void sbx_network_announce(const SbxNetworkOptions *o) {
        if (o->network && o->n_domains == 0)
                fprintf(stderr, "sbx: warning: --network without --allow-domain gives the code full outbound "
                                "access (private and link-local ranges, loopback and IPv6 stay blocked)\n");
        for (size_t i = 0; i < o->n_expose; i++)
                fprintf(stderr, "sbx: guest port %u/%s is at %s://127.0.0.1:%u\n", o->expose[i].internal,
                        o->expose[i].udp ? "udp" : "tcp", o->expose[i].udp ? "udp" : "http", o->expose[i].external);
}

/* {key: as} inside an open a{sv}. */
static int append_strv(sd_bus_message *m, const char *key, const char *const *v, size_t n) {
        int r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", key);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = sd_bus_message_append(m, "s", v[i]);
        for (int k = 0; r >= 0 && k < 3; k++)
                r = sd_bus_message_close_container(m);
        return r;
}

int sbx_append_network(sd_bus_message *m, const SbxNetworkOptions *o) {
        char expose[SBX_EXPOSE_MAX][32];
        const char *expose_v[SBX_EXPOSE_MAX];
        int r = 0;

        if (o->network)
                r = sd_bus_message_append(m, "{sv}", "allow_network", "b", 1);
        if (r >= 0 && o->n_domains > 0)
                r = append_strv(m, "allowed_domains", o->domains, o->n_domains);
        for (size_t i = 0; i < o->n_expose; i++) {
                sbx_expose_format(&o->expose[i], expose[i], sizeof expose[i]);
                expose_v[i] = expose[i];
        }
        if (r >= 0 && o->n_expose > 0)
                r = append_strv(m, "expose_ports", expose_v, o->n_expose);
        return r;
}
