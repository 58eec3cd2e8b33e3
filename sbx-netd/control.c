/* SPDX-License-Identifier: Apache-2.0 */
/* The control socket: a unix stream socket on which the worker registers a
 * VM (one per connection) and receives the BPF link fds. Only root and the
 * configured uids may connect (SO_PEERCRED). Protocol (one line each way):
 *
 *   REGISTER full <cgroup-path> [expose...]                  -> OK <cgroup-id> + SCM_RIGHTS link fds
 *   REGISTER domains <cgroup-path> [expose...] [pattern...]  -> OK <cgroup-id> + SCM_RIGHTS link fds
 *
 * where expose is "expose=tcp:PORT" or "expose=udp:PORT" (a hostfwd port on
 * 127.0.0.1) and a pattern is "name" or "*.name".
 *   UNREGISTER                                    -> OK
 *   anything refused                              -> ERR <errno> <message>
 *
 * Closing the connection unregisters the VM too. */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "netd.h"
#include "sbx-error.h"

#define CONTROL_MAX_CONNS 512

struct ControlConn {
        Netd *netd;
        ControlConn *next;
        int fd;
        uid_t uid;
        pid_t pid;
        sd_event_source *io;
        char *buf;
        size_t len;
        NetdVm *vm;
};

static ControlConn *conn_free(ControlConn *c) {
        if (!c)
                return NULL;
        for (ControlConn **i = &c->netd->control_conns; *i; i = &(*i)->next)
                if (*i == c) {
                        *i = c->next;
                        break;
                }
        netd_vm_free(c->vm);
        sd_event_source_disable_unref(c->io);
        safe_close(c->fd);
        free(c->buf);
        free(c);
        return NULL;
}

static int send_line(ControlConn *c, const int *fds, size_t n_fds, const char *fmt, ...) _printf_(4, 5);
static int send_line(ControlConn *c, const int *fds, size_t n_fds, const char *fmt, ...) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * NETD_MAX_LINKS)];
        } control = {};
        char line[NETD_ERROR_MAX + 32];
        va_list ap;
        int len;

        va_start(ap, fmt);
        len = vsnprintf(line, sizeof line - 1, fmt, ap);
        va_end(ap);
        if (len < 0)
                return -EINVAL;
        if ((size_t) len > sizeof line - 2)
                len = (int) sizeof line - 2;
        line[len++] = '\n';

        struct iovec iov = {.iov_base = line, .iov_len = (size_t) len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        if (n_fds > 0) {
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
        }
        /* Short lines on a fresh stream socket: one sendmsg, blocking briefly at most. */
        return sendmsg(c->fd, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static void handle_register(ControlConn *c, char *args) {
        char *words[NETD_MAX_DOMAINS + 2];
        size_t n = 0;
        _cleanup_(sbx_error_done) SbxError error = {};
        int fds[NETD_MAX_LINKS];
        NetdVm *vm;
        int r;

        if (c->vm) {
                send_line(c, NULL, 0, "ERR %d this connection already holds a registration", EEXIST);
                return;
        }
        for (char *save = NULL, *w = strtok_r(args, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                if (n >= ELEMENTSOF(words)) {
                        send_line(c, NULL, 0, "ERR %d too many allowed domains (at most %d)", E2BIG, NETD_MAX_DOMAINS);
                        return;
                }
                words[n++] = w;
        }
        if (n < 2 || (strcmp(words[0], "full") != 0 && strcmp(words[0], "domains") != 0)) {
                send_line(c, NULL, 0, "ERR %d usage: REGISTER full|domains CGROUP [PATTERN...]", EINVAL);
                return;
        }
        bool full = strcmp(words[0], "full") == 0;
        NetdExpose expose[NETD_MAX_EXPOSE];
        size_t n_expose = 0, first = 2;
        for (; first < n && strncmp(words[first], "expose=", 7) == 0; first++) {
                const char *e = words[first] + 7;
                char *end;
                unsigned long port;
                bool udp = strncmp(e, "udp:", 4) == 0;

                if ((!udp && strncmp(e, "tcp:", 4) != 0) || n_expose >= NETD_MAX_EXPOSE) {
                        send_line(c, NULL, 0, "ERR %d invalid or too many expose= entries", EINVAL);
                        return;
                }
                port = strtoul(e + 4, &end, 10);
                if (*end || end == e + 4 || port == 0 || port > 65535) {
                        send_line(c, NULL, 0, "ERR %d invalid port in %s", EINVAL, words[first]);
                        return;
                }
                expose[n_expose++] = (NetdExpose){.port = (uint16_t) port, .udp = udp};
        }
        if (full && first < n) {
                send_line(c, NULL, 0, "ERR %d full access takes no domains", EINVAL);
                return;
        }

        r = netd_vm_new(c->netd, words[1], c->uid, full, words + first, n - first, expose, n_expose, &vm, &error);
        if (r < 0) {
                log_notice("refused registration from pid %d uid %u: %s", (int) c->pid, (unsigned) c->uid,
                           sbx_error_message(&error));
                send_line(c, NULL, 0, "ERR %d %s", -r, sbx_error_message(&error));
                return;
        }
        for (size_t i = 0; i < vm->n_links; i++)
                fds[i] = netd_bpf_link_fd(vm->links[i]);
        r = send_line(c, fds, vm->n_links, "OK %llu", (unsigned long long) vm->cgroup_id);
        if (r < 0) {
                log_info_errno(r, "vm=%s: cannot answer the registration: %m", vm->label);
                netd_vm_free(vm);
                return;
        }
        c->vm = vm;
}

/* Returns false when the connection was freed. */
static bool handle_line(ControlConn *c, char *line) {
        if (strncmp(line, "REGISTER ", 9) == 0)
                handle_register(c, line + 9);
        else if (strcmp(line, "UNREGISTER") == 0) {
                c->vm = netd_vm_free(c->vm);
                send_line(c, NULL, 0, "OK");
        } else {
                send_line(c, NULL, 0, "ERR %d unknown command", EINVAL);
                conn_free(c);
                return false;
        }
        return true;
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ControlConn *c = userdata;
        ssize_t n;

        (void) s;
        (void) revents;
        n = recv(fd, c->buf + c->len, NETD_LINE_MAX - c->len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                if (c->vm)
                        log_info("vm=%s: control connection closed", c->vm->label);
                conn_free(c);
                return 0;
        }
        c->len += (size_t) n;
        for (;;) {
                char *nl = memchr(c->buf, '\n', c->len);
                if (!nl)
                        break;
                *nl = 0;
                size_t used = (size_t) (nl - c->buf) + 1;
                if (!handle_line(c, c->buf))
                        return 0;
                memmove(c->buf, c->buf + used, c->len - used);
                c->len -= used;
        }
        if (c->len >= NETD_LINE_MAX) {
                send_line(c, NULL, 0, "ERR %d line too long", E2BIG);
                conn_free(c);
        }
        return 0;
}

static bool uid_allowed(const Netd *n, uid_t uid) {
        if (uid == 0)
                return true;
        for (size_t i = 0; i < n->n_allow_uids; i++)
                if (n->allow_uids[i] == uid)
                        return true;
        return false;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Netd *n = userdata;
        struct ucred cred;
        socklen_t cl = sizeof cred;
        size_t count = 0;
        ControlConn *c;
        int cfd, r;

        (void) s;
        (void) revents;
        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        for (ControlConn *i = n->control_conns; i; i = i->next)
                count++;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || !uid_allowed(n, cred.uid) ||
            count >= CONTROL_MAX_CONNS) {
                char line[64];
                int k = snprintf(line, sizeof line, "ERR %d not allowed\n", EPERM);
                log_notice("refused control connection from pid %d uid %u", (int) cred.pid, (unsigned) cred.uid);
                (void) send(cfd, line, (size_t) k, MSG_DONTWAIT | MSG_NOSIGNAL);
                safe_close(cfd);
                return 0;
        }
        c = calloc(1, sizeof *c);
        if (!c || !(c->buf = malloc(NETD_LINE_MAX))) {
                free(c);
                safe_close(cfd);
                return 0;
        }
        c->netd = n;
        c->fd = cfd;
        c->uid = cred.uid;
        c->pid = cred.pid;
        c->next = n->control_conns;
        n->control_conns = c;
        r = sd_event_add_io(n->event, &c->io, cfd, EPOLLIN, on_conn_io, c);
        if (r < 0)
                conn_free(c);
        return 0;
}

int netd_control_open(Netd *n) {
        /* Anyone may connect; SO_PEERCRED decides (root and --allow-uid). */
        int r = unix_listen(n->control_path, 64, &n->control_fd);
        if (r < 0)
                return r;
        return sd_event_add_io(n->event, &n->control_source, n->control_fd, EPOLLIN, on_accept, n);
}

void netd_control_close(Netd *n) {
        while (n->control_conns)
                conn_free(n->control_conns);
        n->control_source = sd_event_source_disable_unref(n->control_source);
        if (n->control_fd >= 0)
                (void) unlink(n->control_path);
        n->control_fd = safe_close(n->control_fd);
}
