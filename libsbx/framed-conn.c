/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

/* Every entry point that calls the owner's handlers pushes a guard: a handler may close (and free)
 * the connection, and then nothing may touch it again. */
/* The guard outlives its stack frame in c->guard only while c is gone: guard_pop() unlinks it
 * whenever c still exists. GCC cannot see that. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
static void guard_push(FramedConn *c, FramedConnGuard *g) {
        *g = (FramedConnGuard) {.alive = true, .prev = c->guard};
        c->guard = g;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

static void guard_pop(FramedConn *c, FramedConnGuard *g) {
        if (g->alive)
                c->guard = g->prev;
}

static void framed_conn_drop_out_fds(FramedConn *c) {
        for (size_t i = 0; i < c->n_out_fds; i++)
                for (size_t j = 0; j < c->out_fds[i].n; j++)
                        safe_close(c->out_fds[i].fds[j]);
        c->n_out_fds = 0;
}

/* (Re)starts the stall deadline while output waits, stops it when none does. */
static void framed_conn_arm_stall(FramedConn *c) {
        if (!c->stall_timer)
                return;
        if (c->closed || c->out_end == c->out_start) {
                (void) sd_event_source_set_enabled(c->stall_timer, SD_EVENT_OFF);
                return;
        }
        uint64_t now = 0;
        (void) sd_event_now(c->event, CLOCK_MONOTONIC, &now);
        (void) sd_event_source_set_time(c->stall_timer, now + c->stall_usec);
        (void) sd_event_source_set_enabled(c->stall_timer, SD_EVENT_ONESHOT);
}

static void framed_conn_fail(FramedConn *c, int error) {
        if (c->closed)
                return;
        c->stopped = true;
        /* After garbage from the peer we stop reading, but can still tell it why. */
        if (error != -EBADMSG) {
                c->closed = true;
                c->out_start = c->out_end = 0;
                framed_conn_drop_out_fds(c);
                framed_conn_arm_stall(c);
        }
        (void) framed_conn_update_events(c);
        if (c->on_close && !c->close_reported) {
                c->close_reported = true;
                c->on_close(c, error, c->userdata);
        }
}

/* One send: plain bytes up to the next frame that carries fds, or that frame's first bytes with
 * its fds attached. Returns bytes written, or -errno (-EAGAIN included). */
static ssize_t framed_conn_send_chunk(FramedConn *c) {
        size_t len = c->out_end - c->out_start;
        FramedConnFds *f = c->n_out_fds > 0 ? &c->out_fds[0] : NULL;

        if (f && f->at > c->out_sent)
                len = MIN(len, (size_t) (f->at - c->out_sent));
        if (!f || f->at != c->out_sent) {
                ssize_t n = send(c->fd, c->out + c->out_start, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                return n < 0 ? -errno : n;
        }

        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int) * SBX_FRAME_READER_FDS_MAX)];
        } control = {};
        struct iovec iov = {.iov_base = c->out + c->out_start, .iov_len = len};
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = CMSG_SPACE(sizeof(int) * f->n),
        };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * f->n);
        memcpy(CMSG_DATA(cm), f->fds, sizeof(int) * f->n);

        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                return -errno;
        /* The fds went out with the first byte: they are the peer's now. */
        for (size_t j = 0; j < f->n; j++)
                safe_close(f->fds[j]);
        c->n_out_fds--;
        memmove(c->out_fds, c->out_fds + 1, c->n_out_fds * sizeof c->out_fds[0]);
        return n;
}

/* Writes queued bytes until the socket would block. */
static int framed_conn_write_some(FramedConn *c) {
        bool progress = false;

        while (c->out_end > c->out_start) {
                ssize_t n = framed_conn_send_chunk(c);
                if (n == -EINTR)
                        continue;
                if (n == -EAGAIN)
                        break;
                if (n < 0)
                        return (int) n;
                c->out_start += (size_t) n;
                c->out_sent += (uint64_t) n;
                progress = true;
        }
        if (c->out_end == c->out_start)
                c->out_start = c->out_end = 0;
        if (progress || c->out_end == c->out_start)
                framed_conn_arm_stall(c);
        return 0;
}

/* Hands complete frames to on_frame. Returns false when a handler closed the connection. */
static bool framed_conn_dispatch(FramedConn *c, FramedConnGuard *g) {
        while (!c->stopped && !c->paused) {
                uint8_t type;
                const uint8_t *payload;
                size_t len;

                int r = sbx_frame_reader_next(&c->reader, &type, &payload, &len);
                if (r == 0)
                        return true;
                if (r < 0) {
                        framed_conn_fail(c, r);
                        return g->alive;
                }
                r = c->on_frame(c, type, payload, len, c->userdata);
                if (!g->alive)
                        return false;
                if (r == FRAMED_CONN_PAUSE) {
                        c->paused = true;
                        (void) framed_conn_update_events(c);
                } else if (r != 0)
                        framed_conn_stop(c);
        }
        return true;
}

/* One read, then every complete frame. Returns false when nothing more can be read now (or the
 * connection was closed: check g). */
static bool framed_conn_read_once(FramedConn *c, FramedConnGuard *g) {
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
        if (!framed_conn_dispatch(c, g) || c->fd < 0)
                return false;
        if (r == 0 || r == -EBADMSG) {
                framed_conn_fail(c, r);
                return false;
        }
        return !c->stopped && !c->paused;
}

static int on_framed_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FramedConn *c = userdata;
        FramedConnGuard g;
        (void) s;
        (void) fd;

        guard_push(c, &g);
        if (revents & EPOLLOUT) {
                int r = framed_conn_write_some(c);
                if (r < 0) {
                        log_debug_errno(r, "Writing to the %s failed: %m", c->name);
                        framed_conn_fail(c, r);
                        goto out;
                }
                if (c->out_end == c->out_start && c->on_drain) {
                        (void) framed_conn_update_events(c);
                        c->on_drain(c, c->userdata);
                        if (!g.alive || c->fd < 0 || c->closed)
                                goto out;
                }
        }
        if (!c->stopped && !c->paused && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                (void) framed_conn_read_once(c, &g);
        else if (c->stopped && !c->closed && (revents & (EPOLLHUP | EPOLLERR)))
                /* Not reading any more, but the peer is gone: stop writing too. */
                framed_conn_fail(c, -EPIPE);
        if (g.alive && c->fd >= 0)
                (void) framed_conn_update_events(c);
out:
        guard_pop(c, &g);
        return 0;
}

static int on_framed_conn_stall(sd_event_source *s, uint64_t usec, void *userdata) {
        FramedConn *c = userdata;
        (void) s;
        (void) usec;

        FramedConnGuard g;

        log_warning("The %s has not read its %zu queued bytes for %.1f s: dropping it.", c->name,
                    framed_conn_queued(c), (double) c->stall_usec / 1e6);
        guard_push(c, &g);
        framed_conn_fail(c, -ETIMEDOUT);
        guard_pop(c, &g);
        return 0;
}

void framed_conn_init(FramedConn *c) {
        *c = (FramedConn) {.fd = -EBADF, .stopped = true, .closed = true};
}

int framed_conn_open(FramedConn *c, sd_event *event, const char *name, int fd, size_t max_payload, size_t out_max,
                     FramedConnFrameHandler on_frame, FramedConnCloseHandler on_close, void *userdata) {
        int r;

        *c = (FramedConn) {
                .name = name,
                .fd = fd,
                .event = event,
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

int framed_conn_set_stall_timeout(FramedConn *c, uint64_t usec) {
        c->stall_usec = usec;
        if (usec == 0) {
                c->stall_timer = sd_event_source_disable_unref(c->stall_timer);
                return 0;
        }
        if (!c->stall_timer) {
                int r = sd_event_add_time(c->event, &c->stall_timer, CLOCK_MONOTONIC, UINT64_MAX, 0,
                                          on_framed_conn_stall, c);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_enabled(c->stall_timer, SD_EVENT_OFF);
        }
        framed_conn_arm_stall(c);
        return 0;
}

static void guards_kill(FramedConn *c) {
        for (FramedConnGuard *g = c->guard; g; g = g->prev)
                g->alive = false;
        c->guard = NULL;
}

void framed_conn_move(FramedConn *dst, FramedConn *src, void *userdata) {
        /* A handler running on src must not touch it (or dst) afterwards. */
        guards_kill(src);
        *dst = *src;
        dst->userdata = userdata;
        if (dst->io)
                (void) sd_event_source_set_userdata(dst->io, dst);
        if (dst->stall_timer)
                (void) sd_event_source_set_userdata(dst->stall_timer, dst);
        framed_conn_init(src);
}

void framed_conn_close(FramedConn *c) {
        guards_kill(c);
        c->io = sd_event_source_disable_unref(c->io);
        c->stall_timer = sd_event_source_disable_unref(c->stall_timer);
        c->fd = safe_close(c->fd);
        sbx_frame_reader_done(&c->reader);
        framed_conn_drop_out_fds(c);
        free(c->out);
        c->out = NULL;
        c->out_start = c->out_end = c->out_alloc = 0;
        c->stopped = c->closed = true;
}

void framed_conn_resume(FramedConn *c) {
        if (!c->paused)
                return;
        FramedConnGuard g;

        c->paused = false;
        guard_push(c, &g);
        if (framed_conn_dispatch(c, &g) && c->fd >= 0)
                (void) framed_conn_update_events(c);
        guard_pop(c, &g);
}

void framed_conn_stop(FramedConn *c) {
        c->stopped = true;
        (void) framed_conn_update_events(c);
}

static int framed_conn_queue(FramedConn *c, const SbxMsg *m) {
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
        return 0;
}

/* Finishes m, queues it (with dups of fds, if any, riding on its first byte) and writes what the
 * socket takes now. A write error closes the connection from the event loop (the socket stays
 * writable, so EPOLLOUT brings it there): callers never see on_close re-entered. */
static int framed_conn_enqueue(FramedConn *c, SbxMsg *m, const int *fds, size_t n_fds) {
        FramedConnFds f = {.at = c->out_sent + (c->out_end - c->out_start), .n = n_fds};
        int r;

        r = sbx_msg_finish(m);
        if (r < 0)
                return r;
        if (c->fd < 0 || c->closed)
                return -EPIPE;
        if (n_fds > 0 && c->n_out_fds >= FRAMED_CONN_FDS_QUEUE_MAX)
                return -ENOBUFS;
        for (size_t i = 0; i < n_fds; i++) {
                f.fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (f.fds[i] < 0) {
                        r = -errno;
                        for (size_t j = 0; j < i; j++)
                                safe_close(f.fds[j]);
                        return r;
                }
        }
        bool was_empty = c->out_end == c->out_start;
        r = framed_conn_queue(c, m);
        if (r < 0) {
                for (size_t i = 0; i < n_fds; i++)
                        safe_close(f.fds[i]);
                return r;
        }
        if (n_fds > 0)
                c->out_fds[c->n_out_fds++] = f;
        if (was_empty)
                framed_conn_arm_stall(c);

        r = framed_conn_write_some(c);
        if (r < 0)
                log_debug_errno(r, "Writing to the %s failed: %m", c->name);
        (void) framed_conn_update_events(c);
        return 0;
}

int framed_conn_send(FramedConn *c, SbxMsg *m) {
        return framed_conn_enqueue(c, m, NULL, 0);
}

int framed_conn_send_with_fds(FramedConn *c, SbxMsg *m, const int *fds, size_t n_fds) {
        if (n_fds == 0 || n_fds > SBX_FRAME_READER_FDS_MAX)
                return -EINVAL;
        return framed_conn_enqueue(c, m, fds, n_fds);
}

int framed_conn_flush(FramedConn *c, uint64_t timeout_usec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;

        while (!c->closed && c->fd >= 0 && c->out_end > c->out_start) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;

                struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
                int n = poll(&pfd, 1, (int) MIN((deadline - now + 999) / 1000, (uint64_t) 1000));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n <= 0)
                        continue;
                int r = framed_conn_write_some(c);
                if (r < 0) {
                        FramedConnGuard g;
                        guard_push(c, &g);
                        framed_conn_fail(c, r);
                        guard_pop(c, &g);
                        return r;
                }
        }
        return c->closed ? -EPIPE : 0;
}

void framed_conn_drain(FramedConn *c) {
        FramedConnGuard g;

        if (c->fd < 0)
                return;
        guard_push(c, &g);
        while (framed_conn_read_once(c, &g) && !c->stopped && !c->paused)
                ;
        guard_pop(c, &g);
}
