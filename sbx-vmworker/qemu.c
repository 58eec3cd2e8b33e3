/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "proto.h"
#include "qemu.h"

/* Caps QEMU's block I/O thread pool so the process fits its pids.max. */
#define QEMU_THREAD_POOL_MAX 8
/* TCG translation cache, MiB: bounded so the VM fits its memory limit (default is 1 GiB). */
#define QEMU_TCG_TB_SIZE_MB 64

void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

typedef struct ArgvBuilder {
        char **argv;
        size_t n;
        int error;
} ArgvBuilder;

static void argv_add(ArgvBuilder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_add(ArgvBuilder *b, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (b->error)
                return;
        char **l = reallocarray(b->argv, b->n + 2, sizeof(char *));
        if (!l) {
                b->error = -ENOMEM;
                return;
        }
        b->argv = l;
        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0) {
                b->error = -ENOMEM;
                return;
        }
        b->argv[b->n++] = s;
        b->argv[b->n] = NULL;
}

/* QEMU's option parser splits on ','; a literal comma in a value is written ",,". */
static char *qemu_escape_commas(const char *s) {
        size_t extra = 0;
        for (const char *p = s; *p; p++)
                extra += *p == ',';
        char *out = malloc(strlen(s) + extra + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                *o++ = *p;
                if (*p == ',')
                        *o++ = ',';
        }
        *o = 0;
        return out;
}

int qemu_build_argv(const QemuOptions *o, char ***ret) {
        _cleanup_free_ char *rootfs = qemu_escape_commas(o->rootfs);
        ArgvBuilder b = {};

        if (!rootfs)
                return -ENOMEM;

        argv_add(&b, "%s", o->binary);
        argv_add(&b, "-M");
        argv_add(&b, "%s%s", QEMU_MACHINE, o->ram != QEMU_RAM_ANON ? ",memory-backend=mem" : "");
        if (o->accel == SBX_ACCEL_KVM) {
                argv_add(&b, "-accel");
                argv_add(&b, "kvm");
                argv_add(&b, "-cpu");
                argv_add(&b, "host");
        } else {
                argv_add(&b, "-accel");
                argv_add(&b, "tcg,tb-size=%d", QEMU_TCG_TB_SIZE_MB);
                argv_add(&b, "-cpu");
                argv_add(&b, "%s", o->cpu ?: "max");
        }
        argv_add(&b, "-m");
        argv_add(&b, "%" PRIu32 "M", o->memory_mb);
        /* Snapshots: guest RAM is the file on fd 9. Saving maps it shared, so the file is the RAM and
         * the migration stream (x-ignore-shared) holds only the device state. Restoring maps it
         * private and read-only: pages fault in lazily from the file, writes stay in this process,
         * and the file stays pristine for the next restore. QEMU re-opens /proc/self/fd/9, which
         * checks the file's own mode against QEMU's user (snapshot.c sets it). */
        if (o->ram == QEMU_RAM_SHARED) {
                argv_add(&b, "-object");
                argv_add(&b, "memory-backend-file,id=mem,size=%" PRIu32 "M,mem-path=/proc/self/fd/%d,share=on",
                         o->memory_mb, QEMU_RAM_FD);
        } else if (o->ram == QEMU_RAM_PRIVATE) {
                argv_add(&b, "-object");
                argv_add(&b,
                         "memory-backend-file,id=mem,size=%" PRIu32
                         "M,mem-path=/proc/self/fd/%d,share=off,readonly=on,rom=off",
                         o->memory_mb, QEMU_RAM_FD);
        }
        argv_add(&b, "-smp");
        argv_add(&b, "%" PRIu32, o->vcpus);
        argv_add(&b, "-nodefaults");
        argv_add(&b, "-no-user-config");
        argv_add(&b, "-display");
        argv_add(&b, "none");
        argv_add(&b, "-no-reboot");
        argv_add(&b, "-object");
        argv_add(&b, "main-loop,id=main-loop,thread-pool-min=0,thread-pool-max=%d", QEMU_THREAD_POOL_MAX);
        if (o->sandbox) {
                argv_add(&b, "-sandbox");
                argv_add(&b, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        }

        /* Serial console: a socket we drain into a ring buffer for diagnostics. */
        argv_add(&b, "-chardev");
        argv_add(&b, "socket,id=console,fd=%d", QEMU_CONSOLE_FD);
        argv_add(&b, "-serial");
        argv_add(&b, "chardev:console");

        /* With image_fds, the child swaps these paths for /proc/self/fd/5 and 6 when QEMU's user cannot
         * read them (see fix_image_paths()); the drive always uses its fd. */
        argv_add(&b, "-kernel");
        argv_add(&b, "%s", o->kernel);
        argv_add(&b, "-initrd");
        argv_add(&b, "%s", o->initrd);
        argv_add(&b, "-append");
        /* sbx.tcg=1 tells the guest it is emulated (guest/agent/exec.c tunes Bun for that). */
        if (o->accel != SBX_ACCEL_KVM && o->tsc_khz > 0)
                argv_add(&b, "console=ttyS0 quiet panic=-1 sbx.tcg=1 tsc_early_khz=%" PRIu32 "%s%s", o->tsc_khz,
                         o->cmdline_extra ? " " : "", o->cmdline_extra ?: "");
        else
                argv_add(&b, "console=ttyS0 quiet panic=-1%s%s%s", o->accel != SBX_ACCEL_KVM ? " sbx.tcg=1" : "",
                         o->cmdline_extra ? " " : "", o->cmdline_extra ?: "");

        if (o->image_fds) {
                argv_add(&b, "-add-fd");
                argv_add(&b, "fd=%d,set=%d,opaque=rootfs", QEMU_ROOTFS_FD, QEMU_ROOTFS_FDSET);
                argv_add(&b, "-drive");
                argv_add(&b, "id=root,file=/dev/fdset/%d,format=raw,if=none,readonly=on", QEMU_ROOTFS_FDSET);
        } else {
                argv_add(&b, "-drive");
                argv_add(&b, "id=root,file=%s,format=raw,if=none,readonly=on", rootfs);
        }
        argv_add(&b, "-device");
        argv_add(&b, "virtio-blk-device,drive=root");
        argv_add(&b, "-device");
        argv_add(&b, "virtio-rng-device");
        /* No virtio-balloon: free page reporting gave idle pool VMs nothing back (their memory is
         * mostly the snapshot's shared pages) and is one more device to restore. */
        /* The agent channel: one end of a socketpair, so there is no socket file to leak. */
        argv_add(&b, "-device");
        argv_add(&b, "virtio-serial-device");
        argv_add(&b, "-chardev");
        argv_add(&b, "socket,id=agent,fd=%d", QEMU_AGENT_FD);
        argv_add(&b, "-device");
        argv_add(&b, "virtserialport,chardev=agent,name=%s", SBX_AGENT_PORT_NAME);

        /* Networking: slirp's sockets are ordinary sockets of this process, in the VM's cgroup2
         * directory, where sbx-netd's programs enforce the policy. Forwarded ports bind on the host's
         * loopback only. */
        if (o->nic) {
                _cleanup_free_ char *netdev = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&netdev, &len);
                if (f) {
                        fprintf(f, "user,id=net0,ipv6=off%s", o->nic_restrict ? ",restrict=on" : "");
                        for (size_t i = 0; i < o->n_hostfwd; i++)
                                fprintf(f, ",hostfwd=%s:127.0.0.1:%u-:%u", o->hostfwd[i].udp ? "udp" : "tcp",
                                        o->hostfwd[i].host_port, o->hostfwd[i].guest_port);
                }
                if (!f || fclose(f) != 0)
                        b.error = -ENOMEM;
                argv_add(&b, "-netdev");
                argv_add(&b, "%s", netdev ?: "");
                argv_add(&b, "-device");
                argv_add(&b, "virtio-net-device,netdev=net0");
        }

        if (o->qmp) {
                argv_add(&b, "-chardev");
                argv_add(&b, "socket,id=qmp,fd=%d", QEMU_QMP_FD);
                argv_add(&b, "-mon");
                argv_add(&b, "chardev=qmp,mode=control");
        }
        if (o->state_fdset) {
                argv_add(&b, "-add-fd");
                argv_add(&b, "fd=%d,set=%d,opaque=state", QEMU_STATE_FD, QEMU_STATE_FDSET);
        }
        if (o->incoming) {
                argv_add(&b, "-incoming");
                argv_add(&b, "defer");
        }

        if (b.error) {
                strv_free(b.argv);
                return b.error;
        }
        *ret = b.argv;
        return 0;
}

int qemu_images_open(const char *kernel, const char *initrd, const char *rootfs, QemuImages *ret,
                     const char **ret_failed) {
        const char *paths[3] = { kernel, initrd, rootfs };
        int fds[3] = { -EBADF, -EBADF, -EBADF };

        for (size_t i = 0; i < 3; i++) {
                fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fds[i] < 0) {
                        int r = -errno;
                        for (size_t j = 0; j < i; j++)
                                safe_close(fds[j]);
                        if (ret_failed)
                                *ret_failed = paths[i];
                        return r;
                }
        }
        *ret = (QemuImages) { fds[0], fds[1], fds[2] };
        return 0;
}

void qemu_images_close(QemuImages *i) {
        i->kernel_fd = safe_close(i->kernel_fd);
        i->initrd_fd = safe_close(i->initrd_fd);
        i->rootfs_fd = safe_close(i->rootfs_fd);
}
