/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The QEMU command line and the QEMU process: spawn (dying with the worker,
 * placed in its cgroups before it runs a single instruction of QEMU) and
 * kill + reap. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* Fd numbers QEMU sees for its two sockets. */
#define QEMU_AGENT_FD 3
#define QEMU_CONSOLE_FD 4

typedef struct QemuOptions {
        const char *binary;
        const char *kernel;
        const char *initrd;
        const char *rootfs;
        SbxAccel accel; /* kvm or tcg */
        uint32_t memory_mb;
        uint32_t vcpus;
        uint32_t tsc_khz;          /* TCG: the host's TSC frequency for tsc_early_khz= (host-tsc.h); 0 = none */
        const char *cmdline_extra; /* appended to the kernel command line, may be NULL */
        bool sandbox;              /* -sandbox on,... (QEMU's own seccomp filter) */
} QemuOptions;

/* A NULL-terminated argv; free with strv_free(). */
int qemu_build_argv(const QemuOptions *o, char ***ret);
void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Called in the parent with the child's pid while the child waits, before it execs QEMU. */
typedef void (*QemuAttachFunc)(pid_t pid, void *userdata);

/* Forks QEMU with agent_fd as fd 3, console_fd as fd 4, stdin /dev/null,
 * stdout and stderr to stderr_fd. The child gets PR_SET_PDEATHSIG(SIGKILL),
 * its own session, an empty signal mask, and only those fds. */
int qemu_spawn(char **argv, int agent_fd, int console_fd, int stderr_fd, QemuAttachFunc attach, void *userdata,
               pid_t *ret_pid);

/* SIGKILLs *pid (if > 0) and reaps it; *ret_status gets the wait status. Leaves *pid = 0. */
void qemu_kill_and_reap(pid_t *pid, int *ret_status);
/* Describes a wait status ("exited with status 1", "killed by SIGKILL"). */
const char *qemu_describe_status(int status, char *buf, size_t size);
