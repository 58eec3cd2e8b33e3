/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fdio.h"
#include "macro.h"
#include "netd-client.h"
#include "sbx-error.h"

#define NETD_REPLY_TIMEOUT_SEC 10

static int netd_connect(const char *path) {
        struct timeval tv = {.tv_sec = NETD_REPLY_TIMEOUT_SEC};
        _cleanup_close_ int fd = -EBADF;

        int r = unix_connect(path, &fd);
        if (r < 0)
                return r;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
                return -errno;
        return TAKE_FD(fd);
}

static int send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads one reply line, collecting passed fds into r (if given). */
static int read_reply(int fd, char *line, size_t size, NetdRegistration *r) {
        size_t len = 0;

        for (;;) {
                union {
                        struct cmsghdr h;
                        char buf[CMSG_SPACE(sizeof(int) * NETD_MAX_LINKS)];
                } control;
                struct iovec iov = {.iov_base = line + len, .iov_len = size - 1 - len};
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = sizeof control,
                };
                ssize_t k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *fds = (int *) CMSG_DATA(c);
                        for (size_t i = 0; i < nfd; i++) {
                                if (r && r->n_link_fds < NETD_MAX_LINKS)
                                        r->link_fds[r->n_link_fds++] = fds[i];
                                else
                                        safe_close(fds[i]);
                        }
                }
                if (mh.msg_flags & MSG_CTRUNC)
                        return -EBADMSG;
                if (k == 0)
                        return -ECONNRESET;
                len += (size_t) k;
                char *nl = memchr(line, '\n', len);
                if (nl) {
                        *nl = 0;
                        return 0;
                }
                if (len >= size - 1)
                        return -EBADMSG;
        }
}

/* "ERR <errno> <text>" -> -errno, text in error. */
static int parse_error(const char *line, SbxError *error) {
        char *end;
        long e;

        if (strncmp(line, "ERR ", 4) != 0)
                return sbx_error_set(error, -EBADMSG, "unexpected reply from sbx-netd");
        e = strtol(line + 4, &end, 10);
        if (e <= 0 || e > 4095)
                e = EIO;
        return sbx_error_set(error, (int) -e, "sbx-netd: %.*s", NETD_ERROR_MAX,
                             *end == ' ' ? end + 1 : "error");
}

int netd_register(const char *socket_path, const char *cgroup_path, bool full, char *const *domains, size_t n_domains,
                  const NetdExpose *expose, size_t n_expose, NetdRegistration *ret, SbxError *error) {
        NetdRegistration r = NETD_REGISTRATION_NULL;
        _cleanup_free_ char *req = NULL;
        char line[512];
        size_t len = 0, cap;
        int fd, k;

        if (n_domains > NETD_MAX_DOMAINS)
                return sbx_error_set(error, -E2BIG, "too many allowed domains (at most %d)", NETD_MAX_DOMAINS);
        if (!cgroup_path || strpbrk(cgroup_path, " \t\r\n"))
                return sbx_error_set(error, -EINVAL, "invalid cgroup path");
        if (n_expose > NETD_MAX_EXPOSE)
                return sbx_error_set(error, -E2BIG, "too many exposed ports (at most %d)", NETD_MAX_EXPOSE);
        cap = 64 + strlen(cgroup_path) + n_expose * 24;
        for (size_t i = 0; !full && i < n_domains; i++) {
                if (!domains[i] || !domains[i][0] || strpbrk(domains[i], " \t\r\n"))
                        return sbx_error_set(error, -EINVAL, "invalid allowed domain");
                cap += strlen(domains[i]) + 1;
        }
        if (cap > NETD_LINE_MAX)
                return sbx_error_set(error, -E2BIG, "allowed domains too long");
        req = malloc(cap);
        if (!req)
                return sbx_error_set_errno(error, -ENOMEM);
        len = (size_t) snprintf(req, cap, "REGISTER %s %s", full ? "full" : "domains", cgroup_path);
        for (size_t i = 0; i < n_expose; i++)
                len += (size_t) snprintf(req + len, cap - len, " expose=%s:%u", expose[i].udp ? "udp" : "tcp",
                                         expose[i].port);
        for (size_t i = 0; !full && i < n_domains; i++)
                len += (size_t) snprintf(req + len, cap - len, " %s", domains[i]);
        len += (size_t) snprintf(req + len, cap - len, "\n");

        fd = netd_connect(socket_path);
        if (fd < 0)
                return sbx_error_set(error, fd, "sbx-netd is not running (%s: %s); networked VMs are refused",
                                     socket_path, strerror(-fd));
        r.fd = fd;

        /* netd may refuse the caller before reading the request: read its answer even if sending failed. */
        k = send_all(fd, req, len);
        int k2 = read_reply(fd, line, sizeof line, &r);
        if (k2 >= 0)
                k = 0;
        else if (k >= 0)
                k = k2;
        if (k < 0) {
                netd_registration_close(&r);
                return sbx_error_set(error, k, "sbx-netd did not answer: %s", strerror(-k));
        }
        if (strncmp(line, "OK ", 3) != 0) {
                k = parse_error(line, error);
                netd_registration_close(&r);
                return k;
        }
        r.cgroup_id = strtoull(line + 3, NULL, 10);
        if (r.n_link_fds == 0) {
                netd_registration_close(&r);
                return sbx_error_set(error, -EBADMSG, "sbx-netd passed no BPF links");
        }
        *ret = r;
        return 0;
}

void netd_registration_close(NetdRegistration *r) {
        for (size_t i = 0; i < r->n_link_fds; i++)
                safe_close(r->link_fds[i]);
        r->n_link_fds = 0;
        r->fd = safe_close(r->fd);
}

int netd_unregister(NetdRegistration *r) {
        char line[128];
        int k;

        if (r->fd < 0)
                return -EBADF;
        k = send_all(r->fd, "UNREGISTER\n", 11);
        if (k >= 0)
                k = read_reply(r->fd, line, sizeof line, NULL);
        if (k >= 0 && strcmp(line, "OK") != 0)
                k = -EBADMSG;
        netd_registration_close(r);
        return k;
}
