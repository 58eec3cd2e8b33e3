/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Per-VM cgroups: limits for the QEMU process tree and the usage figures of
 * the result. Cgroups are best effort: when they cannot be set up (not root,
 * no controllers, cgroup_parent = "") the VM runs without them.
 *
 *   v2 (unified hierarchy at /sys/fs/cgroup with memory, pids and cpu):
 *       <own cgroup>/<parent>/vm-<run id>-<worker pid>, or <own cgroup>/vm-...
 *       under a systemd delegation
 *   v1: /sys/fs/cgroup/{memory,pids,cpu,cpuacct}/<own cgroup>/<parent>/vm-...
 *       plus /sys/fs/cgroup/unified/<own>/<parent>/vm-... when that cgroup2 exists
 *
 * <own cgroup> is the worker's cgroup in that hierarchy (/proc/self/cgroup),
 * "/" for a worker in the root, so VMs stay inside whatever limits the
 * worker itself is under. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum CgroupMode {
        CGROUP_NONE,
        CGROUP_V1,
        CGROUP_V2,
} CgroupMode;

typedef enum CgroupRole {
        CGROUP_ROLE_MEMORY,
        CGROUP_ROLE_PIDS,
        CGROUP_ROLE_CPU,
        CGROUP_ROLE_CPUACCT,
        CGROUP_ROLE_UNIFIED, /* v1 mode: the controller-less cgroup2, for BPF */
        _CGROUP_ROLE_MAX,
} CgroupRole;

typedef struct VmCgroup {
        CgroupMode mode;
        /* v1: one directory per role (NULL when that controller is missing or shares a hierarchy with an
         * earlier role); v2: only [CGROUP_ROLE_MEMORY] is set and serves all roles. */
        char *dirs[_CGROUP_ROLE_MAX];
        /* The memory and pids limits are set and QEMU went into their cgroups (vm_cgroup_limits_mode()). */
        bool limited;
        /* From vm_cgroup_open_procs(): each dir's cgroup.procs open for writing, so that attaching needs
         * no open() for writing (the worker's seccomp filter allows read-only opens only). */
        bool procs_open;
        int procs_fds[_CGROUP_ROLE_MAX];
} VmCgroup;

typedef struct VmCgroupStats {
        uint64_t cpu_usec;
        uint64_t memory_peak_bytes;
        uint64_t nr_throttled;
        const char *limits_mode; /* vm_cgroup_limits_mode() */
} VmCgroupStats;

/* Creates the VM's cgroups and sets memory = memory_mb + overhead, pids.max,
 * and a CPU quota of vcpus + 1 CPUs. Never fails the run: on trouble it
 * logs, cleans up and returns with mode CGROUP_NONE. */
void vm_cgroup_create(VmCgroup *cg, const char *parent, uint64_t run_id, uint32_t memory_mb, uint32_t vcpus);
/* Opens every cgroup's cgroup.procs for vm_cgroup_attach(); without it, attach opens them by path. */
void vm_cgroup_open_procs(VmCgroup *cg);
/* Moves pid into every cgroup of the VM. Best effort, except for the cgroup2 directory that sbx-netd's
 * programs attach to (vm_cgroup_bpf_dir()): a failure there is returned (networked VMs fail closed). */
int vm_cgroup_attach(VmCgroup *cg, pid_t pid);
/* The VM's cgroup2 directory (v2: its cgroup; v1: the controller-less /sys/fs/cgroup/unified one), for
 * cgroup BPF programs; NULL when there is none. */
const char *vm_cgroup_bpf_dir(const VmCgroup *cg);
/* "v2" or "v1" when the VM's memory and pids limits are in place in cgroups of that version (limits
 * written, QEMU attached); "none" otherwise: no cgroups, a controller missing, or a write refused. */
const char *vm_cgroup_limits_mode(const VmCgroup *cg);
/* All zero (limits_mode "none") without cgroups. */
void vm_cgroup_read_stats(const VmCgroup *cg, VmCgroupStats *ret);
/* Kills whatever is left inside, waits until empty, removes the directories. Idempotent. */
void vm_cgroup_destroy(VmCgroup *cg);
/* Removes vm-* cgroups left by workers that no longer exist (SIGKILLed workers cannot clean up). */
void vm_cgroup_remove_stale(const char *parent);

/* Exposed for tests: "0::/a/b" style lookup of the worker's own cgroup path for controller ("" = v2). */
int cgroup_own_path(const char *proc_self_cgroup, const char *controller, char **ret_path, int *ret_hierarchy);
