/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Session mode: one VM serving many requests, strictly one at a time
 * (B_EXEC, B_FILE_WRITE, B_FILE_READ, B_LIST; B_CLOSE or EOF ends it). The
 * worker boots the VM as for a run (worker.c) and hands every broker and
 * guest frame to this file once the guest said HELLO. Any failure of the VM
 * ends the session with W_ERROR through worker_fail(). See docs/worker.md,
 * "Sessions". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker.h"

/* Requests in flight at most one at a time; the host's deadline per exec is its timeout plus this. */
#define SESSION_EXEC_GRACE_USEC (5u * 1000000u)
/* A file transfer or listing that makes no progress for this long is given up. */
#define SESSION_STALL_USEC (60u * 1000000u)
/* Entries of one listing forwarded to the broker at most. */
#define SESSION_LIST_MAX 10000u

int session_new(Worker *w, Session **ret);
Session *session_free(Session *s);
bool session_exec_running(const Session *s);

/* Return values as for FramedConnFrameHandler: 0, FRAMED_CONN_PAUSE, or 1 to stop. */
int session_on_broker_frame(Session *s, uint8_t type, const uint8_t *p, size_t n);
int session_on_guest_frame(Session *s, uint8_t type, const uint8_t *p, size_t n);
/* The queue towards the broker or the guest emptied (flow control). */
void session_on_broker_drain(Session *s);
void session_on_guest_drain(Session *s);
