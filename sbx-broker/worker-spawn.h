/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The broker's end of one VM worker, shared by jobs, sessions and the warm pool: it starts the
 * worker, reads its frames and hands them over, and closes everything in one call. The VM's share
 * of the budget is its owner's (admission.h). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "frame.h"
#include "macro.h"
#include "request.h"

/* In a forked child: exec_with_listen_fd() with SBX_CONFIG set to the broker's configuration. For
 * workers and for the embedded sbx-cache. */
_noreturn_ void broker_exec_with_fd(Broker *b, const char *path, int fd, const char *fd_name);

/* A frame from the worker; a negative return is a protocol error. */
typedef int (*worker_frame_handler_t)(void *userdata, uint8_t type, const uint8_t *payload, size_t len);
/* The connection is gone: EOF or a read error (protocol false), or a frame the owner refused (protocol true). */
typedef void (*worker_lost_handler_t)(void *userdata, int error, bool protocol);

typedef struct WorkerLink {
        Broker *broker;
        int fd;
        pid_t pid; /* 0 in socket mode, where systemd owns the worker */
        sd_event_source *io;
        SbxFrameReader reader;
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

/* B_SESSION_OPEN for a VM of this language and memory; opts (may be NULL) adds the session-wide
 * env and the network options. WARM starts the interpreter before READY; SNAPSHOT restores (or
 * builds) the L1 snapshot. */
int worker_send_session_open(WorkerLink *l, uint64_t id, SbxLanguage language, uint32_t memory_mb,
                             const SbxRequest *opts, bool warm, bool snapshot);
/* B_EXEC: code for the VM's persistent interpreter. */
int worker_send_exec(WorkerLink *l, uint64_t id, const char *code, size_t code_len, uint32_t timeout_ms,
                     char *const *env, size_t n_env);
