/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* QEMU: the command line and the guest images (qemu.c), and the QEMU process
 * (qemu-spawn.c): its credentials and uid, the spawn (dying with the worker,
 * placed in its cgroups before it runs a single instruction of QEMU) and
 * kill + reap. */

#include <stdbool.h>
#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* Fd numbers QEMU sees for its two sockets. */
#define QEMU_AGENT_FD 3
#define QEMU_CONSOLE_FD 4
/* Fd numbers QEMU sees for the guest images when they are passed open (QemuOptions.image_fds). */
#define QEMU_KERNEL_FD 5
#define QEMU_INITRD_FD 6
#define QEMU_ROOTFS_FD 7
#define QEMU_ROOTFS_FDSET 1
/* Snapshots (boot-plan.c): the QMP socket, the guest RAM file and the migration state file. */
#define QEMU_QMP_FD 8
#define QEMU_RAM_FD 9
#define QEMU_STATE_FD 10
#define QEMU_STATE_FDSET 2
/* -M without the memory backend (part of the snapshot key). */
#define QEMU_MACHINE "microvm,isa-serial=on"
#define QEMU_STATE_URI "file:/dev/fdset/2"

typedef enum QemuRam {
        QEMU_RAM_ANON,    /* -m: anonymous memory */
        QEMU_RAM_SHARED,  /* memory-backend-file on fd 9, share=on: the guest writes the file (to save it) */
        QEMU_RAM_PRIVATE, /* memory-backend-file on fd 9, read-only, share=off: copy-on-write (restore) */
} QemuRam;

/* A port forward from the host's 127.0.0.1:host_port to the guest's guest_port (slirp hostfwd). */
typedef struct QemuHostfwd {
        uint16_t host_port;
        uint16_t guest_port;
        bool udp;
} QemuHostfwd;

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
        bool image_fds;            /* kernel, initrd and rootfs are inherited fds 5, 6, 7 (paths unused) */
        const char *cpu;           /* -cpu, NULL: host (KVM) or max (TCG) */
        QemuRam ram;               /* guest RAM in a file (fd 9) for snapshots */
        bool qmp;                  /* a QMP monitor on fd 8 */
        bool incoming;             /* -incoming defer: wait for migrate-incoming (restore) */
        bool state_fdset;          /* fd 10 is fdset 2 (QEMU_STATE_URI), the migration state file */
        /* A virtio-net NIC on QEMU's user-mode network (slirp), IPv4 only (docs/network.md). */
        bool nic;
        bool nic_restrict; /* restrict=on: slirp opens no outbound connection (only hostfwd) */
        const QemuHostfwd *hostfwd;
        size_t n_hostfwd;
} QemuOptions;

/* The fds of QemuOptions.qmp, .ram and .state_fdset, for qemu_prepare(); -EBADF where unused. */
typedef struct QemuExtraFds {
        int qmp_fd, ram_fd, state_fd;
} QemuExtraFds;

/* Who QEMU runs as. drop = false: as the worker (the worker is not root). */
typedef struct QemuCreds {
        bool drop;
        uid_t uid;
        gid_t gid;
        size_t n_groups;
        gid_t groups[1]; /* "kvm", when that group exists */
        char user[32];   /* for log messages */
} QemuCreds;

/* With creds->drop and a uid range: takes the lowest uid of the range that no other VM uses (a
 * lock file under lock_dir, held by *ret_lock_fd for the VM's life) as QEMU's uid and gid, keeping the
 * supplementary groups. Call before the worker's seccomp filter. */
int qemu_creds_take_vm_uid(QemuCreds *c, const char *lock_dir, uint32_t first, uint32_t count, int *ret_lock_fd);

/* When we are root: user "sbx-qemu" if it exists, else "nobody" (65534), plus group "kvm" if it
 * exists. Otherwise drop = false. Call before the worker's seccomp filter (it reads /etc/passwd). */
int qemu_resolve_creds(QemuCreds *ret);

/* The images opened read-only by the worker, for QemuOptions.image_fds. */
typedef struct QemuImages {
        int kernel_fd, initrd_fd, rootfs_fd;
} QemuImages;
#define QEMU_IMAGES_NULL ((QemuImages) { -EBADF, -EBADF, -EBADF })
int qemu_images_open(const char *kernel, const char *initrd, const char *rootfs, QemuImages *ret,
                     const char **ret_failed);
void qemu_images_close(QemuImages *i);

/* A NULL-terminated argv; free with strv_free(). */
int qemu_build_argv(const QemuOptions *o, char ***ret);
void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* Called in the parent with the child's pid while the child waits, before it execs QEMU. A negative
 * return value makes qemu_release() kill the child instead and fail with it. */
typedef int (*QemuAttachFunc)(pid_t pid, void *userdata);

/* Spawning QEMU, in two steps, so that the worker can fork before it locks itself into its seccomp
 * filter and let QEMU run later (the boot retry): qemu_prepare() forks a child that closes every fd but
 * its own and waits; qemu_release() calls attach (cgroups) with its pid and lets it go on: agent_fd
 * becomes fd 3, console_fd fd 4, the images (if any) fds 5-7, stdin /dev/null, stdout and stderr
 * stderr_fd; it gets PR_SET_PDEATHSIG(SIGKILL), its own session, an empty signal mask, RLIMIT_CORE 0,
 * extra (if any) fds 8-10, drops to creds (if creds->drop: groups, gid, uid, no capabilities left, bounding set empty),
 * PR_SET_NO_NEW_PRIVS, and execs QEMU. qemu_discard() kills and reaps a child never released.
 * images and creds may be NULL. */
typedef struct QemuChild {
        pid_t pid;
        int go_fd;
} QemuChild;
#define QEMU_CHILD_NULL ((QemuChild) { 0, -EBADF })
int qemu_prepare(char **argv, int agent_fd, int console_fd, int stderr_fd, const QemuImages *images,
                 const QemuExtraFds *extra, const QemuCreds *creds, QemuChild *ret);
int qemu_release(QemuChild *c, QemuAttachFunc attach, void *userdata, pid_t *ret_pid);
void qemu_discard(QemuChild *c);

/* SIGKILLs *pid (if > 0) and reaps it; *ret_status gets the wait status. Leaves *pid = 0. */
void qemu_kill_and_reap(pid_t *pid, int *ret_status);
/* Describes a wait status ("exited with status 1", "was killed by SIGKILL"): a new string, NULL on OOM. */
char *qemu_describe_status(int status);
