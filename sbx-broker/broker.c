/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "cache-child.h"
#include "bus-names.h"
#include "fdio.h"
#include "job.h"
#include "pool.h"
#include "session.h"
#include "log.h"
#include "macro.h"

uid_t bus_sender_uid(sd_bus_message *m) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid = (uid_t) -1;

        /* dbus-daemon reports the connection's uid, sd-bus may ask for either field. */
        if (sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID, &creds) >= 0 &&
            sd_bus_creds_get_euid(creds, &uid) < 0)
                (void) sd_bus_creds_get_uid(creds, &uid);
        return uid;
}

bool bus_sender_is_admin(Broker *b, sd_bus_message *m) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const gid_t *gids = NULL;
        gid_t gid;
        int n;

        if (bus_sender_uid(m) == 0)
                return true;
        if (b->admin_gid == (gid_t) -1)
                return false;
        if (sd_bus_query_sender_creds(m, SD_BUS_CREDS_GID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS | SD_BUS_CREDS_AUGMENT,
                                      &creds) < 0)
                return false;
        if (sd_bus_creds_get_gid(creds, &gid) >= 0 && gid == b->admin_gid)
                return true;
        n = sd_bus_creds_get_supplementary_gids(creds, &gids);
        for (int i = 0; i < n; i++)
                if (gids[i] == b->admin_gid)
                        return true;
        return false;
}

static uint64_t host_memory_mb(void) {
        long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        if (pages <= 0 || size <= 0)
                return 1024;
        return (uint64_t) pages * (uint64_t) size / (1024u * 1024u);
}

static void broker_derive_limits(Broker *b, AdmissionLimits *ret) {
        uint64_t mem = host_memory_mb();
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        uint64_t reserve = b->config.memory_reserve_mb;
        /* A reserve of half the host or more leaves the other half. */
        uint64_t usable = mem > reserve * 2 ? mem - reserve : mem / 2;

        *ret = (AdmissionLimits) {
                .mem_budget_mb = (uint64_t) ((double) usable * b->config.memory_overcommit),
                .queue_max = b->config.queue_max,
                .queue_timeout_usec = (uint64_t) b->config.queue_timeout_s * 1000000u,
                .max_vms_per_uid = b->config.max_vms_per_uid,
                .max_sessions_per_uid = b->config.max_sessions_per_uid,
        };
        b->max_memory_mb = (uint32_t) MIN(ret->mem_budget_mb - MIN(ret->mem_budget_mb, (uint64_t) SBX_VM_OVERHEAD_MB),
                                          (uint64_t) UINT32_MAX);
        if (b->config.max_vms > 0)
                ret->max_vms = b->config.max_vms;
        else
                ret->max_vms = (uint32_t) MAX(1.0, (double) MAX(cpus, 1L) * b->config.cpu_overcommit);
        log_debug("Admission budget: %" PRIu64 " MB for VMs (host %" PRIu64 " MB, reserve %" PRIu64
                  " MB, overcommit %.2f), %u VMs at once, per uid %u VMs and %u sessions (0: no limit).",
                  ret->mem_budget_mb, mem, reserve, b->config.memory_overcommit, ret->max_vms,
                  ret->max_vms_per_uid, ret->max_sessions_per_uid);
}

/* The admission's callbacks: the warm pool gives room, and refills after each dispatch pass. */
static bool broker_evict_pool_vm(void *userdata, bool starting_only) {
        Broker *b = userdata;
        return pool_evict_one(b->pool, starting_only);
}

static void broker_dispatched(void *userdata) {
        Broker *b = userdata;
        pool_refill(b->pool);
}

static const AdmissionOps broker_admission_ops = {
        .evict_one = broker_evict_pool_vm,
        .dispatched = broker_dispatched,
};

/* A worker killed by a signal could not remove its VM's cgroups; a short-lived
 * worker in --remove-stale mode does it (it is reaped like any worker). */
static void broker_remove_stale_cgroups(Broker *b) {
        pid_t pid = fork();
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (b->config_path)
                        setenv("SBX_CONFIG", b->config_path, 1);
                execl(b->config.worker_path, b->config.worker_path, "--remove-stale", (char *) NULL);
                _exit(127);
        }
        if (pid < 0)
                log_warning_errno(errno, "Failed to start the stale cgroup cleanup: %m");
}

/* Workers are our only children after start-up: reap whatever exited. */
static int on_sigchld(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Broker *b = userdata;
        bool killed = false;
        int status;
        pid_t pid;
        (void) s;
        (void) si;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (broker_cache_child_exited(b, pid, status))
                        continue;
                log_debug("Worker %d exited (status 0x%x).", (int) pid, status);
                if (WIFSIGNALED(status))
                        killed = true;
        }
        if (killed && !b->config.worker_socket)
                broker_remove_stale_cgroups(b);
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) userdata;
        log_info("Received %s, stopping.", strsignal((int) si->ssi_signo));
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int broker_new(const char *config_path, bool system_bus, Broker **ret) {
        AdmissionLimits limits;
        Broker *b;
        int r;

        b = calloc(1, sizeof(Broker));
        if (!b)
                return log_oom();
        b->start_usec = now_usec(CLOCK_MONOTONIC);
        b->cache_listen_fd = -EBADF;
        if (config_path) {
                b->config_path = realpath(config_path, NULL);
                if (!b->config_path) {
                        r = log_error_errno(errno, "Config %s: %m", config_path);
                        goto fail;
                }
        }
        {
                _cleanup_(sbx_error_done) SbxError error = {};
                r = sbx_config_load(&b->config, b->config_path, &error);
                if (r < 0)
                        log_error_errno(r, "%s", sbx_error_message(&error));
        }
        if (r < 0)
                goto fail;
        b->admin_gid = (gid_t) -1;
        if (b->config.admin_group) {
                struct group *g = getgrnam(b->config.admin_group);
                if (!g) {
                        r = log_error_errno(ENOENT, "admin_group=%s: no such group.", b->config.admin_group);
                        goto fail;
                }
                b->admin_gid = g->gr_gid;
        }

        r = sd_event_default(&b->event);
        if (r < 0)
                goto fail;
        (void) sd_event_add_signal(b->event, NULL, SIGTERM, on_exit_signal, b);
        (void) sd_event_add_signal(b->event, NULL, SIGINT, on_exit_signal, b);
        r = sd_event_add_signal(b->event, NULL, SIGCHLD, on_sigchld, b);
        if (r < 0)
                goto fail;
        broker_derive_limits(b, &limits);
        r = admission_new(b->event, &limits, &broker_admission_ops, b, &b->admission);
        if (r < 0)
                goto fail;

        r = system_bus ? sd_bus_open_system(&b->bus) : sd_bus_open(&b->bus);
        if (r < 0) {
                log_error_errno(r, "Failed to connect to the %s bus: %m", system_bus ? "system" : "session/starter");
                goto fail;
        }
        r = sd_bus_attach_event(b->bus, b->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;

        r = broker_bus_setup(b);
        if (r < 0)
                goto fail;
        r = broker_resolve_accel(b);
        if (r < 0)
                goto fail;

        r = sd_bus_request_name(b->bus, SBX_BUS_NAME, 0);
        if (r < 0) {
                log_error_errno(r, "Failed to acquire %s: %m", SBX_BUS_NAME);
                goto fail;
        }
        /* Before the pool: its VMs restore L1 snapshots. A broker without its cache still runs
         * (cold boots only). */
        (void) broker_cache_start(b);
        r = pool_new(b, &b->pool);
        if (r < 0)
                goto fail;
        log_info("sbx-broker %s ready: %u VMs at once, %" PRIu64 " MB for VMs, warm pool %u/%u/%u, accel %s, workers %s.",
                 SBX_VERSION, limits.max_vms, limits.mem_budget_mb, b->config.warm_pool_size[SBX_LANG_PYTHON],
                 b->config.warm_pool_size[SBX_LANG_JAVASCRIPT], b->config.warm_pool_size[SBX_LANG_RAW],
                 sbx_accel_to_string(b->accel), b->config.worker_socket ?: b->config.worker_path);
        pool_refill(b->pool);
        *ret = b;
        return 0;
fail:
        broker_free(b);
        return r;
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        b->pool = pool_free(b->pool);
        while (b->jobs_head)
                job_free(b->jobs_head);
        while (b->sessions_head)
                session_free(b->sessions_head);
        /* After everything that holds a slot or waits in its queue. */
        b->admission = admission_free(b->admission);
        broker_cache_stop(b);
        sd_bus_flush_close_unref(b->bus);
        sd_event_unref(b->event);
        sbx_config_done(&b->config);
        free(b->config_path);
        free(b);
        return NULL;
}

int broker_run(Broker *b) {
        int r;

        (void) sd_notify(false, "READY=1\nSTATUS=Serving org.sbx.Broker1");
        r = sd_event_loop(b->event);
        (void) sd_notify(false, "STOPPING=1");
        /* Cancel what is still running so no worker or QEMU outlives us; the
         * pool goes first so nothing refills it. */
        b->pool = pool_free(b->pool);
        for (Job *j = b->jobs_head; j; j = j->next)
                job_cancel(j, "the broker is stopping");
        for (Session *s = b->sessions_head; s; s = s->next)
                session_close(s, "the broker is stopping");
        return r;
}
