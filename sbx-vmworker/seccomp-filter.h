/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The worker's own seccomp allowlist (docs/security.md, "sbx-vmworker seccomp filter").
 *
 * worker_seccomp_prepare() builds the filter once, early; worker_seccomp_apply() loads it once the
 * worker has read its request and forked the QEMU processes it may need (it never forks or execs
 * after that), and before it reads a byte from the guest. Everything not allowed fails with EPERM.
 * Without libseccomp at build time both are no-ops that log so. */

#include <stdbool.h>

int worker_seccomp_prepare(void);
int worker_seccomp_apply(void);
bool worker_seccomp_applied(void);

/* --seccomp-selftest: applies the filter, checks that ptrace(), socket(AF_INET), mount() ... fail with
 * EPERM and that allowed calls work. Returns the exit status (0 ok, 1 failed, 77 skipped). */
int worker_seccomp_selftest(void);
