/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The boot plan: before its seccomp filter the worker decides how the VM may come up, as a list of
 * boot attempts whose QEMU children are forked in advance (the worker cannot fork later):
 *
 *   no snapshot asked, or no cache:  cold, cold                  (a boot timeout retries once)
 *   sbx-cache has the snapshot:      restore, cold               (a failed restore boots cold)
 *   sbx-cache grants a build:        build, restore, cold        (the build boots cold on a shared
 *                                    RAM file, warms the interpreter and is saved; attempt 2
 *                                    restores our own files; either failing boots cold)
 *   sbx-cache has none, no build:    cold, cold
 *
 * The plan only decides (boot_plan_decide() is the decision alone) and prepares the attempts'
 * command lines and files; boot.c carries it out. See docs/snapshots.md. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "qemu.h"
#include "snapshot.h"

#define BOOT_ATTEMPTS_MAX 3u
/* Cold attempts without a snapshot: one retry after a boot timeout. */
#define BOOT_COLD_ATTEMPTS 2u

typedef enum BootKind {
        BOOT_COLD,
        BOOT_BUILD,   /* cold boot on a shared RAM file, warm, save */
        BOOT_RESTORE, /* restore the snapshot */
} BootKind;

/* What sbx-cache said, as far as the decision goes. */
typedef enum BootLookup {
        BOOT_LOOKUP_NONE, /* no snapshot asked, or sbx-cache unusable */
        BOOT_LOOKUP_HIT,
        BOOT_LOOKUP_BUILD,
        BOOT_LOOKUP_MISS,
} BootLookup;

typedef struct BootDecision {
        unsigned n_attempts;
        BootKind kinds[BOOT_ATTEMPTS_MAX];
        unsigned fallback; /* index of the cold attempt after a failed build or restore; 0: none */
} BootDecision;

typedef struct BootPlan {
        bool snapshot; /* SNAPSHOT = 1: READY reports the tier */
        bool warm;     /* start the interpreter before READY (WARM = 1, or SNAPSHOT = 1) */
        bool rewarm;   /* WARM = 1 with SNAPSHOT = 1: also after a restore (TCG translated nothing yet) */
        BootDecision decision;
        char **argv[BOOT_ATTEMPTS_MAX]; /* NULL: the cold command line */
        int qmp_fd[BOOT_ATTEMPTS_MAX], qmp_child_fd[BOOT_ATTEMPTS_MAX];
        SnapshotFiles files;
        char note[256]; /* why the tier is cold, for READY */
} BootPlan;

/* The decision for a lookup answer: pure, no I/O. */
BootDecision boot_plan_decide(BootLookup lookup);

void boot_plan_init(BootPlan *p, bool snapshot, bool warm);
void boot_plan_done(BootPlan *p);

/* Inputs of the plan: the cold command line's options, QEMU's credentials (a build's RAM file
 * belongs to QEMU's user), the language (part of the cache key). */
typedef struct BootPlanInput {
        const SbxConfig *config;
        const QemuOptions *cold;
        const QemuCreds *creds;
        SbxLanguage language;
} BootPlanInput;

/* Decides and prepares the attempts (command lines, QMP sockets, snapshot files). Never fails:
 * problems mean cold attempts, with the reason in the note. */
void boot_plan_make(BootPlan *p, const BootPlanInput *in);

/* The plan, for boot.c and vm.c (and the tests). */
unsigned boot_plan_n_attempts(const BootPlan *p);
/* Attempt i (0-based); past the last: cold. */
BootKind boot_plan_kind(const BootPlan *p, unsigned i);
/* The cold attempt after a failed build or restore, 0-based; 0: none. */
unsigned boot_plan_fallback(const BootPlan *p);
bool boot_plan_snapshot(const BootPlan *p);
bool boot_plan_warm(const BootPlan *p);
bool boot_plan_rewarm(const BootPlan *p);
/* Why the tier is cold ("" when it is not known to be). */
const char *boot_plan_note(const BootPlan *p);
/* The command line and extra fds of attempt i, or NULL / false for the cold default. */
char **boot_plan_argv(const BootPlan *p, unsigned i);
bool boot_plan_fds(const BootPlan *p, unsigned i, QemuExtraFds *ret);
/* The worker's end of attempt i's QMP socket (-EBADF for cold attempts). */
int boot_plan_qmp_fd(const BootPlan *p, unsigned i);
/* The snapshot's cache entry and files, for the save, commit or report of the attempts. */
SnapshotFiles *boot_plan_files(BootPlan *p);
/* After the QEMU children were forked: closes the worker's copies of their files. */
void boot_plan_after_prepare(BootPlan *p);
