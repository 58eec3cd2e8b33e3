/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* L1 memory snapshots (docs/snapshots.md): the operations on sbx-cache and on one QEMU. Which
 * attempt does what is the boot plan's decision (boot-plan.h), and when it happens is boot.c's;
 * nothing here knows the worker.
 *
 *   snapshot_lookup()         before the seccomp filter: asks sbx-cache with the VM settings and
 *                             the images as fds (a hit brings the read-only RAM and state files)
 *   snapshot_create_build()   a miss that we may build: the new RAM and state files, in our own
 *                             scratch space (sbx-cache copies them at INSERT)
 *   snapshot_restore_start()  a restore's QEMU runs: migrate-incoming by QMP, then H_RESUME
 *   snapshot_save()           a build's QEMU is warm: migrate the device state into the state file
 *   snapshot_commit()         after the build's QEMU is gone: both files go to sbx-cache
 *   snapshot_report_bad()     a restore failed: sbx-cache drops the entry */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache-client.h"
#include "framed-conn.h"
#include "proto.h"
#include "qemu.h"
#include "qmp.h"

/* A restore that takes longer than this is given up (then: a cold boot). */
#define SNAPSHOT_RESTORE_TIMEOUT_USEC (10u * 1000000u)
#define SNAPSHOT_SAVE_TIMEOUT_USEC (30u * 1000000u)
/* The interpreter's start before READY (the boot deadline, renewed at HELLO). */
#define SNAPSHOT_WARM_TIMEOUT_USEC (60u * 1000000u)

/* The cache entry and files of one VM's snapshot. */
typedef struct SnapshotFiles {
        int cache_fd;        /* the connection to sbx-cache: BAD after a failed restore, INSERT after a build */
        char key[65];        /* the cache key, as sbx-cache computed it */
        uint64_t generation; /* of the entry restored (for BAD) */
        int ram_rw_fd;       /* build: the new (unlinked) RAM file (QEMU's fd 9 for the build); sent to sbx-cache */
        int ram_ro_fd;       /* restore: QEMU's fd 9 */
        int state_w_fd;      /* build: the state file, write-only (fdset 2 of the build) */
        int state_r_fd;      /* restore: the state file, read-only (fdset 2 of the restore) */
        int state_keep_fd;   /* build: the state file, read-only, sent to sbx-cache */
} SnapshotFiles;

#define SNAPSHOT_FILES_NULL                                                                                            \
        ((SnapshotFiles) { .cache_fd = -EBADF,                                                                         \
                           .ram_rw_fd = -EBADF,                                                                        \
                           .ram_ro_fd = -EBADF,                                                                        \
                           .state_w_fd = -EBADF,                                                                       \
                           .state_r_fd = -EBADF,                                                                       \
                           .state_keep_fd = -EBADF })

/* Closes the fds QEMU children inherit (after they were forked). */
void snapshot_files_close_child_fds(SnapshotFiles *f);
/* Closes everything; an unused build grant goes back to sbx-cache with the connection. */
void snapshot_files_close(SnapshotFiles *f);

/* SNAPSHOT and WARM from a B_SESSION_OPEN payload (other tags are skipped). -EBADMSG if malformed. */
int snapshot_request_parse(const uint8_t *p, size_t n, bool *ret_snapshot, bool *ret_warm);

/* What starts the interpreter before READY (and before a snapshot). */
const char *snapshot_warm_code(SbxLanguage language);

/* Connects to sbx-cache and looks up the snapshot of settings (every input but the images, which
 * sbx-cache hashes from fds of the cold command line's images). On a hit, the files are set.
 * Returns 0 with *ret_kind (SBX_K_HIT, _BUILD, _MISS) and, for anything but a hit, sbx-cache's reason
 * in *ret_note (allocated; NULL on a hit), or a negative errno (the cache is not usable; error says
 * why). */
int snapshot_lookup(SnapshotFiles *f, const SbxConfig *config, const QemuOptions *cold, const char *settings,
                    uint32_t memory_mb, uint8_t *ret_kind, char **ret_note, SbxError *error);

/* The build's RAM file (memory_mb, owned by QEMU's user so it can map it shared) and state file. */
int snapshot_create_build(SnapshotFiles *f, uint32_t memory_mb, const QemuCreds *creds);

/* The restore's QEMU was released: its QMP greeting, migrate-incoming, then H_RESUME to the guest
 * (which answers G_RESUMED once the state is loaded). Blocks up to SNAPSHOT_RESTORE_TIMEOUT_USEC. */
int snapshot_restore_start(Qmp *qmp, int qmp_fd, FramedConn *guest);

/* Migrates the running build VM's device state into the state file (the RAM file already is the
 * RAM). Returns QEMU's version ("" when unknown) and how long it took. */
int snapshot_save(Qmp *qmp, int qmp_fd, char qemu_version[static 32], uint64_t *ret_save_ms);

/* The build's QEMU is gone: hands the RAM and state files to sbx-cache, which copies, checksums and
 * commits them in the background. */
int snapshot_commit(SnapshotFiles *f, SbxLanguage language, const char *qemu_version, uint64_t save_ms);

/* Tells sbx-cache to drop the restored snapshot, so that the next lookup rebuilds it. */
void snapshot_report_bad(SnapshotFiles *f, const char *why);
