/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The fd a session file request brings along (SCM_RIGHTS): the caller's data
 * for a write into the VM, or where a read from the VM goes. It may be a
 * pipe, a socket, a terminal or a regular file, and it is shared with the
 * caller, so its file status flags are never changed (no O_NONBLOCK: that
 * would leak into the caller's copy, e.g. a shell's stdout). Instead:
 *
 *   pollable fds (pipes, sockets, ttys): readiness from sd-event, then at most
 *     what cannot block: one read() after POLLIN, writes of at most PIPE_BUF
 *     while POLLOUT holds (sockets: MSG_DONTWAIT);
 *   regular files (epoll refuses them): always "ready", plain read()/write().
 *
 * So a caller that stops reading or writing never blocks the worker; the
 * owner bounds how long it waits. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

typedef struct CallerFd CallerFd;
typedef void (*CallerFdHandler)(CallerFd *f, void *userdata);

struct CallerFd {
        int fd;
        bool output;   /* we write into it (a read from the VM) */
        bool pollable; /* epoll accepts it */
        bool socket;
        sd_event_source *source; /* io source, or a defer source for regular files */
        CallerFdHandler on_ready;
        void *userdata;
};

/* Takes fd (also on failure). output: the worker writes into it. The readiness callback starts off. */
int caller_fd_open(CallerFd *f, sd_event *event, int fd, bool output, CallerFdHandler on_ready, void *userdata);
/* Turns the readiness callback on or off. */
int caller_fd_watch(CallerFd *f, bool on);
/* Bytes read, 0 at EOF, -EAGAIN when nothing is there now, or -errno. */
ssize_t caller_fd_read(CallerFd *f, void *buf, size_t n);
/* Bytes written (> 0), -EAGAIN when nothing fits now, -EPIPE when the reader is gone, or -errno. */
ssize_t caller_fd_write(CallerFd *f, const void *buf, size_t n);
void caller_fd_close(CallerFd *f);
static inline bool caller_fd_is_open(const CallerFd *f) {
        return f->fd >= 0;
}
