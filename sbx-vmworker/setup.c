/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "accel.h"
#include "fdio.h"
#include "host-tsc.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "validate.h"
#include "seccomp-filter.h"
#include "setup.h"
#include "worker.h"

static int on_netd_lost(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        (void) fd;
        (void) revents;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (w->state == WORKER_DONE)
                return 0;
        log_error("sbx-netd closed its connection: the VM's network policy has no resolver or proxy any more.");
        worker_fail(w, SBX_ERR_NETWORK,
                    "sbx-netd stopped %s; the VM was destroyed (networked VMs fail closed). Safe to retry once "
                    "sbx-netd runs again.",
                    worker_phase_phrase(w));
        return 0;
}

static void log_argv(char **argv) {
        _cleanup_free_ char *line = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&line, &len);

        if (!f)
                return;
        for (char **a = argv; *a; a++)
                fprintf(f, "%s%s", a == argv ? "" : " ", *a);
        if (fclose(f) == 0)
                log_debug("QEMU command line: %s", line);
}

/* The host's TSC frequency for tsc_early_khz= (host-tsc.h); 0 when it cannot be told. */
static uint32_t tsc_khz(const Worker *w) {
        uint32_t khz = 0;
        /* Measuring takes 10 ms: VMs that care about their start time reuse the figure of this host boot. */
        int r = boot_plan_warm(&w->plan) ? host_tsc_khz_cached(w->config->state_dir, &khz)
                                                 : host_tsc_khz(&khz);
        if (r < 0) {
                log_debug_errno(r, "Cannot tell the host's TSC frequency, the guest calibrates it: %m");
                return 0;
        }
        log_debug("Host TSC: %" PRIu32 " kHz.", khz);
        return khz;
}

/* A uid of its own for this VM's QEMU (qemu_uid_range), held by a lock file in state_dir/qemu-uids. */
static int take_qemu_uid(Worker *w) {
        _cleanup_free_ char *dir = NULL;

        if (!w->qemu_creds.drop || w->config->qemu_uid_count == 0)
                return 0;
        /* Lock files, not runtime state: they stay (empty) for the next VMs. */
        if (asprintf(&dir, "%s/qemu-uids", w->config->state_dir) < 0)
                return -ENOMEM;
        (void) mkdir(w->config->state_dir, 0755);
        return qemu_creds_take_vm_uid(&w->qemu_creds, dir, w->config->qemu_uid_first, w->config->qemu_uid_count,
                                      &w->qemu_uid_lock_fd);
}

int setup_vm(Worker *w) {
        _cleanup_(sbx_error_done) SbxError error = {};
        int r;

        w->t_request = now_usec(CLOCK_MONOTONIC);
        log_info("VM %" PRIu64 ": %s, %zu environment variable(s), %" PRIu32 " MiB, %" PRIu32 " vCPU(s)%s%s.",
                 w->req.run_id, sbx_language_to_string(w->req.language), w->req.n_env, w->req.memory_mb, w->req.vcpus,
                 boot_plan_snapshot(&w->plan) ? ", snapshot" : "", boot_plan_warm(&w->plan) ? ", warm" : "");

        w->accel = accel_resolve(w->req.accel, w->config);

        r = vm_network_pick_ports(&w->net, &w->req, &error);
        if (r < 0) {
                worker_fail(w, SBX_ERR_NETWORK, "%s", sbx_error_message(&error));
                return r;
        }

        QemuOptions o = {
                .binary = w->config->qemu,
                .kernel = w->config->kernel,
                .initrd = w->config->initrd,
                .rootfs = w->config->rootfs,
                .accel = w->accel,
                .memory_mb = w->req.memory_mb,
                .vcpus = w->req.vcpus,
                .tsc_khz = w->accel == SBX_ACCEL_TCG ? tsc_khz(w) : 0,
                .cmdline_extra = log_get_max_level() >= LOG_DEBUG ? "sbx.debug=1" : NULL,
                .sandbox = true,
                .image_fds = true,
        };
        vm_network_qemu_options(&w->net, &o);
        r = qemu_build_argv(&o, &w->qemu_argv);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to build the QEMU command line: %s", strerror(-r));
                return r;
        }
        if (log_get_max_level() >= LOG_DEBUG)
                log_argv(w->qemu_argv);

        vm_cgroup_remove_stale(w->config->cgroup_parent);
        vm_cgroup_create(&w->cgroup, w->config->cgroup_parent, w->req.run_id, w->req.memory_mb, w->req.vcpus);
        vm_cgroup_open_procs(&w->cgroup);

        /* Before the seccomp filter (no connect() after it) and before QEMU exists. */
        r = vm_network_register(&w->net, &w->req, vm_cgroup_bpf_dir(&w->cgroup), w->config->netd_socket, &error);
        if (r >= 0) {
                r = vm_network_watch(&w->net, w->event, on_netd_lost, w);
                if (r < 0)
                        (void) sbx_error_set(&error, r, "Failed to watch the sbx-netd connection: %s", strerror(-r));
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_NETWORK, "%s", sbx_error_message(&error));
                return r;
        }

        (void) qemu_resolve_creds(&w->qemu_creds);
        r = take_qemu_uid(w);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to take a uid of its own for QEMU: %s", strerror(-r));
                return r;
        }

        boot_plan_make(&w->plan, &(BootPlanInput) { .config = w->config,
                                                    .cold = &o,
                                                    .creds = &w->qemu_creds,
                                                    .language = w->req.language });
        r = vm_prepare(&w->vm, w->config, &w->plan, w->qemu_argv, &w->qemu_creds, &error);
        boot_plan_after_prepare(&w->plan);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "%s", sbx_error_message(&error));
                return r;
        }

        /* From here on the worker forks and execs nothing, and the guest's bytes are next. */
        r = worker_seccomp_apply();
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to apply the worker's seccomp filter: %s", strerror(-r));
                return r;
        }
        return 0;
}
