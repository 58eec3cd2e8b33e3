/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* From the open request to a VM ready to boot, all before the first byte from the guest:
 * accelerator (and the host's TSC for TCG), exposed ports, the cold QEMU command line, cgroups, the
 * sbx-netd registration, QEMU's credentials and uid, the boot plan (boot-plan.h), one forked QEMU
 * per attempt, and last the worker's seccomp filter (after it the worker forks and connects
 * nothing). */

typedef struct Worker Worker;

/* Returns 0, or fails the VM (worker_fail()) and returns a negative errno. */
int setup_vm(Worker *w);
