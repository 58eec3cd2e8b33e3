/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The VM's QEMU processes and their channels. Every boot attempt's QEMU is forked before the seccomp
 * filter (the worker cannot fork after that) and waits until vm_release() lets it exec (see
 * qemu_prepare()); unused ones are discarded. The released one is "the QEMU": its pid, its exit
 * watch, the guest agent's channel, and its console and stderr, kept for diagnostics. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "boot-plan.h"
#include "console.h"
#include "framed-conn.h"
#include "qemu.h"
#include "sbx-error.h"

typedef struct VmAttempt {
        QemuChild child;
        int agent_fd, console_fd, stderr_fd; /* the worker's ends */
} VmAttempt;

/* Who hears about the released QEMU. */
typedef struct VmCallbacks {
        FramedConnFrameHandler on_guest_frame;
        FramedConnCloseHandler on_guest_close;
        FramedConnDrainHandler on_guest_drain;
        sd_event_child_handler_t on_exit;
        QemuAttachFunc attach; /* puts the pid into the VM's cgroups before QEMU execs */
        void *userdata;
} VmCallbacks;

typedef struct Vm {
        VmAttempt attempts[BOOT_ATTEMPTS_MAX];
        pid_t pid;
        sd_event_source *exit_source;
        FramedConn guest;
        int console_fd, stderr_fd;
        sd_event_source *console_io, *stderr_io;
        Console console, stderr_log;
        uint64_t t_spawn; /* CLOCK_MONOTONIC µs */
} Vm;

void vm_init(Vm *vm);

/* Forks the QEMU of every attempt of the plan, each with its own channels, waiting for vm_release().
 * QEMU gets the images as open fds, so it needs no access to their paths. Returns 0, or a negative
 * errno with a message in error. */
int vm_prepare(Vm *vm, const SbxConfig *config, const BootPlan *plan, char **cold_argv, const QemuCreds *creds,
               SbxError *error);

/* Lets attempt i (0-based) run: QEMU execs, its exit and channels are watched. Returns 0, or a
 * negative errno with a message in error. */
int vm_release(Vm *vm, sd_event *event, unsigned i, const VmCallbacks *cb, SbxError *error);

/* Kills and reaps QEMU (if running) and closes its channels. wait_usec: how long QEMU gets to exit by
 * itself first, so we can tell what happened. *ret_status is its wait status if it had exited on its
 * own, -1 otherwise. */
void vm_stop(Vm *vm, uint64_t wait_usec, int *ret_status);

/* Kills the prepared QEMU children that were never released and closes their channels. */
void vm_discard_attempts(Vm *vm);

/* Reads what is left in the console and stderr pipes after QEMU exited, for the error message. */
void vm_drain_diagnostics(Vm *vm);

/* Frees the guest channel (after vm_stop(): not from inside its callbacks). */
void vm_done(Vm *vm);
