/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "fdsink.h"
#include "log.h"
#include "macro.h"

struct FdSink {
        int fd;
        bool is_socket;
        bool blocking_ok; /* regular files and the like never block for long */
        bool broken;
        sd_event_source *source;
        char *buf;
        size_t len, off;
        fdsink_drained_t drained;
        void *userdata;
};

static int dup_cloexec(int fd) {
        int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        return r < 0 ? -errno : r;
}

static int sink_open(int fd, bool *ret_socket, bool *ret_blocking_ok) {
        struct stat st;
        char path[64];

        if (fstat(fd, &st) < 0)
                return -errno;
        *ret_socket = S_ISSOCK(st.st_mode);
        *ret_blocking_ok = false;
        if (S_ISSOCK(st.st_mode))
                return dup_cloexec(fd);
        if (S_ISFIFO(st.st_mode) || isatty(fd)) {
                snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
                int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (nfd >= 0)
                        return nfd;
                if (errno == ENXIO) /* a pipe whose reader is gone */
                        return -EPIPE;
                log_debug_errno(errno, "Cannot reopen output fd nonblocking, writing small chunks: %m");
                return dup_cloexec(fd);
        }
        *ret_blocking_ok = true;
        return dup_cloexec(fd);
}

static int sink_flush(FdSink *s);

static int on_writable(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        FdSink *s = userdata;
        (void) src;
        (void) fd;
        (void) revents;
        return sink_flush(s);
}

static void sink_set_broken(FdSink *s) {
        s->broken = true;
        s->len = s->off = 0;
}

static int sink_flush(FdSink *s) {
        int fl = fcntl(s->fd, F_GETFL);
        bool nonblock = fl >= 0 && (fl & O_NONBLOCK);

        while (s->off < s->len && !s->broken) {
                size_t n = s->len - s->off;
                ssize_t k;

                if (s->is_socket)
                        k = send(s->fd, s->buf + s->off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
                else {
                        /* Without O_NONBLOCK, a write of at most PIPE_BUF after EPOLLOUT does not block. */
                        if (!nonblock && !s->blocking_ok)
                                n = MIN(n, (size_t) 512);
                        k = write(s->fd, s->buf + s->off, n);
                }
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        log_debug_errno(errno, "Output reader went away, dropping further output: %m");
                        sink_set_broken(s);
                        break;
                }
                s->off += (size_t) k;
                if (!nonblock && !s->blocking_ok && !s->is_socket && s->off < s->len)
                        break; /* wait for the next EPOLLOUT */
        }

        if (s->off >= s->len || s->broken) {
                s->off = s->len = 0;
                if (s->source)
                        sd_event_source_set_enabled(s->source, SD_EVENT_OFF);
                if (s->drained)
                        s->drained(s->userdata);
        } else if (s->source)
                sd_event_source_set_enabled(s->source, SD_EVENT_ON);
        return 0;
}

int fdsink_new(sd_event *event, int fd, fdsink_drained_t drained, void *userdata, FdSink **ret) {
        _cleanup_free_ FdSink *s = calloc(1, sizeof(FdSink));
        int r;

        if (!s)
                return -ENOMEM;
        s->drained = drained;
        s->userdata = userdata;
        s->fd = sink_open(fd, &s->is_socket, &s->blocking_ok);
        if (s->fd == -EPIPE) {
                s->broken = true;
        } else if (s->fd < 0)
                return s->fd;
        else if (!s->blocking_ok) {
                r = sd_event_add_io(event, &s->source, s->fd, EPOLLOUT, on_writable, s);
                if (r < 0) {
                        /* epoll refuses some fd types; those do not block either. */
                        s->blocking_ok = true;
                        s->source = NULL;
                } else
                        sd_event_source_set_enabled(s->source, SD_EVENT_OFF);
        }
        *ret = TAKE_PTR(s);
        return 0;
}

FdSink *fdsink_free(FdSink *s) {
        if (!s)
                return NULL;
        sd_event_source_disable_unref(s->source);
        safe_close(s->fd);
        free(s->buf);
        free(s);
        return NULL;
}

int fdsink_write(FdSink *s, const void *data, size_t n) {
        if (s->broken || n == 0)
                return 0;
        if (s->blocking_ok) {
                if (loop_write(s->fd, data, n) < 0)
                        sink_set_broken(s);
                return 0;
        }
        if (s->off > 0 && s->off == s->len)
                s->off = s->len = 0;
        char *b = realloc(s->buf, s->len + n);
        if (!b)
                return -ENOMEM;
        s->buf = b;
        memcpy(s->buf + s->len, data, n);
        s->len += n;
        /* Flush right away; the drained callback must not fire from inside a write. */
        fdsink_drained_t d = s->drained;
        s->drained = NULL;
        sink_flush(s);
        s->drained = d;
        return 0;
}

bool fdsink_pending(const FdSink *s) {
        return s && !s->broken && s->off < s->len;
}
