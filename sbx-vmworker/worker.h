/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One VM, one worker: the worker's state machine (docs/worker.md).
 *
 *   WAITING --B_SESSION_OPEN, setup.c--> BOOTING --G_HELLO or G_RESUMED, boot.c--> [WARMING] --> IDLE
 *   IDLE --B_EXEC, exec.c--> EXEC --G_EXIT / W_RESULT--> IDLE
 *   IDLE --B_FILE_WRITE/B_FILE_READ/B_LIST, file-transfer.c--> TRANSFER --G_FILE_RESULT / W_FILE_RESULT--> IDLE
 *   any --EOF from the broker--> DONE (no reply)
 *   any --QEMU died, guest EOF/garbage, G_ERROR, a deadline, a signal--> DONE after W_ERROR
 *
 * DONE means: QEMU killed and reaped, network released, cgroups removed (worker_teardown_vm()),
 * the event loop exits. This header is for the worker's own files. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "boot-plan.h"
#include "boot.h"
#include "cgroup.h"
#include "config.h"
#include "exec.h"
#include "file-transfer.h"
#include "framed-conn.h"
#include "network.h"
#include "qemu.h"
#include "run-request.h"
#include "vm.h"

/* How long the broker has to send SBX_B_SESSION_OPEN after connecting. */
#define WORKER_OPEN_WAIT_USEC (30u * 1000000u)
/* Deadlines fire within this (sd-event would otherwise coalesce them by up to 250 ms). */
#define WORKER_TIMER_ACCURACY_USEC (10u * 1000u)

typedef enum WorkerState {
        WORKER_WAITING,  /* for B_SESSION_OPEN */
        WORKER_BOOTING,  /* a boot attempt runs: until G_HELLO, or G_RESUMED after a restore */
        WORKER_WARMING,  /* the interpreter starts before READY */
        WORKER_IDLE,     /* W_SESSION_READY sent; no request in flight */
        WORKER_EXEC,     /* one exec in flight */
        WORKER_TRANSFER, /* one file write, read or listing in flight */
        WORKER_DONE,
        _WORKER_STATE_MAX,
} WorkerState;

struct Worker {
        sd_event *event;
        const SbxConfig *config;
        WorkerState state;
        FramedConn broker;
        sd_event_source *sigterm, *sigint;
        sd_event_source *timer; /* the current state's deadline (worker_arm_timer()) */

        RunRequest req; /* B_SESSION_OPEN: the VM's settings and the environment of every exec */
        uint64_t t_request;

        /* setup.c */
        SbxAccel accel;
        VmCgroup cgroup;
        VmNetwork net; /* NETWORK or EXPOSE: the NIC and the sbx-netd registration */
        QemuCreds qemu_creds;
        int qemu_uid_lock_fd; /* holds this VM's QEMU uid (qemu_uid_range) */
        char **qemu_argv;     /* the cold command line */
        uint64_t setup_ms;    /* request to first QEMU released */

        BootPlan plan; /* boot-plan.c */
        Vm vm;         /* vm.c: the QEMU processes and channels */
        Boot boot;     /* boot.c */
        Exec exec;     /* exec.c */
        Transfer transfer; /* file-transfer.c */
};

/* Takes broker_fd, the connected socket from the broker. */
int worker_new(sd_event *event, const SbxConfig *config, int broker_fd, Worker **ret);
/* Tears the VM down if still there. */
Worker *worker_free(Worker *w);
static inline void worker_freep(Worker **w) {
        worker_free(*w);
}

/* The one way to change state. Every change disarms the timer (each state arms its own deadline);
 * DONE is final and ends the event loop. */
void worker_set_state(Worker *w, WorkerState s);
/* (Re)arms the current state's deadline. Returns 0 or a negative errno. */
int worker_arm_timer(Worker *w, uint64_t usec, sd_event_time_handler_t handler, const char *description);

/* Kills and reaps QEMU and the unused prepared ones, releases the network, removes the cgroups and
 * frees QEMU's uid. Idempotent. */
void worker_teardown_vm(Worker *w);
/* Tears the VM down, sends W_ERROR and ends the loop. */
void worker_fail(Worker *w, SbxErrorKind kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same without a reply (EOF from the broker). */
void worker_abort(Worker *w, const char *why);
void worker_guest_violation(Worker *w, const char *reason);
void worker_broker_violation(Worker *w, const char *what);
/* G_ERROR from the guest: the VM failed during what (parses the message, then worker_fail()). */
void worker_guest_error(Worker *w, const uint8_t *p, size_t n, const char *what);
/* The guest channel's handlers (vm.h): frames go to the owner of the current state. */
int worker_on_guest_frame(FramedConn *c, uint8_t type, const uint8_t *p, size_t n, void *userdata);
void worker_on_guest_drain(FramedConn *c, void *userdata);
/* Where the VM was, for error messages: "while the guest was booting", "during the run", ... */
const char *worker_phase_phrase(const Worker *w);

uint64_t ms_since(uint64_t t);
