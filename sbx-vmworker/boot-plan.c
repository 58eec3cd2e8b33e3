/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "boot-plan.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "validate.h"

BootDecision boot_plan_decide(BootLookup lookup) {
        switch (lookup) {
        case BOOT_LOOKUP_HIT:
                return (BootDecision) { .n_attempts = 2, .kinds = { BOOT_RESTORE, BOOT_COLD }, .fallback = 1 };
        case BOOT_LOOKUP_BUILD:
                return (BootDecision) {
                        .n_attempts = 3, .kinds = { BOOT_BUILD, BOOT_RESTORE, BOOT_COLD }, .fallback = 2 };
        case BOOT_LOOKUP_NONE:
        case BOOT_LOOKUP_MISS:
        default:
                return (BootDecision) { .n_attempts = BOOT_COLD_ATTEMPTS, .kinds = { BOOT_COLD, BOOT_COLD } };
        }
}

void boot_plan_init(BootPlan *p, bool snapshot, bool warm) {
        *p = (BootPlan) {
                .snapshot = snapshot,
                .warm = warm || snapshot,
                .rewarm = warm && snapshot,
                .decision = boot_plan_decide(BOOT_LOOKUP_NONE),
                .files = SNAPSHOT_FILES_NULL,
        };
        for (size_t i = 0; i < BOOT_ATTEMPTS_MAX; i++)
                p->qmp_fd[i] = p->qmp_child_fd[i] = -EBADF;
}

/* Back to cold attempts (the snapshot files are given up; an unused build grant goes back). */
static void reset_attempts(BootPlan *p) {
        for (size_t i = 0; i < BOOT_ATTEMPTS_MAX; i++) {
                strv_free(p->argv[i]);
                p->argv[i] = NULL;
                p->qmp_fd[i] = safe_close(p->qmp_fd[i]);
                p->qmp_child_fd[i] = safe_close(p->qmp_child_fd[i]);
        }
        snapshot_files_close(&p->files);
        p->decision = boot_plan_decide(BOOT_LOOKUP_NONE);
}

void boot_plan_done(BootPlan *p) {
        reset_attempts(p);
}

static void set_note(BootPlan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_note(BootPlan *p, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->note, sizeof p->note, fmt, ap);
        va_end(ap);
        log_info("L1 snapshot: %s", p->note);
}

static int add_qmp(BootPlan *p, unsigned i) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
                return -errno;
        p->qmp_fd[i] = pair[0];
        p->qmp_child_fd[i] = pair[1];
        /* QEMU's end must block (QEMU sets what it needs itself). */
        (void) fd_set_nonblock(pair[1], 0);
        return 0;
}

/* The command line of a snapshot attempt: RAM in a file on fd 9, QMP on fd 8, the state file as fdset 2. */
static int build_argv(BootPlan *p, unsigned i, const QemuOptions *cold) {
        BootKind kind = p->decision.kinds[i];
        QemuOptions o = *cold;
        int r;

        if (kind == BOOT_COLD)
                return 0;
        o.ram = kind == BOOT_BUILD ? QEMU_RAM_SHARED : QEMU_RAM_PRIVATE;
        o.qmp = true;
        o.state_fdset = true;
        o.incoming = kind == BOOT_RESTORE;
        r = add_qmp(p, i);
        if (r < 0)
                return r;
        return qemu_build_argv(&o, &p->argv[i]);
}

void boot_plan_make(BootPlan *p, const BootPlanInput *in) {
        _cleanup_(sbx_error_done) SbxError error = {};
        _cleanup_free_ char *note = NULL;
        const QemuOptions *cold = in->cold;
        char settings[SBX_CACHE_SETTINGS_MAX];
        uint8_t kind;
        int r;

        if (!p->snapshot)
                return;

        /* Every input of the snapshot but the images, which sbx-cache hashes from our fds. */
        snprintf(settings, sizeof settings,
                 "accel=%s\nmachine=%s\ncpu=%s\nmemory_mb=%" PRIu32 "\nvcpus=%" PRIu32
                 "\nlanguage=%s\ncmdline_extra=%s\n",
                 sbx_accel_to_string(cold->accel), QEMU_MACHINE, cold->accel == SBX_ACCEL_KVM ? "host" : "max",
                 cold->memory_mb, cold->vcpus, sbx_language_to_string(in->language), cold->cmdline_extra ?: "");
        r = snapshot_lookup(&p->files, in->config, cold, settings, cold->memory_mb, &kind, &note, &error);
        if (r < 0) {
                set_note(p, "%s", sbx_error_message(&error));
                return;
        }
        if (kind != SBX_K_HIT)
                set_note(p, "%s", note ?: "");
        if (kind != SBX_K_HIT && kind != SBX_K_BUILD) {
                p->files.cache_fd = safe_close(p->files.cache_fd);
                return;
        }

        p->decision = boot_plan_decide(kind == SBX_K_HIT ? BOOT_LOOKUP_HIT : BOOT_LOOKUP_BUILD);
        r = kind == SBX_K_BUILD ? snapshot_create_build(&p->files, cold->memory_mb, in->creds) : 0;
        for (unsigned i = 0; r >= 0 && i < p->decision.n_attempts; i++)
                r = build_argv(p, i, cold);
        if (r < 0) {
                if (kind == SBX_K_HIT)
                        set_note(p, "the restore could not be prepared");
                else
                        set_note(p, "cannot prepare the snapshot files (%s)", strerror(-r));
                reset_attempts(p);
                return;
        }
        if (kind == SBX_K_HIT)
                log_info("L1 snapshot %.12s: restoring it.", p->files.key);
        else
                log_info("L1 snapshot %.12s: building it (%s).", p->files.key, p->note);
}

unsigned boot_plan_n_attempts(const BootPlan *p) {
        return p->decision.n_attempts;
}

BootKind boot_plan_kind(const BootPlan *p, unsigned i) {
        return i < p->decision.n_attempts ? p->decision.kinds[i] : BOOT_COLD;
}

unsigned boot_plan_fallback(const BootPlan *p) {
        return p->decision.fallback;
}

bool boot_plan_snapshot(const BootPlan *p) {
        return p->snapshot;
}

bool boot_plan_warm(const BootPlan *p) {
        return p->warm;
}

bool boot_plan_rewarm(const BootPlan *p) {
        return p->rewarm;
}

const char *boot_plan_note(const BootPlan *p) {
        return p->note;
}

int boot_plan_qmp_fd(const BootPlan *p, unsigned i) {
        return i < BOOT_ATTEMPTS_MAX ? p->qmp_fd[i] : -EBADF;
}

SnapshotFiles *boot_plan_files(BootPlan *p) {
        return &p->files;
}

char **boot_plan_argv(const BootPlan *p, unsigned i) {
        return i < BOOT_ATTEMPTS_MAX ? p->argv[i] : NULL;
}

bool boot_plan_fds(const BootPlan *p, unsigned i, QemuExtraFds *ret) {
        BootKind kind = boot_plan_kind(p, i);
        if (kind == BOOT_COLD)
                return false;
        *ret = (QemuExtraFds) {
                .qmp_fd = p->qmp_child_fd[i],
                .ram_fd = kind == BOOT_BUILD ? p->files.ram_rw_fd : p->files.ram_ro_fd,
                .state_fd = kind == BOOT_BUILD ? p->files.state_w_fd : p->files.state_r_fd,
        };
        return true;
}

void boot_plan_after_prepare(BootPlan *p) {
        snapshot_files_close_child_fds(&p->files);
        for (size_t i = 0; i < BOOT_ATTEMPTS_MAX; i++)
                p->qmp_child_fd[i] = safe_close(p->qmp_child_fd[i]);
}
