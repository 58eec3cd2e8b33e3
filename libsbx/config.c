/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "macro.h"
#include "netd-client.h"
#include "sbx-error.h"

#ifndef SBX_SYSCONFDIR
#define SBX_SYSCONFDIR "/etc/sbx"
#endif
#ifndef SBX_LIBEXECDIR
#define SBX_LIBEXECDIR "/usr/libexec/sbx"
#endif
#ifndef SBX_DATADIR
#define SBX_DATADIR "/usr/share/sbx"
#endif

static const char *const accel_names[] = {
        [SBX_ACCEL_AUTO] = "auto",
        [SBX_ACCEL_KVM] = "kvm",
        [SBX_ACCEL_TCG] = "tcg",
};

const char *sbx_accel_to_string(SbxAccel a) {
        return a <= SBX_ACCEL_TCG ? accel_names[a] : "unknown";
}

int sbx_accel_from_string(const char *s, SbxAccel *ret) {
        for (size_t i = 0; i < ELEMENTSOF(accel_names); i++)
                if (strcmp(s, accel_names[i]) == 0) {
                        *ret = (SbxAccel) i;
                        return 0;
                }
        return -EINVAL;
}

static int set_str(char **field, const char *v) {
        char *s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

static int set_u32(uint32_t *field, const char *v, uint32_t min, uint32_t max) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || x < min || x > max)
                return -EINVAL;
        *field = (uint32_t) x;
        return 0;
}

static int set_bool(bool *field, const char *v) {
        if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
                *field = true;
        else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
                *field = false;
        else
                return -EINVAL;
        return 0;
}

static int set_ratio(double *field, const char *v, double min, double max) {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !(x >= min && x <= max))
                return -EINVAL;
        *field = x;
        return 0;
}

#define WARM_POOL_MAX 64u

int sbx_config_parse_pool_size(const char *v, uint32_t ret[_SBX_LANG_MAX]) {
        static const char *const names[_SBX_LANG_MAX] = {
                [SBX_LANG_PYTHON] = "python",
                [SBX_LANG_JAVASCRIPT] = "javascript",
                [SBX_LANG_RAW] = "raw",
        };
        uint32_t sizes[_SBX_LANG_MAX] = {};
        char buf[256], *save = NULL;

        if (strlen(v) >= sizeof buf)
                return -EINVAL;
        if (set_u32(&sizes[0], v, 0, WARM_POOL_MAX) >= 0) {
                for (size_t i = 0; i < _SBX_LANG_MAX; i++)
                        ret[i] = sizes[0];
                return 0;
        }
        strcpy(buf, v);
        for (char *item = strtok_r(buf, ", ", &save); item; item = strtok_r(NULL, ", ", &save)) {
                char *colon = strchr(item, ':');
                size_t i;

                if (!colon)
                        return -EINVAL;
                *colon = 0;
                for (i = 0; i < _SBX_LANG_MAX; i++)
                        if (strcmp(item, names[i]) == 0)
                                break;
                if (i == _SBX_LANG_MAX || set_u32(&sizes[i], colon + 1, 0, WARM_POOL_MAX) < 0)
                        return -EINVAL;
        }
        memcpy(ret, sizes, sizeof sizes);
        return 0;
}

int sbx_config_parse_line(SbxConfig *c, const char *line) {
        char key[64], value[4096];
        const char *p = line, *eq;
        size_t n;

        while (isspace((unsigned char) *p))
                p++;
        if (*p == 0 || *p == '#' || *p == ';')
                return 0;
        eq = strchr(p, '=');
        if (!eq)
                return -EINVAL;
        n = (size_t) (eq - p);
        while (n > 0 && isspace((unsigned char) p[n - 1]))
                n--;
        if (n == 0 || n >= sizeof key)
                return -EINVAL;
        memcpy(key, p, n);
        key[n] = 0;
        p = eq + 1;
        while (isspace((unsigned char) *p))
                p++;
        n = strlen(p);
        while (n > 0 && isspace((unsigned char) p[n - 1]))
                n--;
        if (n >= sizeof value)
                return -EINVAL;
        memcpy(value, p, n);
        value[n] = 0;

        if (strcmp(key, "kernel") == 0)
                return set_str(&c->kernel, value);
        if (strcmp(key, "initrd") == 0)
                return set_str(&c->initrd, value);
        if (strcmp(key, "rootfs") == 0)
                return set_str(&c->rootfs, value);
        if (strcmp(key, "qemu") == 0)
                return set_str(&c->qemu, value);
        if (strcmp(key, "worker_path") == 0)
                return set_str(&c->worker_path, value);
        if (strcmp(key, "worker_socket") == 0)
                return set_str(&c->worker_socket, value);
        if (strcmp(key, "runtime_dir") == 0)
                return set_str(&c->runtime_dir, value);
        if (strcmp(key, "state_dir") == 0)
                return set_str(&c->state_dir, value);
        if (strcmp(key, "cgroup_parent") == 0)
                return set_str(&c->cgroup_parent, value);
        if (strcmp(key, "qemu_uid_range") == 0) {
                /* "FIRST-LAST", or "" / "none" for one shared uid */
                unsigned long long first, last;
                char tail;
                if (!*value || strcmp(value, "none") == 0) {
                        c->qemu_uid_first = c->qemu_uid_count = 0;
                        return 0;
                }
                if (sscanf(value, "%llu-%llu%c", &first, &last, &tail) != 2 || first < 1000 || last < first ||
                    last >= 0x7fffffffULL || last - first >= 1000000)
                        return -EINVAL;
                c->qemu_uid_first = (uint32_t) first;
                c->qemu_uid_count = (uint32_t) (last - first + 1);
                return 0;
        }
        if (strcmp(key, "netd_socket") == 0)
                return *value ? set_str(&c->netd_socket, value) : -EINVAL;
        if (strcmp(key, "cache_socket") == 0) /* "": the broker runs its own sbx-cache */
                return set_str(&c->cache_socket, value);
        if (strcmp(key, "cache_path") == 0)
                return *value ? set_str(&c->cache_path, value) : -EINVAL;
        if (strcmp(key, "admin_group") == 0)
                return *value ? set_str(&c->admin_group, value) : 0;
        if (strcmp(key, "accel") == 0)
                return sbx_accel_from_string(value, &c->accel);
        if (strcmp(key, "max_vms") == 0)
                return set_u32(&c->max_vms, value, 0, 4096);
        if (strcmp(key, "queue_max") == 0)
                return set_u32(&c->queue_max, value, 0, 100000);
        if (strcmp(key, "queue_timeout_seconds") == 0)
                return set_u32(&c->queue_timeout_s, value, 1, 3600);
        if (strcmp(key, "max_vms_per_uid") == 0)
                return set_u32(&c->max_vms_per_uid, value, 0, 4096);
        if (strcmp(key, "max_sessions_per_uid") == 0)
                return set_u32(&c->max_sessions_per_uid, value, 0, 4096);
        if (strcmp(key, "default_memory_mb") == 0)
                return set_u32(&c->default_memory_mb, value, 128, 1024 * 1024);
        if (strcmp(key, "vcpus") == 0)
                return set_u32(&c->vcpus, value, 1, 64);
        if (strcmp(key, "boot_timeout_ms") == 0)
                return set_u32(&c->boot_timeout_ms, value, 500, 600000);
        if (strcmp(key, "job_linger_seconds") == 0)
                return set_u32(&c->job_linger_s, value, 0, 86400);
        if (strcmp(key, "memory_reserve_mb") == 0)
                return set_u32(&c->memory_reserve_mb, value, 0, 1024 * 1024);
        if (strcmp(key, "memory_overcommit") == 0)
                return set_ratio(&c->memory_overcommit, value, 0.1, 16.0);
        if (strcmp(key, "cpu_overcommit") == 0)
                return set_ratio(&c->cpu_overcommit, value, 0.1, 64.0);
        if (strcmp(key, "snapshots") == 0)
                return set_bool(&c->snapshots, value);
        if (strcmp(key, "warm_pool_size") == 0)
                return sbx_config_parse_pool_size(value, c->warm_pool_size);
        if (strcmp(key, "cache_max_mb") == 0)
                return set_u32(&c->cache_max_mb, value, 0, 1024 * 1024 * 1024);
        return -EINVAL;
}

static int config_defaults(SbxConfig *c) {
        const char *rt = getuid() == 0 ? "/run/sbx" : NULL;
        char buf[256];

        *c = (SbxConfig) {
                .accel = SBX_ACCEL_AUTO,
                .queue_max = 64,
                .queue_timeout_s = 120,
                .default_memory_mb = 256,
                .vcpus = 1,
                .boot_timeout_ms = 20000,
                .cache_max_mb = 4096,
                .job_linger_s = 60,
                .memory_reserve_mb = 1024,
                .memory_overcommit = 1.0,
                /* A booting TCG guest keeps a core busy; idle and warm ones barely use one. */
                .cpu_overcommit = 2.0,
                .snapshots = true,
                /* Far above login users, system users, DynamicUser= and common subuid ranges. */
                .qemu_uid_first = 0x70000000u,
                .qemu_uid_count = 65536,
        };
        if (!rt) {
                const char *x = getenv("XDG_RUNTIME_DIR");
                snprintf(buf, sizeof buf, "%s/sbx", x ?: "/tmp");
                rt = buf;
        }
        if (set_str(&c->kernel, SBX_DATADIR "/bzImage") < 0 || set_str(&c->initrd, SBX_DATADIR "/initramfs.cpio") < 0 ||
            set_str(&c->rootfs, SBX_DATADIR "/rootfs.erofs") < 0 || set_str(&c->qemu, "qemu-system-x86_64") < 0 ||
            set_str(&c->worker_path, SBX_LIBEXECDIR "/sbx-vmworker") < 0 ||
            set_str(&c->cache_path, SBX_LIBEXECDIR "/sbx-cache") < 0 || set_str(&c->runtime_dir, rt) < 0 ||
            set_str(&c->state_dir, getuid() == 0 ? "/var/lib/sbx" : "/tmp/sbx-state") < 0 ||
            set_str(&c->cgroup_parent, "sbx") < 0 || set_str(&c->netd_socket, NETD_CONTROL_SOCKET) < 0)
                return -ENOMEM;
        return 0;
}

int sbx_config_load(SbxConfig *c, const char *path, SbxError *error) {
        _cleanup_fclose_ FILE *f = NULL;
        char line[4200];
        unsigned lineno = 0;
        int r;

        r = config_defaults(c);
        if (r < 0)
                return sbx_error_set_errno(error, r);

        if (!path)
                path = getenv("SBX_CONFIG");
        if (!path)
                path = SBX_SYSCONFDIR "/sbx.conf";

        f = fopen(path, "re");
        if (!f && errno != ENOENT)
                return sbx_error_set(error, -errno, "Failed to open %s: %s", path, strerror(errno));
        while (f && fgets(line, sizeof line, f)) {
                lineno++;
                size_t n = strcspn(line, "\n");
                /* fgets() split a line longer than the buffer: refuse it, or its
                 * tail would be parsed as a line of its own. */
                if (line[n] != '\n' && getc(f) != EOF)
                        return sbx_error_set(error, -EINVAL, "%s:%u: line is too long.", path, lineno);
                line[n] = 0;
                r = sbx_config_parse_line(c, line);
                if (r == -ENOMEM)
                        return sbx_error_set_errno(error, r);
                if (r < 0)
                        return sbx_error_set(error, r, "%s:%u: invalid line: %s", path, lineno, line);
        }

        /* The environment overrides the file, for one-off runs and tests. */
        const char *e = getenv("SBX_ACCEL");
        if (e && *e && sbx_accel_from_string(e, &c->accel) < 0)
                return sbx_error_set(error, -EINVAL, "SBX_ACCEL=%s is not one of auto, kvm, tcg.", e);
        return 0;
}

void sbx_config_done(SbxConfig *c) {
        free(c->kernel);
        free(c->initrd);
        free(c->rootfs);
        free(c->qemu);
        free(c->worker_path);
        free(c->worker_socket);
        free(c->runtime_dir);
        free(c->state_dir);
        free(c->cgroup_parent);
        free(c->admin_group);
        free(c->netd_socket);
        free(c->cache_socket);
        free(c->cache_path);
        *c = (SbxConfig) {};
}
