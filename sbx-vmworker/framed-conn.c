/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fdio.h"
#include "framed-conn.h"
#include "log.h"
#include "macro.h"

static int framed_conn_update_events(FramedConn *c) {
        uint32_t events = 0;

        if (!c->io)
                return 0;
        if (!c->stopped && !c->paused)
                events |= EPOLLIN;
        if (!c->closed && c->out_end > c->out_start)
                events |= EPOLLOUT;
        if (events == 0)
                return sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        int r = sd_event_source_set_io_events(c->io, events);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(c->io, SD_EVENT_ON);
}

static void framed_conn_fail(FramedConn *c, int error) {
        if (c->closed)
                return;
        c->stopped = true;
        /* After garbage from the peer we stop reading, but can still tell it why. */
        if (error != -EBADMSG) {
                c->closed = true;
                c->out_start = c->out_end = 0;
        }
        (void) framed_conn_update_events(c);
        if (c->on_close && !c->close_reported) {
                c->close_reported = true;
                c->on_close(c, error, c->userdata);
        }
}

/* Writes queued bytes until the socket would block. */
static int framed_conn_write_some(FramedConn *c) {
        while (c->out_end > c->out_start) {
                ssize_t n = send(c->fd, c->out + c->out_start, c->out_end - c->out_start,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                c->out_start += (size_t) n;
        }
        c->out_start = c->out_end = 0;
        return 0;
}

static void framed_conn_dispatch(FramedConn *c) {
        while (!c->stopped && !c->paused) {
                uint8_t type;
                const uint8_t *payload;
                size_t len;

                int r = sbx_frame_reader_next(&c->reader, &type, &payload, &len);
                if (r == 0)
                        return;
                if (r < 0) {
                        framed_conn_fail(c, r);
                        return;
                }
                r = c->on_frame(c, type, payload, len, c->userdata);
                if (r == FRAMED_CONN_PAUSE) {
                        c->paused = true;
                        (void) framed_conn_update_events(c);
                } else if (r != 0)
                        framed_conn_stop(c);
        }
}

/* One read, then every complete frame. Returns false when nothing more can be read now. */
static bool framed_conn_read_once(FramedConn *c) {
        int r = c->recv_fds ? sbx_frame_reader_fill_with_fds(&c->reader, c->fd) : sbx_frame_reader_fill(&c->reader, c->fd);
        if (r == -EAGAIN || r == -EINTR)
                return false;
        if (r == -EMFILE) /* more fds than frames can use: garbage */
                r = -EBADMSG;
        if (r < 0 && r != -EBADMSG) {
                framed_conn_fail(c, r);
                return false;
        }
        /* Frames that were already complete go first, EOF or not. */
        framed_conn_dispatch(c);
        if (r == 0 || r == -EBADMSG) {
                framed_conn_fail(c, r);
                return false;
        }
        return !c->stopped && !c->paused;
}

static int on_framed_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FramedConn *c = userdata;
        (void) s;
        (void) fd;

        if (revents & EPOLLOUT) {
                int r = framed_conn_write_some(c);
                if (r < 0) {
                        log_debug_errno(r, "Writing to the %s failed: %m", c->name);
                        framed_conn_fail(c, r);
                        return 0;
                }
                if (c->out_end == c->out_start && c->on_drain) {
                        (void) framed_conn_update_events(c);
                        c->on_drain(c, c->userdata);
                        if (c->fd < 0 || c->closed)
                                return 0;
                }
        }
        if (!c->stopped && !c->paused && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                (void) framed_conn_read_once(c);
        else if (c->stopped && !c->closed && (revents & (EPOLLHUP | EPOLLERR)))
                /* Not reading any more, but the peer is gone: stop writing too. */
                framed_conn_fail(c, -EPIPE);
        (void) framed_conn_update_events(c);
        return 0;
}

int framed_conn_open(FramedConn *c, sd_event *event, const char *name, int fd, size_t max_payload, size_t out_max,
                     FramedConnFrameHandler on_frame, FramedConnCloseHandler on_close, void *userdata) {
        int r;

        *c = (FramedConn) {
                .name = name,
                .fd = fd,
                .out_max = out_max,
                .on_frame = on_frame,
                .on_close = on_close,
                .userdata = userdata,
        };
        sbx_frame_reader_init(&c->reader, max_payload);

        r = fd_set_nonblock(fd, 1);
        if (r < 0)
                return r;
        r = sd_event_add_io(event, &c->io, fd, EPOLLIN, on_framed_conn_io, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->io, name);
        return 0;
}

void framed_conn_close(FramedConn *c) {
        c->io = sd_event_source_disable_unref(c->io);
        c->fd = safe_close(c->fd);
        sbx_frame_reader_done(&c->reader);
        free(c->out);
        c->out = NULL;
        c->out_start = c->out_end = c->out_alloc = 0;
        c->stopped = c->closed = true;
}

void framed_conn_resume(FramedConn *c) {
        if (!c->paused)
                return;
        c->paused = false;
        framed_conn_dispatch(c);
        (void) framed_conn_update_events(c);
}

void framed_conn_stop(FramedConn *c) {
        c->stopped = true;
        (void) framed_conn_update_events(c);
}

int framed_conn_send(FramedConn *c, SbxMsg *m) {
        int r;

        r = sbx_msg_finish(m);
        if (r < 0)
                return r;
        if (c->fd < 0 || c->closed)
                return -EPIPE;

        size_t queued = c->out_end - c->out_start;
        if (queued + m->len > c->out_max)
                return -ENOBUFS;
        if (c->out_start > 0) {
                memmove(c->out, c->out + c->out_start, queued);
                c->out_start = 0;
                c->out_end = queued;
        }
        if (c->out_alloc - c->out_end < m->len) {
                size_t want = MAX(c->out_end + m->len, c->out_alloc * 2);
                uint8_t *p = realloc(c->out, want);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_alloc = want;
        }
        memcpy(c->out + c->out_end, m->data, m->len);
        c->out_end += m->len;

        r = framed_conn_write_some(c);
        if (r < 0) {
                log_debug_errno(r, "Writing to the %s failed: %m", c->name);
                framed_conn_fail(c, r);
                return r;
        }
        (void) framed_conn_update_events(c);
        return 0;
}

int framed_conn_flush(FramedConn *c, uint64_t timeout_usec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;

        while (!c->closed && c->fd >= 0 && c->out_end > c->out_start) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;

                struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
                int n = poll(&pfd, 1, (int) MIN((deadline - now + 999) / 1000, (uint64_t) 1000));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n <= 0)
                        continue;
                int r = framed_conn_write_some(c);
                if (r < 0) {
                        framed_conn_fail(c, r);
                        return r;
                }
        }
        return c->closed ? -EPIPE : 0;
}

void framed_conn_drain(FramedConn *c) {
        if (c->fd < 0)
                return;
        while (!c->stopped && !c->paused && framed_conn_read_once(c))
                ;
}
