/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "broker.h"
#include "bus-names.h"
#include "fdio.h"
#include "job.h"
#include "pool.h"
#include "log.h"
#include "macro.h"
#include "request.h"
#include "validate.h"

static int read_request_into_job(Broker *b, sd_bus_message *m, Job **ret, sd_bus_error *error) {
        SbxRequest req;
        int r;

        request_init(&req, b->config.default_memory_mb);
        r = request_read(m, &req, REQ_KEYS_RUN, b->max_memory_mb, error);
        if (r >= 0)
                r = job_new(b, &req, m, ret, error);
        request_done(&req);
        return r;
}

static int method_run(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Broker *b = userdata;
        Job *j;
        int r;

        r = read_request_into_job(b, m, &j, error);
        if (r < 0)
                return r;
        j->reply_to = sd_bus_message_ref(m);
        return 1; /* the reply comes when the job completes */
}

static int method_start_run(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Broker *b = userdata;
        Job *j;
        int r;

        r = read_request_into_job(b, m, &j, error);
        if (r < 0)
                return r;
        j->emit_signals = true;
        /* Reply before the job can produce signals, so the path reaches the caller first. */
        r = sd_bus_reply_method_return(m, "o", j->path);
        if (r < 0) {
                job_free(j);
                return r;
        }
        return 1;
}

/* The broker's own footprint, for soak tests: VmRSS and VmHWM in kB, open fds. */
static void self_usage(uint64_t *ret_rss_kb, uint64_t *ret_hwm_kb, uint32_t *ret_fds) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
        char line[256];
        unsigned long long v;

        *ret_rss_kb = *ret_hwm_kb = 0;
        *ret_fds = 0;
        while (f && fgets(line, sizeof line, f)) {
                if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
                        *ret_rss_kb = v;
                else if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
                        *ret_hwm_kb = v;
        }
        for (struct dirent *de; d && (de = readdir(d));)
                if (de->d_name[0] != '.')
                        (*ret_fds)++;
        if (*ret_fds > 0)
                (*ret_fds)--; /* the directory's own fd */
}

static int method_get_status(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Broker *b = userdata;
        int r;
        (void) error;

        r = sd_bus_message_new_method_return(m, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}", "version", "s", SBX_VERSION, "accel", "s",
                                  sbx_accel_to_string(b->accel), "max_vms", "u", admission_limits(b->admission)->max_vms,
                                  "active_runs", "u", admission_n_active(b->admission), "queued", "u",
                                  admission_n_queued(b->admission), "total_runs", "t", b->n_total,
                                  "failed_runs", "t", b->n_failed, "uptime_ms", "t",
                                  (now_usec(CLOCK_MONOTONIC) - b->start_usec) / 1000u);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}", "worker_mode", "s", b->config.worker_socket ? "socket" : "spawn");
        if (r < 0)
                return r;
        /* Whether VMs get their memory and pids limits: what the most recent VM result said. */
        r = sd_bus_message_append(reply, "{sv}", "cgroup_mode", "s", worker_cgroup_mode_last());
        if (r < 0)
                return r;
        /* The snapshot cache: "embedded" (our sbx-cache child: its pid, 0 while it restarts, and how
         * often it had to be restarted) or "socket" (a system sbx-cache, cache_socket). */
        bool own_cache = !(b->config.cache_socket && *b->config.cache_socket);
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}", "cache_mode", "s", own_cache ? "embedded" : "socket",
                                  "cache_pid", "u", (uint32_t) (own_cache ? b->cache_pid : 0), "cache_restarts", "t",
                                  b->cache_restarts);
        if (r < 0)
                return r;
        uint64_t hits = 0, misses = 0, rss_kb, hwm_kb;
        uint32_t fds;
        self_usage(&rss_kb, &hwm_kb, &fds);
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}", "broker_rss_kb", "t", rss_kb, "broker_hwm_kb", "t", hwm_kb,
                                  "broker_fds", "u", fds);
        if (r < 0)
                return r;
        if (b->pool)
                pool_get_stats(b->pool, &hits, &misses);
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}", "memory_budget_mb", "t",
                                  admission_limits(b->admission)->mem_budget_mb, "memory_used_mb", "t",
                                  admission_mem_used_mb(b->admission), "max_request_memory_mb", "u",
                                  b->max_memory_mb, "warm_pool_hits", "t", hits, "warm_pool_misses", "t", misses);
        if (r < 0)
                return r;

        /* pool_vms: language, state, worker pid, qemu pid */
        {
                PoolVmInfo vms[256];
                size_t n = MIN(pool_list(b->pool, vms, ELEMENTSOF(vms)), ELEMENTSOF(vms));
                r = sd_bus_message_open_container(reply, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", "pool_vms");
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'v', "a(ssuu)");
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "(ssuu)");
                for (size_t i = 0; r >= 0 && i < n; i++)
                        r = sd_bus_message_append(reply, "(ssuu)", sbx_language_to_string(vms[i].language),
                                                  pool_vm_state_to_string(vms[i].state), (uint32_t) vms[i].worker_pid,
                                                  vms[i].qemu_pid);
                for (int k = 0; r >= 0 && k < 3; k++)
                        r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }

        /* jobs: id, object path, state, language, worker pid, qemu pid */
        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "jobs");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a(tossuu)");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(tossuu)");
        for (Job *j = b->jobs_head; r >= 0 && j; j = j->next)
                r = sd_bus_message_append(reply, "(tossuu)", j->id, j->path, job_state_to_string(j->state),
                                          sbx_language_to_string(j->req.language) ?: "",
                                          (uint32_t) vm_worker_pid(&j->vm), j->vm.info.qemu_pid);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_accel(sd_bus *bus, const char *path, const char *interface, const char *property,
                          sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Broker *b = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return sd_bus_message_append(reply, "s", sbx_accel_to_string(b->accel));
}

static int property_active_runs(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Broker *b = userdata;
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) error;
        return sd_bus_message_append(reply, "u", admission_n_active(b->admission));
}

static int property_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        (void) bus;
        (void) path;
        (void) interface;
        (void) property;
        (void) userdata;
        (void) error;
        return sd_bus_message_append(reply, "s", SBX_VERSION);
}

static const sd_bus_vtable broker_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Accel", "s", property_accel, 0, 0),
        SD_BUS_PROPERTY("ActiveRuns", "u", property_active_runs, 0, 0),
        SD_BUS_METHOD_WITH_NAMES("Run", "a{sv}", SD_BUS_PARAM(request), "a{sv}", SD_BUS_PARAM(result), method_run,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("StartRun", "a{sv}", SD_BUS_PARAM(request), "o", SD_BUS_PARAM(job),
                                 method_start_run, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetStatus", "", , "a{sv}", SD_BUS_PARAM(status), method_get_status,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("OpenSession", "a{sv}", SD_BUS_PARAM(options), "o", SD_BUS_PARAM(session),
                                 method_open_session, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListSessions", "", , "a(ossuutb)", SD_BUS_PARAM(sessions), method_list_sessions,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetPool", "", , "a(suuu)", SD_BUS_PARAM(pool), method_get_pool,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("SetPoolSize", "su", SD_BUS_PARAM(language) SD_BUS_PARAM(size), "", ,
                                 method_set_pool_size, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("CloseSession", "o", SD_BUS_PARAM(session), "", , method_close_session,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int broker_bus_setup(Broker *b) {
        int r;

        r = sd_bus_add_object_vtable(b->bus, NULL, SBX_BUS_PATH, SBX_BUS_IFACE, broker_vtable, b);
        if (r < 0)
                return log_error_errno(r, "Failed to register the broker object: %m");
        r = job_bus_setup(b);
        if (r < 0)
                return log_error_errno(r, "Failed to register job objects: %m");
        r = session_bus_setup(b);
        if (r < 0)
                return log_error_errno(r, "Failed to register session objects: %m");
        r = sd_bus_add_object_manager(b->bus, NULL, SBX_BUS_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to add the object manager: %m");
        return 0;
}
