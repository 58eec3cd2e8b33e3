/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One execution of code in a VM, from the broker's side: the output it printed (kept under the
 * per-stream caps, or streamed into the caller's fds), its W_RESULT, and the moment it is complete:
 * the result is in (or the execution was given up) and the caller's fds took all output, or the
 * drain deadline passed. A run (job.c) is one Exec; a session (session.c) runs one Exec per call;
 * the warm pool (pool.c) warms its interpreters with them. The VM client (vm.c) feeds it. */

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "output.h"
#include "proto.h"
#include "result.h"

typedef struct Exec Exec;

typedef struct ExecOps {
        /* Optional: output that was kept (under the cap), including sbx's own timeout note; for
         * Output signals. */
        void (*on_output)(Exec *e, SbxStream stream, const void *data, size_t n, void *userdata);
        /* The Exec is complete (exec_is_complete()). Called once, from the event loop or from
         * exec_result_in()/exec_abort(); the owner may exec_done() the Exec here. */
        void (*on_complete)(Exec *e, void *userdata);
} ExecOps;

struct Exec {
        sd_event *event;
        char name[48]; /* for log messages: "Job 12", "Session 7" */
        const ExecOps *ops;
        void *userdata;

        OutputCapture out, err;
        RunResult result;
        bool have_result; /* W_RESULT is in result */
        bool aborted;     /* given up without a result (the owner knows why) */
        bool completed;
        sd_event_source *drain_timer; /* the caller's fds still have output queued */
};

/* An empty Exec: captures at the stdout/stderr caps, no caller fds. */
void exec_init(Exec *e, sd_event *event, const char *name, const ExecOps *ops, void *userdata);
/* Frees everything and leaves the Exec empty again, ready for the next execution (same ops). */
void exec_done(Exec *e);
/* Streams the output into these caller fds (duplicated; -1: keep it for the result instead). */
int exec_open_sinks(Exec *e, int stdout_fd, int stderr_fd);
/* Nobody is left to read the caller's fds: drops them without waiting. */
void exec_close_sinks(Exec *e);
/* Frees the kept output and the sinks once the result went out; the RunResult stays. */
void exec_drop_output(Exec *e);

/* A chunk of W_OUTPUT: kept under the stream's cap. */
int exec_output(Exec *e, SbxStream stream, const void *data, size_t n);
/* The W_RESULT has been parsed into e->result: adds the timeout note to stderr, and completes now or
 * once the output has drained. */
void exec_result_in(Exec *e);
/* The execution ends without a result (the VM is gone, the run was cancelled): completes once the
 * output already taken has drained. */
void exec_abort(Exec *e);

static inline bool exec_is_complete(const Exec *e) {
        return e->completed;
}

/* Appends the result keys shared by Run, Finished and Session1.Exec (not the dictionary's
 * open/close): output, exit code, flags, timings, accelerator, tier, exposed ports. */
int exec_append_result(const Exec *e, sd_bus_message *m, const char *accel_default);
