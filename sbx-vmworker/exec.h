/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One exec: B_EXEC from the broker becomes H_EXEC to the guest (the persistent interpreter, with
 * the VM's environment merged under the exec's); G_OUTPUT goes back as W_OUTPUT within the caps,
 * G_EXIT as W_RESULT with the VM's cgroup figures. The agent enforces the timeout; the host's
 * deadline is the timeout plus EXEC_GRACE_USEC, and a guest silent past it is the VM's failure
 * (W_ERROR transient), not the code's. B_INTERRUPT becomes H_INTERRUPT. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "run-request.h"

#define EXEC_GRACE_USEC (5u * 1000000u)

typedef struct Worker Worker;

typedef struct Exec {
        RunRequest req;
        uint64_t t_start; /* CLOCK_MONOTONIC µs */
        uint64_t stdout_sent, stderr_sent;
        bool stdout_truncated, stderr_truncated;
} Exec;

/* B_EXEC while IDLE: parses, checks and starts it (state EXEC), or fails the VM. */
void exec_start(Worker *w, const uint8_t *p, size_t n);
/* Guest frames while EXEC. Returns as FramedConnFrameHandler. */
int exec_on_guest_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n);
/* B_INTERRUPT: Ctrl-C for the running exec; ignored when none runs (it may just have ended). */
void exec_interrupt(Worker *w);
void exec_done(Exec *e);
