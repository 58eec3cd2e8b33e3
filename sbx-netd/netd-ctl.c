/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-netd-ctl: registers one cgroup with sbx-netd, the way the worker does,
 * and holds the registration (the connection and the BPF link fds) until
 * stdin reaches EOF or a SIGTERM/SIGINT arrives; then it unregisters. If
 * sbx-netd goes away meanwhile, it says so and keeps holding the links (the
 * cgroup stays filtered: fail closed) until stdin's EOF or a signal, then
 * exits 3. (The worker kills its VM instead.)
 *
 *   sbx-netd-ctl [--socket PATH] register CGROUP-PATH [--expose tcp|udp:PORT]... --full
 *   sbx-netd-ctl [--socket PATH] register CGROUP-PATH [--expose tcp|udp:PORT]... [DOMAIN...]
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "macro.h"
#include "netd-client.h"
#include "sbx-error.h"

int main(int argc, char *argv[]) {
        const char *socket_path = NETD_CONTROL_SOCKET;
        NetdRegistration reg = NETD_REGISTRATION_NULL;
        _cleanup_(sbx_error_done) SbxError error = {};
        bool full = false;
        int i = 1, r;

        if (argc > 2 && strcmp(argv[1], "--socket") == 0) {
                socket_path = argv[2];
                i = 3;
        }
        if (argc - i < 2 || strcmp(argv[i], "register") != 0) {
                fprintf(stderr, "usage: sbx-netd-ctl [--socket PATH] register CGROUP [--expose tcp|udp:PORT]... "
                                "(--full | DOMAIN...)\n");
                return 2;
        }
        const char *cgroup = argv[i + 1];
        NetdExpose expose[NETD_MAX_EXPOSE];
        size_t n_expose = 0;
        i += 2;
        while (i + 1 < argc && strcmp(argv[i], "--expose") == 0 && n_expose < NETD_MAX_EXPOSE) {
                const char *e = argv[i + 1];
                bool udp = strncmp(e, "udp:", 4) == 0;
                if (!udp && strncmp(e, "tcp:", 4) != 0) {
                        fprintf(stderr, "sbx-netd-ctl: --expose takes tcp:PORT or udp:PORT\n");
                        return 2;
                }
                expose[n_expose++] = (NetdExpose){.port = (uint16_t) atoi(e + 4), .udp = udp};
                i += 2;
        }
        char **domains = argv + i;
        size_t n_domains = (size_t) (argc - i);
        if (n_domains == 1 && strcmp(domains[0], "--full") == 0) {
                full = true;
                n_domains = 0;
        }

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

        r = netd_register(socket_path, cgroup, full, domains, n_domains, expose, n_expose, &reg, &error);
        if (r < 0) {
                fprintf(stderr, "sbx-netd-ctl: %s\n", sbx_error_message(&error));
                return 1;
        }
        printf("registered %llu links=%zu\n", (unsigned long long) reg.cgroup_id, reg.n_link_fds);
        fflush(stdout);

        struct pollfd p[3] = {
                {.fd = STDIN_FILENO, .events = POLLIN},
                {.fd = sfd, .events = POLLIN},
                {.fd = reg.fd, .events = POLLIN},
        };
        bool netd_gone = false;
        for (;;) {
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[2].revents && !netd_gone) {
                        fprintf(stderr, "sbx-netd-ctl: sbx-netd closed the connection; holding the links\n");
                        netd_gone = true;
                        p[2].fd = -1;
                }
                if (p[1].revents)
                        break;
                if (p[0].revents) {
                        char buf[256];
                        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                        if (n <= 0)
                                break;
                }
        }
        if (netd_gone) {
                netd_registration_close(&reg);
                return 3;
        }
        r = netd_unregister(&reg);
        if (r < 0) {
                fprintf(stderr, "sbx-netd-ctl: unregister: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
