/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* L1 memory snapshots and warm interpreters for session mode (docs/snapshots.md).
 *
 * B_SESSION_OPEN with SNAPSHOT = 1: before its seccomp filter the worker asks sbx-cache
 * (cache-client.h) with the VM settings and the images as fds.
 *   K_HIT:            attempt 1 restores it (the RAM fd mapped private and read-only, device state
 *                     by migrate-incoming), the guest gets H_RESUME (clock, RNG seed) and answers
 *                     G_RESUMED: W_SESSION_READY tier "l1". Any failure: C_BAD to sbx-cache, and
 *                     attempt 2 boots cold.
 *   K_BUILD:          attempt 1 boots cold with its RAM in a new unlinked file of ours (share=on),
 *                     starts the interpreter (a no-op session exec), and migrates the device state
 *                     into a state file (x-ignore-shared: the RAM file is the RAM). That QEMU is
 *                     killed, both files go to sbx-cache (C_INSERT: it copies and commits them),
 *                     and attempt 2 restores our files, so the session VM never runs on the shared
 *                     file: tier "cold", SNAPSHOT_SAVED 1. If the save fails, the session continues
 *                     on the first VM; if the restore fails, attempt 3 boots cold.
 *   K_MISS, no cache: a cold boot, with the reason in the note.
 * WARM = 1: the interpreter is started before W_SESSION_READY (always so in a snapshot). With
 * SNAPSHOT = 1 too, the restored VM also runs the warm-up before READY: TCG starts with an empty
 * translation cache, so this moves ~50 ms from the first exec to before READY (for pools). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qemu.h"
#include "worker.h"

#define SNAPSHOT_ATTEMPTS_MAX 3u
/* A restore that takes longer than this is given up (then: a cold boot). */
#define SNAPSHOT_RESTORE_TIMEOUT_USEC (10u * 1000000u)
#define SNAPSHOT_SAVE_TIMEOUT_USEC (30u * 1000000u)
/* The interpreter's start before READY (the boot deadline, renewed at HELLO). */
#define SNAPSHOT_WARM_TIMEOUT_USEC (60u * 1000000u)

typedef struct Snapshot Snapshot;

/* SNAPSHOT and WARM from a B_SESSION_OPEN payload (other tags are skipped). -EBADMSG if malformed. */
int snapshot_request_parse(const uint8_t *p, size_t n, bool *ret_snapshot, bool *ret_warm);

int snapshot_new(Worker *w, bool snapshot, bool warm, Snapshot **ret);
Snapshot *snapshot_free(Snapshot *s);

/* The host's TSC frequency (host-tsc.h), kept in state_dir/host-tsc for this host boot. */
int snapshot_host_tsc_khz(Snapshot *s, uint32_t *ret);

/* Before the seccomp filter, after the cold command line (cold) and QEMU's credentials are known:
 * decides the attempts (sets w->n_attempts) and prepares their command lines and files. Never
 * fails: problems mean a cold boot, with the reason in the note. */
void snapshot_plan(Snapshot *s, const QemuOptions *cold);
/* The command line and extra fds of attempt i (0-based), or NULL / false for the cold default. */
char **snapshot_attempt_argv(Snapshot *s, unsigned i);
bool snapshot_attempt_fds(Snapshot *s, unsigned i, QemuExtraFds *ret);
/* After the QEMU children were forked: closes the worker's copies of their files. */
void snapshot_after_prepare(Snapshot *s);

/* worker_boot() released attempt w->boot_attempt: starts the restore if it is one. */
void snapshot_on_released(Snapshot *s);
/* The guest said HELLO (cold boot). Returns true (always, in session mode with a Snapshot): it
 * either warms the interpreter (state WORKER_WARMING) or sends W_SESSION_READY itself. */
bool snapshot_on_hello(Snapshot *s);
/* Guest frames while BOOTING a restore (G_RESUMED) or WARMING. Returns 1 if the caller should stop
 * reading, 0 otherwise. */
int snapshot_on_guest_frame(Snapshot *s, uint8_t type, const uint8_t *p, size_t n);
/* True while a restore attempt waits for G_RESUMED. */
bool snapshot_expects_resume(Snapshot *s);
/* The current attempt (build or restore) failed: boots the cold fallback and returns true, or
 * returns false when there is none (the caller fails as usual). */
bool snapshot_fallback(Snapshot *s, const char *why);
