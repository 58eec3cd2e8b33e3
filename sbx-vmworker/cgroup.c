/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define CGROUP_UNIFIED_V1 CGROUP_ROOT "/unified"
/* QEMU itself, its TCG translation cache and I/O buffers, on top of guest RAM. */
#define VM_MEMORY_OVERHEAD_MB 256u
/* QEMU's threads count against pids.max: main loop, RCU, vCPUs, a bounded I/O pool. */
#define VM_PIDS_MAX 64u
#define VM_CPU_PERIOD_USEC 100000u
#define VM_DESTROY_TIMEOUT_USEC (3u * 1000000u)

static const char *const role_controller[_CGROUP_ROLE_MAX] = {
        [CGROUP_ROLE_MEMORY] = "memory",
        [CGROUP_ROLE_PIDS] = "pids",
        [CGROUP_ROLE_CPU] = "cpu",
        [CGROUP_ROLE_CPUACCT] = "cpuacct",
        [CGROUP_ROLE_UNIFIED] = "",
};

static bool is_fs_type(const char *path, long magic) {
        struct statfs sfs;
        return statfs(path, &sfs) == 0 && (long) sfs.f_type == magic;
}

int cgroup_own_path(const char *proc_self_cgroup, const char *controller, char **ret_path, int *ret_hierarchy) {
        const char *line = proc_self_cgroup;

        while (line && *line) {
                const char *eol = strchrnul(line, '\n');
                const char *c1 = memchr(line, ':', (size_t) (eol - line));
                const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t) (eol - c1 - 1)) : NULL;

                if (c2) {
                        bool match;
                        size_t clen = strlen(controller);

                        if (clen == 0)
                                match = c2 == c1 + 1 && strncmp(line, "0:", 2) == 0;
                        else {
                                /* Controllers are a comma-separated list. */
                                match = false;
                                for (const char *p = c1 + 1; p < c2;) {
                                        const char *e = memchr(p, ',', (size_t) (c2 - p)) ?: c2;
                                        if ((size_t) (e - p) == clen && strncmp(p, controller, clen) == 0)
                                                match = true;
                                        p = e + 1;
                                }
                        }
                        if (match) {
                                char *s = strndup(c2 + 1, (size_t) (eol - c2 - 1));
                                if (!s)
                                        return -ENOMEM;
                                if (ret_hierarchy)
                                        *ret_hierarchy = atoi(line);
                                *ret_path = s;
                                return 0;
                        }
                }
                line = *eol ? eol + 1 : NULL;
        }
        return -ENOENT;
}

/* mkdir -p for a path below an existing mount point. */
static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* "<mount><own>/<parent>", without doubled slashes. */
static char *cgroup_base_path(const char *mount, const char *own, const char *parent) {
        char *s;
        if (asprintf(&s, "%s%s%s%s", mount, strcmp(own, "/") == 0 ? "" : own, *parent == '/' ? "" : "/", parent) < 0)
                return NULL;
        return s;
}

static int cgroup_write(const char *dir, const char *file, const char *value) {
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, file) < 0)
                return -ENOMEM;
        return write_string_file(p, value);
}

static int cgroup_read_u64(const char *dir, const char *file, const char *key, uint64_t *ret) {
        _cleanup_free_ char *p = NULL;
        char buf[4096];
        int r;

        if (asprintf(&p, "%s/%s", dir, file) < 0)
                return -ENOMEM;
        r = read_small_file(p, buf, sizeof buf);
        if (r < 0)
                return r;
        if (!key)
                return sscanf(buf, "%" SCNu64, ret) == 1 ? 0 : -EINVAL;

        size_t klen = strlen(key);
        for (char *line = buf; line && *line;) {
                char *eol = strchr(line, '\n');
                if (eol)
                        *eol = 0;
                if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
                        return sscanf(line + klen + 1, "%" SCNu64, ret) == 1 ? 0 : -EINVAL;
                line = eol ? eol + 1 : NULL;
        }
        return -ENOENT;
}

static char *read_proc_self_cgroup(void) {
        char *buf = malloc(8192);
        if (!buf)
                return NULL;
        if (read_small_file("/proc/self/cgroup", buf, 8192) < 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static bool has_v2_controllers(const char *dir) {
        _cleanup_free_ char *p = NULL;
        char buf[1024];

        if (asprintf(&p, "%s/cgroup.controllers", dir) < 0 || read_small_file(p, buf, sizeof buf) < 0)
                return false;
        const char *need[] = { "memory", "pids", "cpu" };
        for (size_t i = 0; i < ELEMENTSOF(need); i++) {
                bool found = false;
                for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save))
                        if (strcmp(w, need[i]) == 0)
                                found = true;
                /* strtok_r cut buf up: read it again for the next name. */
                if (!found || read_small_file(p, buf, sizeof buf) < 0)
                        return false;
        }
        return true;
}

static int vm_cgroup_name(char *buf, size_t size, uint64_t run_id) {
        int n = snprintf(buf, size, "vm-%" PRIu64 "-%d", run_id, (int) getpid());
        return n > 0 && (size_t) n < size ? 0 : -ENAMETOOLONG;
}

/* Enables memory, pids and cpu for the children of top, of dir, and of every level in between. */
static int v2_enable_controllers(const char *top, const char *dir) {
        _cleanup_free_ char *p = strdup(dir);
        size_t len = strlen(top);
        int r;

        if (!p)
                return -ENOMEM;
        if (strncmp(top, dir, len) != 0)
                return -EINVAL;
        for (char *s = p + len;; s++) {
                if (*s == '/' || *s == 0) {
                        char saved = *s;
                        *s = 0;
                        r = cgroup_write(p, "cgroup.subtree_control", "+memory +pids +cpu");
                        *s = saved;
                        if (r < 0)
                                return r;
                }
                if (*s == 0)
                        break;
        }
        return 0;
}

/* Whether we are the only process in dir. */
static bool v2_is_alone(const char *dir) {
        _cleanup_free_ char *p = NULL;
        char buf[256];
        int n = 0;
        bool self = false;

        if (asprintf(&p, "%s/cgroup.procs", dir) < 0 || read_small_file(p, buf, sizeof buf) < 0)
                return false;
        for (char *save = NULL, *w = strtok_r(buf, "\n", &save); w; w = strtok_r(NULL, "\n", &save)) {
                n++;
                self = self || atoi(w) == (int) getpid();
        }
        return n == 1 && self;
}

static void vm_cgroup_set_limits_v1(VmCgroup *cg, uint32_t memory_mb, uint32_t vcpus) {
        bool memory = false, pids = false;
        char v[64];
        int r;

        if (cg->dirs[CGROUP_ROLE_MEMORY]) {
                snprintf(v, sizeof v, "%" PRIu64, ((uint64_t) memory_mb + VM_MEMORY_OVERHEAD_MB) << 20);
                r = cgroup_write(cg->dirs[CGROUP_ROLE_MEMORY], "memory.limit_in_bytes", v);
                if (r < 0)
                        log_warning_errno(r, "Failed to set the VM's memory limit: %m");
                memory = r >= 0;
                /* No swap either, where swap accounting exists. */
                (void) cgroup_write(cg->dirs[CGROUP_ROLE_MEMORY], "memory.memsw.limit_in_bytes", v);
        }
        if (cg->dirs[CGROUP_ROLE_PIDS]) {
                snprintf(v, sizeof v, "%u", VM_PIDS_MAX);
                r = cgroup_write(cg->dirs[CGROUP_ROLE_PIDS], "pids.max", v);
                if (r < 0)
                        log_warning_errno(r, "Failed to set the VM's pids.max: %m");
                pids = r >= 0;
        }
        cg->limited = memory && pids;
        if (cg->dirs[CGROUP_ROLE_CPU]) {
                snprintf(v, sizeof v, "%u", VM_CPU_PERIOD_USEC);
                r = cgroup_write(cg->dirs[CGROUP_ROLE_CPU], "cpu.cfs_period_us", v);
                snprintf(v, sizeof v, "%" PRIu64, ((uint64_t) vcpus + 1) * VM_CPU_PERIOD_USEC);
                if (r >= 0)
                        r = cgroup_write(cg->dirs[CGROUP_ROLE_CPU], "cpu.cfs_quota_us", v);
                if (r < 0)
                        log_warning_errno(r, "Failed to set the VM's CPU quota: %m");
        }
}

static void vm_cgroup_set_limits_v2(VmCgroup *cg, uint32_t memory_mb, uint32_t vcpus) {
        const char *dir = cg->dirs[CGROUP_ROLE_MEMORY];
        char v[64];
        int r;

        snprintf(v, sizeof v, "%" PRIu64, ((uint64_t) memory_mb + VM_MEMORY_OVERHEAD_MB) << 20);
        r = cgroup_write(dir, "memory.max", v);
        if (r < 0)
                log_warning_errno(r, "Failed to set the VM's memory.max: %m");
        cg->limited = r >= 0;
        (void) cgroup_write(dir, "memory.swap.max", "0");
        snprintf(v, sizeof v, "%u", VM_PIDS_MAX);
        r = cgroup_write(dir, "pids.max", v);
        if (r < 0)
                log_warning_errno(r, "Failed to set the VM's pids.max: %m");
        cg->limited = cg->limited && r >= 0;
        snprintf(v, sizeof v, "%" PRIu64 " %u", ((uint64_t) vcpus + 1) * VM_CPU_PERIOD_USEC, VM_CPU_PERIOD_USEC);
        r = cgroup_write(dir, "cpu.max", v);
        if (r < 0)
                log_warning_errno(r, "Failed to set the VM's cpu.max: %m");
}

static int vm_cgroup_create_v2(VmCgroup *cg, const char *proc_cgroup, const char *parent, const char *name) {
        _cleanup_free_ char *own = NULL, *own_dir = NULL, *base = NULL, *dir = NULL;
        int r;

        r = cgroup_own_path(proc_cgroup, "", &own, NULL);
        if (r < 0)
                return r;
        own_dir = cgroup_base_path(CGROUP_ROOT, own, "");
        if (!own_dir)
                return -ENOMEM;
        if (!has_v2_controllers(own_dir))
                return -EOPNOTSUPP;

        /* At the root, group VMs below <parent>. Otherwise we are in a systemd delegation (Delegate=yes):
         * our unit's cgroup already groups the VM, and only it is ours to change. */
        bool at_root = strcmp(own, "/") == 0;
        base = at_root ? cgroup_base_path(CGROUP_ROOT, own, parent) : strdup(own_dir);
        if (!base)
                return -ENOMEM;
        const char *top = at_root ? CGROUP_ROOT : own_dir;
        r = mkdir_parents(base);
        if (r < 0)
                return r;
        /* Controllers cannot be delegated from a cgroup that has processes (other than the root). In our
         * own delegated unit cgroup we are the only process: step aside into a leaf of our own. */
        r = v2_enable_controllers(top, base);
        if (r == -EBUSY && !at_root && v2_is_alone(own_dir)) {
                _cleanup_free_ char *leaf = NULL;
                if (asprintf(&leaf, "%s/worker", own_dir) < 0)
                        return -ENOMEM;
                if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
                        return -errno;
                r = cgroup_write(leaf, "cgroup.procs", "0");
                if (r >= 0)
                        r = v2_enable_controllers(top, base);
        }
        if (r < 0)
                return log_debug_errno(r, "Cannot enable cgroup controllers below %s: %m", base);

        if (asprintf(&dir, "%s/%s", base, name) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        cg->mode = CGROUP_V2;
        cg->dirs[CGROUP_ROLE_MEMORY] = TAKE_PTR(dir);
        return 0;
}

static int vm_cgroup_create_v1(VmCgroup *cg, const char *proc_cgroup, const char *parent, const char *name) {
        int hierarchies[_CGROUP_ROLE_MAX];
        int r;

        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++) {
                _cleanup_free_ char *own = NULL, *mount = NULL, *base = NULL, *dir = NULL;
                const char *controller = role_controller[role];
                bool shared = false;

                hierarchies[role] = -1;
                if (role == CGROUP_ROLE_UNIFIED) {
                        if (!is_fs_type(CGROUP_UNIFIED_V1, CGROUP2_SUPER_MAGIC))
                                continue;
                        mount = strdup(CGROUP_UNIFIED_V1);
                } else {
                        if (asprintf(&mount, CGROUP_ROOT "/%s", controller) < 0)
                                mount = NULL;
                        else if (!is_fs_type(mount, CGROUP_SUPER_MAGIC)) {
                                log_debug("No cgroup v1 %s controller at %s, skipping it.", controller, mount);
                                continue;
                        }
                }
                if (!mount)
                        return -ENOMEM;
                r = cgroup_own_path(proc_cgroup, controller, &own, &hierarchies[role]);
                if (r < 0) {
                        log_debug_errno(r, "Cannot find our own %s cgroup, skipping it: %m",
                                        *controller ? controller : "cgroup2");
                        continue;
                }
                /* cpu and cpuacct are often one hierarchy mounted twice. */
                for (CgroupRole earlier = 0; earlier < role; earlier++)
                        if (cg->dirs[earlier] && hierarchies[earlier] == hierarchies[role] &&
                            role != CGROUP_ROLE_UNIFIED)
                                shared = true;
                if (shared)
                        continue;

                base = cgroup_base_path(mount, own, parent);
                if (!base)
                        return -ENOMEM;
                r = mkdir_parents(base);
                if (r < 0)
                        return log_debug_errno(r, "Cannot create %s: %m", base);
                if (asprintf(&dir, "%s/%s", base, name) < 0)
                        return -ENOMEM;
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return log_debug_errno(errno, "Cannot create %s: %m", dir);
                cg->dirs[role] = TAKE_PTR(dir);
        }
        if (!cg->dirs[CGROUP_ROLE_MEMORY] && !cg->dirs[CGROUP_ROLE_PIDS] && !cg->dirs[CGROUP_ROLE_CPU])
                return -EOPNOTSUPP;
        cg->mode = CGROUP_V1;
        return 0;
}

void vm_cgroup_create(VmCgroup *cg, const char *parent, uint64_t run_id, uint32_t memory_mb, uint32_t vcpus) {
        _cleanup_free_ char *proc_cgroup = NULL;
        char name[64];
        int r;

        *cg = (VmCgroup) {};
        if (!parent || !*parent) {
                log_debug("cgroup_parent is empty: the VM runs without its own cgroups.");
                return;
        }
        if (vm_cgroup_name(name, sizeof name, run_id) < 0)
                return;
        proc_cgroup = read_proc_self_cgroup();
        if (!proc_cgroup) {
                log_debug("Cannot read /proc/self/cgroup: the VM runs without its own cgroups.");
                return;
        }

        if (is_fs_type(CGROUP_ROOT, CGROUP2_SUPER_MAGIC))
                r = vm_cgroup_create_v2(cg, proc_cgroup, parent, name);
        else
                r = vm_cgroup_create_v1(cg, proc_cgroup, parent, name);
        if (r < 0) {
                log_debug_errno(r, "Cannot set up cgroups for the VM, running without: %m");
                vm_cgroup_destroy(cg);
                return;
        }

        if (cg->mode == CGROUP_V2)
                vm_cgroup_set_limits_v2(cg, memory_mb, vcpus);
        else
                vm_cgroup_set_limits_v1(cg, memory_mb, vcpus);
        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++)
                if (cg->dirs[role])
                        log_debug("VM cgroup: %s", cg->dirs[role]);
}

void vm_cgroup_open_procs(VmCgroup *cg) {
        if (cg->procs_open)
                return;
        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++) {
                cg->procs_fds[role] = -EBADF;
                if (!cg->dirs[role])
                        continue;
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/cgroup.procs", cg->dirs[role]) < 0)
                        continue;
                cg->procs_fds[role] = open(p, O_WRONLY | O_CLOEXEC | O_NOCTTY);
                if (cg->procs_fds[role] < 0)
                        log_debug_errno(errno, "Failed to open %s: %m", p);
        }
        cg->procs_open = true;
}

static void vm_cgroup_close_procs(VmCgroup *cg) {
        if (!cg->procs_open)
                return;
        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++)
                cg->procs_fds[role] = safe_close(cg->procs_fds[role]);
        cg->procs_open = false;
}

const char *vm_cgroup_bpf_dir(const VmCgroup *cg) {
        if (cg->mode == CGROUP_V2)
                return cg->dirs[CGROUP_ROLE_MEMORY];
        if (cg->mode == CGROUP_V1)
                return cg->dirs[CGROUP_ROLE_UNIFIED];
        return NULL;
}

int vm_cgroup_attach(VmCgroup *cg, pid_t pid) {
        const char *bpf_dir = vm_cgroup_bpf_dir(cg);
        char v[32];
        int ret = 0;

        snprintf(v, sizeof v, "%d", (int) pid);
        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++) {
                if (!cg->dirs[role])
                        continue;
                int r;
                if (cg->procs_open && cg->procs_fds[role] >= 0)
                        r = write(cg->procs_fds[role], v, strlen(v)) == (ssize_t) strlen(v) ? 0 : -errno;
                else
                        r = cgroup_write(cg->dirs[role], "cgroup.procs", v);
                if (r < 0) {
                        log_warning_errno(r, "Failed to move QEMU into %s: %m", cg->dirs[role]);
                        if (cg->dirs[role] == bpf_dir)
                                ret = r;
                        /* v2 keeps everything in the memory role's directory. */
                        if (role == CGROUP_ROLE_MEMORY || role == CGROUP_ROLE_PIDS)
                                cg->limited = false;
                }
        }
        return ret;
}

const char *vm_cgroup_limits_mode(const VmCgroup *cg) {
        if (!cg->limited)
                return "none";
        return cg->mode == CGROUP_V2 ? "v2" : cg->mode == CGROUP_V1 ? "v1" : "none";
}

void vm_cgroup_read_stats(const VmCgroup *cg, VmCgroupStats *ret) {
        uint64_t v;

        *ret = (VmCgroupStats) { .limits_mode = vm_cgroup_limits_mode(cg) };
        if (cg->mode == CGROUP_V2) {
                const char *dir = cg->dirs[CGROUP_ROLE_MEMORY];
                if (cgroup_read_u64(dir, "cpu.stat", "usage_usec", &v) >= 0)
                        ret->cpu_usec = v;
                if (cgroup_read_u64(dir, "cpu.stat", "nr_throttled", &v) >= 0)
                        ret->nr_throttled = v;
                if (cgroup_read_u64(dir, "memory.peak", NULL, &v) >= 0)
                        ret->memory_peak_bytes = v;
        } else if (cg->mode == CGROUP_V1) {
                /* cpuacct may share the cpu hierarchy, in which case only the cpu directory exists. */
                const char *acct = cg->dirs[CGROUP_ROLE_CPUACCT] ?: cg->dirs[CGROUP_ROLE_CPU];
                if (acct && cgroup_read_u64(acct, "cpuacct.usage", NULL, &v) >= 0)
                        ret->cpu_usec = v / 1000u;
                if (cg->dirs[CGROUP_ROLE_CPU] &&
                    cgroup_read_u64(cg->dirs[CGROUP_ROLE_CPU], "cpu.stat", "nr_throttled", &v) >= 0)
                        ret->nr_throttled = v;
                if (cg->dirs[CGROUP_ROLE_MEMORY] &&
                    cgroup_read_u64(cg->dirs[CGROUP_ROLE_MEMORY], "memory.max_usage_in_bytes", NULL, &v) >= 0)
                        ret->memory_peak_bytes = v;
        }
}

/* SIGKILLs every process in dir; returns how many were found. */
static int cgroup_kill_all(const char *dir) {
        _cleanup_free_ char *p = NULL;
        char buf[4096];
        int n = 0;

        if (asprintf(&p, "%s/cgroup.procs", dir) < 0 || read_small_file(p, buf, sizeof buf) < 0)
                return 0;
        for (char *save = NULL, *w = strtok_r(buf, "\n", &save); w; w = strtok_r(NULL, "\n", &save)) {
                pid_t pid = (pid_t) atoi(w);
                if (pid > 0 && pid != getpid()) {
                        (void) kill(pid, SIGKILL);
                        n++;
                }
        }
        return n;
}

/* Empties and removes one cgroup directory. */
static int cgroup_remove(const char *dir) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + VM_DESTROY_TIMEOUT_USEC;

        for (;;) {
                if (rmdir(dir) >= 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
                /* Still populated: whatever is left belongs to the VM and has to go. */
                (void) cgroup_kill_all(dir);
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return -EBUSY;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
        }
}

void vm_cgroup_destroy(VmCgroup *cg) {
        vm_cgroup_close_procs(cg);
        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++) {
                if (!cg->dirs[role])
                        continue;
                int r = cgroup_remove(cg->dirs[role]);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove cgroup %s: %m", cg->dirs[role]);
                else
                        log_debug("Removed cgroup %s", cg->dirs[role]);
                free(cg->dirs[role]);
                cg->dirs[role] = NULL;
        }
        cg->mode = CGROUP_NONE;
        cg->limited = false;
}

/* Removes vm-<id>-<pid> children of base whose worker pid is gone. */
static void cgroup_remove_stale_in(const char *base) {
        DIR *d = opendir(base);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                uint64_t run_id;
                int pid, end = 0;

                if (de->d_type != DT_DIR)
                        continue;
                if (sscanf(de->d_name, "vm-%" SCNu64 "-%d%n", &run_id, &pid, &end) != 2 ||
                    de->d_name[end] != 0 || pid <= 0 || pid == getpid())
                        continue;
                if (kill(pid, 0) >= 0 || errno != ESRCH)
                        continue;

                _cleanup_free_ char *dir = NULL;
                if (asprintf(&dir, "%s/%s", base, de->d_name) < 0)
                        break;
                int r = cgroup_remove(dir);
                if (r < 0)
                        log_debug_errno(r, "Failed to remove stale cgroup %s: %m", dir);
                else
                        log_info("Removed stale cgroup %s (its worker %d is gone).", dir, pid);
        }
        closedir(d);
}

void vm_cgroup_remove_stale(const char *parent) {
        _cleanup_free_ char *proc_cgroup = NULL;

        if (!parent || !*parent || geteuid() != 0)
                return;
        proc_cgroup = read_proc_self_cgroup();
        if (!proc_cgroup)
                return;

        if (is_fs_type(CGROUP_ROOT, CGROUP2_SUPER_MAGIC)) {
                _cleanup_free_ char *own = NULL, *base = NULL;
                if (cgroup_own_path(proc_cgroup, "", &own, NULL) < 0 || strcmp(own, "/") != 0)
                        return; /* delegated: systemd removes our unit's cgroup */
                base = cgroup_base_path(CGROUP_ROOT, own, parent);
                if (base)
                        cgroup_remove_stale_in(base);
                return;
        }

        for (CgroupRole role = 0; role < _CGROUP_ROLE_MAX; role++) {
                _cleanup_free_ char *own = NULL, *mount = NULL, *base = NULL;
                const char *controller = role_controller[role];

                if (role == CGROUP_ROLE_UNIFIED)
                        mount = strdup(CGROUP_UNIFIED_V1);
                else if (asprintf(&mount, CGROUP_ROOT "/%s", controller) < 0)
                        mount = NULL;
                if (!mount || cgroup_own_path(proc_cgroup, controller, &own, NULL) < 0)
                        continue;
                base = cgroup_base_path(mount, own, parent);
                if (base)
                        cgroup_remove_stale_in(base);
        }
}
