/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Persistent interpreters for session execs (SBX_T_SESSION). One per
 * language, started on the first session exec of that language and kept
 * until it dies. The agent talks to a small driver script in it over two
 * pipes: the request pipe (the driver's fd 3) carries one line per exec, the
 * path of the code file; the done pipe (fd 4) carries one line back, the
 * exec's status, written after the driver flushed stdout and stderr. See
 * docs/guest.md, "Sessions". */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "exec.h"
#include "proto.h"

typedef struct Session {
        SbxLanguage language;
        pid_t pid;     /* > 0 while the interpreter runs; it leads its own process group */
        int stdout_fd; /* read ends, non-blocking */
        int stderr_fd;
        int req_fd;    /* write end of the driver's fd 3, non-blocking */
        int done_fd;   /* read end of the driver's fd 4, non-blocking */
        bool lost;     /* died while no exec of it ran: the next exec reports STATE_RESET */
        char done_buf[16];
        size_t done_len;
} Session;

void session_init(Session *s, SbxLanguage language);

/* Starts the interpreter if it is not running (*ret_fresh = true then) and
 * hands it the code file. On failure error holds the message for SBX_G_ERROR. */
int session_submit(Session *s, const ExecRequest *req, const char *code_path, bool *ret_fresh, SbxError *error);

/* Reads what the done pipe holds. 1 and *ret_status: the exec finished;
 * 0: not yet; -EPIPE: the pipe is closed or carries garbage (the driver is
 * broken; the caller kills it). */
int session_read_done(Session *s, int *ret_status);

/* SIGKILLs the interpreter's process group. Does not reap. */
void session_kill(Session *s);

/* Forgets the interpreter (after it was reaped): closes the pipes; the next
 * exec starts a fresh one. */
void session_reset(Session *s);
