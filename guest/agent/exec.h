/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Running one piece of user code: parsing SBX_H_EXEC, spawning the child as
 * uid 1000, and cleaning up after it. The event loop lives in agent.c. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"
#include "sbx-error.h"

typedef struct ExecRequest {
        SbxLanguage language;
        const uint8_t *code; /* points into the frame payload */
        size_t code_len;
        bool have_code;
        uint32_t timeout_ms;
        char *env[SBX_ENV_COUNT_MAX]; /* "KEY=VALUE", owned */
        size_t n_env;
        bool have_clock;
        uint64_t clock_ns;
        const uint8_t *seed; /* points into the frame payload */
        size_t seed_len;
        bool session; /* SBX_T_SESSION: run in the persistent interpreter */
} ExecRequest;

typedef struct ExecChild {
        pid_t pid;
        int stdout_fd; /* read ends, non-blocking */
        int stderr_fd;
        char path[64]; /* the code file, removed when the exec ends */
} ExecChild;

/* On failure *ret_reason says why (static storage). */
/* Under TCG (sbx.tcg=1) the interpreters get defaults tuned for emulation; see build_env(). */
void exec_set_emulated(bool emulated);
int exec_request_parse(const uint8_t *payload, size_t len, ExecRequest *ret, const char **ret_reason);
void exec_request_done(ExecRequest *req);

/* Sets the clock and feeds the seed to the kernel RNG, best effort. */
void exec_apply_host_state(const ExecRequest *req);

/* Writes the code file and starts the interpreter. On failure, error holds the message for
 * SBX_G_ERROR. */
int exec_spawn(const ExecRequest *req, unsigned id, ExecChild *ret, SbxError *error);

/* Writes the code to SBX_GUEST_RUNDIR/code-ID.{py,ts,sh} (path, at least 64 bytes). */
int exec_write_code(const ExecRequest *req, unsigned id, char *path, size_t path_size, SbxError *error);

/* Starts argv exactly like a one-shot exec's interpreter (uid 1000, limits,
 * environment from req, cwd, stdout/stderr pipes), with extra_fds[i] at fd
 * 3 + i in the child (not close-on-exec there). ret->path stays empty. */
#define EXEC_EXTRA_FDS_MAX 4u
int exec_spawn_argv(const char *const argv[], const ExecRequest *req, const int extra_fds[], size_t n_extra,
                    ExecChild *ret, SbxError *error);

/* SIGKILLs every process of the sandbox user, including ones that left the
 * exec's process group. Returns once the signals are sent. */
void kill_user_processes(void);
