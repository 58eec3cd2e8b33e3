/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The broker's end of one VM worker: it starts the worker, reads its frames and hands them to the
 * VM client (vm.h), and closes everything in one call. The VM's share of the budget is its owner's
 * (admission.h). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "frame.h"
#include "framed-conn.h"
#include "macro.h"

/* In a forked child: exec_with_listen_fd() with SBX_CONFIG set to the broker's configuration. For
 * workers and for the embedded sbx-cache. */
_noreturn_ void broker_exec_with_fd(Broker *b, const char *path, int fd, const char *fd_name);

/* A frame from the worker; a negative return is a protocol error. */
typedef int (*worker_frame_handler_t)(void *userdata, uint8_t type, const uint8_t *payload, size_t len);
/* The connection is gone: EOF, a read error or -ETIMEDOUT for a worker that stopped reading its
 * queue (protocol false), or a frame the owner refused (protocol true). A stalled worker has been
 * told to stop already. */
typedef void (*worker_lost_handler_t)(void *userdata, int error, bool protocol);

/* A worker that leaves queued requests unread this long is dropped: one stuck worker must never
 * hold up the broker or anyone else's VM. */
#define WORKER_STALL_USEC (10u * 1000000u)

typedef struct WorkerLink {
        Broker *broker;
        FramedConn conn; /* the worker's socket: frames both ways, never a blocking write */
        pid_t pid;       /* 0 in socket mode, where systemd owns the worker */
        worker_frame_handler_t on_frame;
        worker_lost_handler_t on_lost;
        void *userdata;
} WorkerLink;

void worker_link_init(WorkerLink *l);
/* Connects a fresh worker: in the embedded mode a forked
 * worker with a socketpair end as its fd 3 (the socket-activation contract);
 * with worker_socket set, a connection to sbx-vmworker.socket (Accept=yes).
 * Frames arrive once the caller has sent the first one. */
int worker_link_start(WorkerLink *l, Broker *b, worker_frame_handler_t on_frame, worker_lost_handler_t on_lost,
                      void *userdata);
/* Moves a started link (a warm pool VM) to a new owner; src is left empty. */
void worker_link_move(WorkerLink *dst, WorkerLink *src, worker_frame_handler_t on_frame, worker_lost_handler_t on_lost,
                      void *userdata);
/* Closes the connection (the worker stops its VM on EOF) and SIGTERMs the worker
 * if asked. Idempotent. */
void worker_link_release(WorkerLink *l, bool kill_worker);

static inline bool worker_link_is_open(const WorkerLink *l) {
        return framed_conn_is_open(&l->conn) && !l->conn.closed;
}
/* Queues a frame for the worker (-ENOBUFS when its queue is full, -EPIPE when it is gone). */
int worker_link_send(WorkerLink *l, SbxMsg *m);
/* The same with one fd passed along; the caller keeps its own. */
int worker_link_send_with_fd(WorkerLink *l, SbxMsg *m, int fd);
