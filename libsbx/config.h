/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The suite's configuration: one "key = value" file shared by the broker
 * and its workers. Lookup order: the explicit path, $SBX_CONFIG, then
 * SBX_SYSCONFDIR/sbx.conf. A missing file means built-in defaults.
 * docs/configuration.md and the README list every key. */

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "sbx-error.h"

typedef enum SbxAccel {
        SBX_ACCEL_AUTO,
        SBX_ACCEL_KVM,
        SBX_ACCEL_TCG,
} SbxAccel;

typedef struct SbxConfig {
        char *kernel;        /* guest bzImage */
        char *initrd;        /* guest initramfs (cpio) */
        char *rootfs;        /* guest EROFS root image */
        char *qemu;          /* qemu-system-x86_64 */
        char *worker_path;   /* sbx-vmworker binary, for the embedded (spawn) mode */
        char *worker_socket; /* if set, connect here (systemd socket activation) instead of spawning */
        char *runtime_dir;   /* per-VM scratch, sockets */
        char *state_dir;     /* probe results, caches */
        char *cgroup_parent; /* cgroup path (relative to each hierarchy) for VM cgroups; "" disables */
        char *admin_group;   /* members administer other users' jobs and sessions, like root; NULL: root only */
        char *netd_socket;   /* sbx-netd's control socket (networked VMs; docs/network.md) */
        char *cache_socket;  /* sbx-cache's socket (sbx-cache.socket); NULL/"": the broker runs sbx-cache itself
                              * on runtime_dir/cache.sock */
        char *cache_path;    /* sbx-cache binary, for the embedded mode */
        /* A uid (and gid) of its own for each VM's QEMU, from [first, first + count) (count 0: every
         * QEMU runs as sbx-qemu or nobody). Needs a root worker. */
        uint32_t qemu_uid_first, qemu_uid_count;
        SbxAccel accel;
        uint32_t max_vms;          /* concurrent VMs; 0 = derived from host memory and CPUs */
        uint32_t queue_max;        /* requests waiting for a slot before Capacity */
        uint32_t queue_timeout_s;  /* how long a queued request may wait */
        /* Fairness between users (root and admin_group are exempt); 0 = no limit. */
        uint32_t max_vms_per_uid;      /* a uid's runs and sessions at once */
        uint32_t max_sessions_per_uid; /* a uid's open sessions */
        uint32_t default_memory_mb;
        uint32_t vcpus;
        uint32_t boot_timeout_ms;  /* per attempt; one retry */
        uint32_t job_linger_s;     /* finished job objects stay this long */
        /* Admission budget: VMs may use (host memory - reserve) * memory_overcommit
         * (guest RAM plus per-VM overhead), and run at most cpu_overcommit VMs per core. */
        uint32_t memory_reserve_mb;
        double memory_overcommit;
        double cpu_overcommit;
        uint32_t warm_pool_size[_SBX_LANG_MAX]; /* booted VMs with a warm interpreter, per language */
        bool snapshots; /* runs and pool VMs restore L1 memory snapshots (built on first use) */
        uint32_t cache_max_mb; /* L1 snapshot cache (sbx-cache, state_dir/cache/l1): disk use limit, LRU eviction */
} SbxConfig;

/* Fills c (defaults, then the file, then $SBX_ACCEL). On failure error says which file and line. */
int sbx_config_load(SbxConfig *c, const char *path, SbxError *error);
void sbx_config_done(SbxConfig *c);
const char *sbx_accel_to_string(SbxAccel a);
int sbx_accel_from_string(const char *s, SbxAccel *ret);
/* "N" (every language) or "python:N,javascript:N,raw:N" (missing ones: 0). */
int sbx_config_parse_pool_size(const char *v, uint32_t ret[_SBX_LANG_MAX]);
/* Parses one line into c; exposed for the fuzz target. Returns 0, or -EINVAL for an unknown key or bad value. */
int sbx_config_parse_line(SbxConfig *c, const char *line);
