/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A non-blocking, framed (frame.h) stream socket driven by sd-event: frames
 * are read incrementally and handed to on_frame; outgoing frames are queued
 * and written as the peer accepts them, so a slow or stuck peer never blocks
 * the worker. Used for both the broker connection and the guest channel. */

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
 * report it), another -errno on I/O errors. Called at most once. */
typedef void (*FramedConnCloseHandler)(FramedConn *c, int error, void *userdata);
/* Optional: everything queued has been written. */
typedef void (*FramedConnDrainHandler)(FramedConn *c, void *userdata);

struct FramedConn {
        const char *name; /* for log messages */
        int fd;
        sd_event_source *io;
        SbxFrameReader reader;

        uint8_t *out;
        size_t out_start, out_end, out_alloc;
        size_t out_max; /* queued bytes above this are refused with -ENOBUFS */

        bool stopped; /* no more reading: on_frame asked to stop, garbage arrived, or the connection closed */
        bool paused;  /* on_frame asked for a break (flow control); framed_conn_resume() ends it */
        bool recv_fds; /* read with recvmsg() and keep SCM_RIGHTS fds in the reader */
        bool closed;  /* no more writing either */
        bool close_reported;
        FramedConnFrameHandler on_frame;
        FramedConnCloseHandler on_close;
        FramedConnDrainHandler on_drain;
        void *userdata;
};

/* Takes ownership of fd (made non-blocking). */
int framed_conn_open(FramedConn *c, sd_event *event, const char *name, int fd, size_t max_payload, size_t out_max,
                     FramedConnFrameHandler on_frame, FramedConnCloseHandler on_close, void *userdata);
void framed_conn_close(FramedConn *c);
static inline bool framed_conn_is_open(const FramedConn *c) {
        return c->fd >= 0;
}

/* Finishes m and queues it; writes what the socket takes right away. */
int framed_conn_send(FramedConn *c, SbxMsg *m);
/* Blocks until everything queued is written, the peer is gone, or timeout_usec passed. */
int framed_conn_flush(FramedConn *c, uint64_t timeout_usec);
/* Reads and dispatches everything the peer has already sent, without waiting. */
void framed_conn_drain(FramedConn *c);
/* Stops reading and dispatching frames; queued output is still written. */
void framed_conn_stop(FramedConn *c);
/* Ends a pause: dispatches the frames already buffered, then reads again. */
void framed_conn_resume(FramedConn *c);
static inline size_t framed_conn_queued(const FramedConn *c) {
        return c->out_end - c->out_start;
}
