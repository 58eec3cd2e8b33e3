/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A non-blocking, framed (frame.h) stream socket driven by sd-event, the one way every daemon
 * talks to a peer: frames are read incrementally and handed to on_frame; outgoing frames (with
 * fds attached, if any) are queued, bounded, and written as the peer accepts them. A peer that
 * stops reading can never block the caller's event loop: when its queue makes no progress within
 * the stall deadline, the connection is closed with -ETIMEDOUT. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "frame.h"

typedef struct FramedConn FramedConn;

/* Returns 0 to keep reading, FRAMED_CONN_PAUSE to stop dispatching until framed_conn_resume(),
 * anything else to stop dispatching frames for good. */
#define FRAMED_CONN_PAUSE 2
typedef int (*FramedConnFrameHandler)(FramedConn *c, uint8_t type, const uint8_t *payload, size_t len,
                                      void *userdata);
/* The peer is gone or unusable: 0 on EOF, -EBADMSG for a malformed stream (writing still works, to
 * report it), -ETIMEDOUT when the peer stopped draining its queue, another -errno on I/O errors.
 * Called at most once, always from the event loop, never from inside framed_conn_send(). */
typedef void (*FramedConnCloseHandler)(FramedConn *c, int error, void *userdata);
/* Optional: everything queued has been written. */
typedef void (*FramedConnDrainHandler)(FramedConn *c, void *userdata);

/* Frames whose fds travel with them (SCM_RIGHTS on the frame's first byte). */
typedef struct FramedConnFds {
        uint64_t at; /* stream position of the frame's first byte */
        int fds[SBX_FRAME_READER_FDS_MAX];
        size_t n;
} FramedConnFds;

#define FRAMED_CONN_FDS_QUEUE_MAX 16u

/* Lives on the stack of each entry point that calls handlers; see framed-conn.c. */
typedef struct FramedConnGuard FramedConnGuard;
struct FramedConnGuard {
        bool alive;
        FramedConnGuard *prev;
};

struct FramedConn {
        const char *name; /* for log messages */
        int fd;
        sd_event *event;
        sd_event_source *io;
        sd_event_source *stall_timer;
        SbxFrameReader reader;

        uint8_t *out;
        size_t out_start, out_end, out_alloc;
        size_t out_max;      /* queued bytes above this are refused with -ENOBUFS */
        uint64_t out_sent;   /* bytes written since open: the stream position of out[out_start] */
        uint64_t stall_usec; /* 0: no deadline */
        FramedConnFds out_fds[FRAMED_CONN_FDS_QUEUE_MAX];
        size_t n_out_fds;

        bool stopped;  /* no more reading: on_frame asked to stop, garbage arrived, or the connection closed */
        bool paused;   /* on_frame asked for a break (flow control); framed_conn_resume() ends it */
        bool recv_fds; /* read with recvmsg() and keep SCM_RIGHTS fds in the reader */
        bool closed;   /* no more writing either */
        bool close_reported;
        FramedConnGuard *guard;
        FramedConnFrameHandler on_frame;
        FramedConnCloseHandler on_close;
        FramedConnDrainHandler on_drain;
        void *userdata;
};

/* Takes ownership of fd (made non-blocking). */
int framed_conn_open(FramedConn *c, sd_event *event, const char *name, int fd, size_t max_payload, size_t out_max,
                     FramedConnFrameHandler on_frame, FramedConnCloseHandler on_close, void *userdata);
/* Closes the socket and frees the buffers. Safe inside any handler: the owner may free c right
 * after, and the connection's own code will not touch it again. */
void framed_conn_close(FramedConn *c);
static inline bool framed_conn_is_open(const FramedConn *c) {
        return c->fd >= 0;
}
/* A connection that has been zeroed or closed: safe to close again. */
void framed_conn_init(FramedConn *c);
/* Moves an open connection to new storage (its event sources follow); src is left closed. The
 * handlers' userdata is replaced by userdata. */
void framed_conn_move(FramedConn *dst, FramedConn *src, void *userdata);
/* Sets the stall deadline: queued output that makes no progress for usec closes the connection
 * with -ETIMEDOUT. 0 turns it off. */
int framed_conn_set_stall_timeout(FramedConn *c, uint64_t usec);

/* Finishes m and queues it; writes what the socket takes right away. -ENOBUFS when the queue is
 * full, -EPIPE when the connection is closed. A write error is reported by on_close later. */
int framed_conn_send(FramedConn *c, SbxMsg *m);
/* The same with 1..SBX_FRAME_READER_FDS_MAX fds passed along; they are duplicated, so the caller
 * keeps its own. */
int framed_conn_send_with_fds(FramedConn *c, SbxMsg *m, const int *fds, size_t n_fds);
/* Blocks until everything queued is written, the peer is gone, or timeout_usec passed. Only for a
 * process that is about to exit. */
int framed_conn_flush(FramedConn *c, uint64_t timeout_usec);
/* Reads and dispatches everything the peer has already sent, without waiting. */
void framed_conn_drain(FramedConn *c);
/* Stops reading and dispatching frames; queued output is still written. */
void framed_conn_stop(FramedConn *c);
/* Ends a pause: dispatches the frames already buffered, then reads again. */
void framed_conn_resume(FramedConn *c);
/* Read with recvmsg() and keep the fds passed along (SCM_RIGHTS), for framed_conn_take_fd(). */
static inline void framed_conn_set_recv_fds(FramedConn *c, bool b) {
        c->recv_fds = b;
}
/* The oldest fd received with the frames so far (the caller owns it), or -EBADF. */
static inline int framed_conn_take_fd(FramedConn *c) {
        return sbx_frame_reader_take_fd(&c->reader);
}
static inline size_t framed_conn_queued(const FramedConn *c) {
        return c->out_end - c->out_start;
}
