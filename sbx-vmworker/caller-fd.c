/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller-fd.h"
#include "fdio.h"
#include "macro.h"

static int on_caller_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CallerFd *f = userdata;
        (void) s;
        (void) fd;
        (void) revents;

        f->on_ready(f, f->userdata);
        return 0;
}

static int on_caller_defer(sd_event_source *s, void *userdata) {
        CallerFd *f = userdata;
        (void) s;

        f->on_ready(f, f->userdata);
        return 0;
}

int caller_fd_open(CallerFd *f, sd_event *event, int fd, bool output, CallerFdHandler on_ready, void *userdata) {
        struct stat st;
        int r;

        *f = (CallerFd) { .fd = fd, .output = output, .on_ready = on_ready, .userdata = userdata };
        if (fstat(fd, &st) < 0) {
                r = -errno;
                goto fail;
        }
        if (S_ISDIR(st.st_mode)) {
                r = -EISDIR;
                goto fail;
        }
        f->socket = S_ISSOCK(st.st_mode);

        /* Refuse an fd opened the wrong way round before the guest is asked anything. */
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0) {
                r = -errno;
                goto fail;
        }
        if ((flags & O_ACCMODE) != O_RDWR && (flags & O_ACCMODE) != (output ? O_WRONLY : O_RDONLY)) {
                r = -EBADF;
                goto fail;
        }

        r = sd_event_add_io(event, &f->source, fd, output ? EPOLLOUT : EPOLLIN, on_caller_io, f);
        if (r == -EPERM) {
                /* A regular file (or a block device): always ready, I/O never waits for a peer. */
                r = sd_event_add_defer(event, &f->source, on_caller_defer, f);
                f->pollable = false;
        } else
                f->pollable = true;
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(f->source, "caller-fd");
        r = sd_event_source_set_enabled(f->source, SD_EVENT_OFF);
        if (r < 0)
                goto fail;
        return 0;

fail:
        caller_fd_close(f);
        return r;
}

int caller_fd_watch(CallerFd *f, bool on) {
        if (!f->source)
                return -EBADF;
        return sd_event_source_set_enabled(f->source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

/* Whether fd is ready for events now, without waiting. */
static int ready_now(int fd, short events) {
        struct pollfd p = { .fd = fd, .events = events };
        int n;

        do
                n = poll(&p, 1, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return n > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
}

ssize_t caller_fd_read(CallerFd *f, void *buf, size_t n) {
        ssize_t k;

        if (f->fd < 0)
                return -EBADF;
        if (f->socket)
                k = recv(f->fd, buf, n, MSG_DONTWAIT);
        else {
                if (f->pollable) {
                        int r = ready_now(f->fd, POLLIN);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return -EAGAIN;
                }
                /* After POLLIN a pipe or tty read returns what is there without waiting. */
                k = read(f->fd, buf, n);
        }
        if (k < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return k;
}

ssize_t caller_fd_write(CallerFd *f, const void *buf, size_t n) {
        const uint8_t *p = buf;
        size_t done = 0;

        if (f->fd < 0)
                return -EBADF;
        if (f->socket) {
                ssize_t k = send(f->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k < 0)
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                return k;
        }
        while (done < n) {
                size_t chunk = n - done;
                if (f->pollable) {
                        /* POLLOUT on a pipe promises room for one page: PIPE_BUF bytes never wait. */
                        int r = ready_now(f->fd, POLLOUT);
                        if (r < 0)
                                return done > 0 ? (ssize_t) done : r;
                        if (r == 0)
                                break;
                        chunk = MIN(chunk, (size_t) PIPE_BUF);
                }
                ssize_t k = write(f->fd, p + done, chunk);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EWOULDBLOCK)
                                break;
                        return done > 0 ? (ssize_t) done : -errno;
                }
                done += (size_t) k;
        }
        return done > 0 ? (ssize_t) done : -EAGAIN;
}

void caller_fd_close(CallerFd *f) {
        f->source = sd_event_source_disable_unref(f->source);
        f->fd = safe_close(f->fd);
}
