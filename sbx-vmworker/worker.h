/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One run (or one session), one VM: the worker's state machine.
 *
 *   WAITING_RUN --B_RUN--> BOOTING --G_HELLO/H_EXEC--> RUNNING --G_EXIT--> DONE
 *                            |  boot deadline: kill, boot again once, then BOOT_TIMEOUT
 *                            any failure, cancel, EOF from the broker --> DONE
 *
 *   WAITING_RUN --B_SESSION_OPEN--> BOOTING --G_HELLO/W_SESSION_READY--> SESSION --B_CLOSE/EOF--> DONE
 *                                   (requests in SESSION: session.c)
 *
 * DONE means: QEMU killed and reaped, cgroups removed, exactly one
 * SBX_W_RESULT or SBX_W_ERROR sent (unless the broker is gone), event loop
 * exits. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "cgroup.h"
#include "config.h"
#include "console.h"
#include "framed-conn.h"
#include "network.h"
#include "qemu.h"
#include "run-request.h"

/* How long the broker has to send SBX_B_RUN after connecting. */
#define WORKER_RUN_WAIT_USEC (30u * 1000000u)
/* The host deadline is the code timeout plus this (the guest enforces the timeout itself). */
#define WORKER_TIMEOUT_GRACE_USEC (3u * 1000000u)
#define WORKER_BOOT_ATTEMPTS 2u
/* L1 snapshots use up to three: build, restore, cold (snapshot.h). */
#define WORKER_ATTEMPTS_MAX 3u

typedef enum WorkerState {
        WORKER_WAITING_RUN,
        WORKER_BOOTING,
        WORKER_RUNNING,
        WORKER_WARMING, /* session: the interpreter starts before READY (snapshot.c) */
        WORKER_SESSION, /* booted; session.c serves the broker's requests */
        WORKER_DONE,
} WorkerState;

typedef struct Session Session;
typedef struct Snapshot Snapshot;

typedef struct Worker {
        sd_event *event;
        const SbxConfig *config;
        WorkerState state;
        FramedConn broker;
        sd_event_source *sigterm, *sigint;
        sd_event_source *timer; /* B_RUN wait, boot deadline, or host execution deadline */

        RunRequest req; /* B_RUN, or B_SESSION_OPEN (no code, no timeout) */
        bool have_request;
        Session *session; /* session mode, from B_SESSION_OPEN on */
        Snapshot *snap;   /* B_SESSION_OPEN with SNAPSHOT or WARM (snapshot.c) */
        SbxAccel accel;
        VmCgroup cgroup;
        VmNetwork net; /* NETWORK or EXPOSE: the NIC and the sbx-netd registration */
        char **qemu_argv;

        /* The current QEMU and its channels. */
        unsigned boot_attempt, n_attempts;
        /* Every boot attempt's QEMU is forked before the seccomp filter is loaded (the worker cannot
         * fork after that) and waits until worker_boot() releases it; unused ones are discarded. */
        struct {
                QemuChild child;
                int agent_fd, console_fd, stderr_fd; /* the worker's ends */
        } attempts[WORKER_ATTEMPTS_MAX];
        QemuCreds qemu_creds;
        int qemu_uid_lock_fd; /* holds this VM's QEMU uid (qemu_uid_range) */
        pid_t qemu_pid;
        sd_event_source *qemu_exit;
        FramedConn guest;
        int console_fd, qemu_stderr_fd;
        sd_event_source *console_io, *qemu_stderr_io;
        Console console, qemu_stderr;

        uint64_t t_request, t_spawn, t_exec; /* CLOCK_MONOTONIC µs */
        uint64_t setup_ms, boot_ms;
        uint64_t stdout_sent, stderr_sent;
        bool stdout_truncated, stderr_truncated;
} Worker;

/* Takes broker_fd, the connected socket from the broker. */
int worker_new(sd_event *event, const SbxConfig *config, int broker_fd, Worker **ret);
/* Kills QEMU and removes the cgroups if still there. */
Worker *worker_free(Worker *w);
static inline void worker_freep(Worker **w) {
        worker_free(*w);
}

/* ---- for session.c ---- */

/* Kills QEMU, removes the cgroups, sends W_ERROR and ends the loop. */
void worker_fail(Worker *w, SbxErrorKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same without a reply (B_CLOSE, EOF). */
void worker_abort(Worker *w, const char *why);
void worker_guest_violation(Worker *w, const char *reason);
/* W_OUTPUT within the caps (stdout_sent, stderr_sent, *_truncated count per exec). */
struct GuestOutput;
void worker_forward_output(Worker *w, const struct GuestOutput *o);
/* ---- for snapshot.c ---- */

/* Starts boot attempt boot_attempt + 1 (releases its prepared QEMU, arms the deadline). */
void worker_boot(Worker *w);
/* Kills and reaps QEMU, closes its channels (see worker.c). */
void worker_stop_qemu(Worker *w, uint64_t wait_usec, int *ret_status);
/* Kills the prepared QEMU children that were never released. */
void worker_discard_attempts(Worker *w);

/* "execution timed out after N s", or NULL on OOM. */
char *worker_timeout_message(uint32_t timeout_ms);
uint64_t ms_since(uint64_t t);
