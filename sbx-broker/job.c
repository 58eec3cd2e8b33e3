/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus-names.h"
#include "fdio.h"
#include "job.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "validate.h"

static const char *const job_state_names[_JOB_STATE_MAX] = {
        [JOB_QUEUED] = "queued",     [JOB_BOOTING] = "booting", [JOB_RUNNING] = "running",
        [JOB_FINISHED] = "finished", [JOB_FAILED] = "failed",   [JOB_CANCELLED] = "cancelled",
};

const char *job_state_to_string(JobState s) {
        return s < _JOB_STATE_MAX ? job_state_names[s] : "unknown";
}

static void job_set_state(Job *j, JobState s) {
        if (j->state == s)
                return;
        j->state = s;
        job_emit_state_changed(j);
}

static void job_release_vm(Job *j, bool kill_worker) {
        vm_release(&j->vm, kill_worker);
        admission_release(&j->slot);
}

static void job_fail(Job *j, const char *error_name, const char *fmt, ...) _printf_(3, 4);
static void job_fail(Job *j, const char *error_name, const char *fmt, ...) {
        va_list ap;

        if (j->error_name || j->exec.have_result)
                return;
        j->error_name = error_name;
        va_start(ap, fmt);
        if (vasprintf(&j->error_message, fmt, ap) < 0)
                j->error_message = NULL;
        va_end(ap);
        log_info("Job %" PRIu64 " failed: %s: %s", j->id, error_name, j->error_message ?: "");
        job_release_vm(j, true);
        /* The reply still waits for the output already taken to reach the caller's fds. */
        exec_abort(&j->exec);
}

static int on_linger_done(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) s;
        (void) usec;
        job_free(userdata);
        return 0;
}

/* The run is over and its output reached the caller's fds: the reply, Finished, then the linger. */
static void on_exec_complete(Exec *e, void *userdata) {
        Job *j = userdata;
        Broker *b = j->broker;
        int r;
        (void) e;

        j->t_done = now_usec(CLOCK_MONOTONIC);
        j->track = sd_bus_track_unref(j->track);
        if (j->error_name && strcmp(j->error_name, SBX_ERROR_CANCELLED) == 0)
                job_set_state(j, JOB_CANCELLED);
        else
                job_set_state(j, j->error_name ? JOB_FAILED : JOB_FINISHED);
        if (j->error_name)
                b->n_failed++;

        if (j->reply_to) {
                if (j->error_name)
                        r = sd_bus_reply_method_errorf(j->reply_to, j->error_name, "%s", j->error_message ?: "");
                else {
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                        r = sd_bus_message_new_method_return(j->reply_to, &reply);
                        if (r >= 0)
                                r = job_append_result(j, reply);
                        if (r >= 0)
                                r = sd_bus_send(NULL, reply, NULL);
                        else
                                r = sd_bus_reply_method_errorf(j->reply_to, SBX_ERROR_INTERNAL,
                                                               "Failed to build the result: %s", strerror(-r));
                }
                if (r < 0)
                        log_debug_errno(r, "Failed to reply to job %" PRIu64 " caller: %m", j->id);
                j->reply_to = sd_bus_message_unref(j->reply_to);
        }
        if (j->emit_signals) {
                r = job_emit_finished(j);
                if (r < 0)
                        log_debug_errno(r, "Failed to emit Finished for job %" PRIu64 ": %m", j->id);
        }

        /* The result went out; keep only the small parts while the object lingers. */
        exec_drop_output(&j->exec);
        request_done(&j->req);

        /* The object goes away from its own, pre-allocated source: arming it cannot fail, and the
         * job is never freed inside the handler that completed it. */
        (void) sd_event_source_set_time_relative(j->linger, (uint64_t) b->config.job_linger_s * 1000000u);
        (void) sd_event_source_set_enabled(j->linger, SD_EVENT_ONESHOT);
}

/* StartRun: the output the run keeps goes to its caller as Output signals too. */
static void on_exec_output(Exec *e, SbxStream stream, const void *data, size_t n, void *userdata) {
        Job *j = userdata;
        (void) e;
        if (j->emit_signals)
                (void) job_emit_output(j, stream, data, n);
}

static const ExecOps job_exec_ops = {
        .on_output = on_exec_output,
        .on_complete = on_exec_complete,
};

/* The VM is up: the run's code goes to it as one exec. */
static void job_send_exec(Job *j) {
        int r = vm_exec(&j->vm, &j->exec, j->id, j->req.code, j->req.code_len, j->req.timeout_s * 1000u, j->req.env,
                        j->req.n_env);
        if (r < 0)
                job_fail(j, SBX_ERROR_VM_TRANSIENT, "Failed to hand the run to its VM: %s", strerror(-r));
}

static void on_vm_ready(Vm *vm, void *userdata) {
        Job *j = userdata;

        if (vm->info.ports.n > 0) {
                j->exec.result.ports = vm->info.ports;
                (void) sd_bus_emit_properties_changed(j->broker->bus, j->path, SBX_JOB_IFACE, "Ports", NULL);
        }
        job_set_state(j, JOB_RUNNING);
        job_send_exec(j);
}

/* The result is in: what the broker adds to it, and the VM goes (the reply may still wait for the
 * caller's fds). */
static void on_vm_exec_done(Vm *vm, Exec *e, void *userdata) {
        Job *j = userdata;
        RunResult *res = &e->result;

        if (j->pooled) {
                res->warm_pool_hit = true;
                res->snapshot_tier = "warm";
                /* The boot happened before the request existed. */
                res->boot_ms = 0;
                res->setup_ms = 0;
        } else {
                res->snapshot_tier = vm->info.restored ? "l1" : "cold";
                res->boot_ms = vm->info.restored ? vm->info.restore_ms : vm->info.boot_ms;
                res->setup_ms = vm->info.setup_ms;
        }
        /* A one-shot run has no state to lose. */
        res->state_reset = false;
        log_debug("Job %" PRIu64 " finished: exit %d, boot %" PRIu64 " ms, exec %" PRIu64 " ms", j->id, res->exit_code,
                  res->boot_ms, res->exec_ms);
        job_release_vm(j, false);
}

static void on_vm_lost(Vm *vm, const char *error_name, const char *message, void *userdata) {
        (void) vm;
        job_fail(userdata, error_name, "%s", message);
}

static const VmOps job_vm_ops = {
        .on_ready = on_vm_ready,
        .on_exec_done = on_vm_exec_done,
        .on_lost = on_vm_lost,
};

/* A warm pool VM runs the code as a session exec in its waiting interpreter. */
static bool job_start_pooled(Job *j) {
        Broker *b = j->broker;

        if (!j->req.use_warm_pool || request_has_nic(&j->req) ||
            !pool_take(b->pool, j->req.language, j->req.memory_mb, &j->vm, &j->slot, j->owner_uid, &job_vm_ops, j))
                return false;
        j->pooled = true;
        job_set_state(j, JOB_RUNNING);
        job_send_exec(j);
        /* Its replacement boots in the background. */
        pool_refill(b->pool);
        return true;
}

int job_start(Job *j) {
        Broker *b = j->broker;
        char why[ADMISSION_WHY_MAX];
        int r;

        j->t_started = now_usec(CLOCK_MONOTONIC);
        if (job_start_pooled(j))
                return 0;
        pool_count_miss(b->pool);
        r = admission_charge(b->admission, &j->slot, ADMISSION_SLOT_RUN, j->owner_uid, j->waiter.exempt,
                             j->req.memory_mb, why);
        if (r < 0) {
                job_fail(j, SBX_ERROR_CAPACITY, "%s", why);
                return r;
        }
        job_set_state(j, JOB_BOOTING);

        /* A VM of the run's own, then one exec on READY. With snapshots it is restored from the L1
         * snapshot of this configuration (the worker builds the snapshot when there is none); no
         * WARM: the snapshot's interpreter already runs, and a warm-up exec before READY would only
         * add to the time to first output. Without, it boots cold with the run's network options (and
         * its environment, which the exec carries again: the exec's entries replace the open's). A
         * VM with a NIC has other devices than the snapshot's: always a fresh boot. */
        bool snapshot = b->config.snapshots && j->req.use_snapshot && !request_has_nic(&j->req);
        r = vm_open(&j->vm, b, j->id, j->req.language, j->req.memory_mb, snapshot ? NULL : &j->req, false, snapshot,
                    !snapshot, &job_vm_ops, j);
        if (r < 0) {
                if (vm_is_open(&j->vm))
                        job_fail(j, SBX_ERROR_VM_TRANSIENT, "Failed to hand the run to the VM worker: %s",
                                 strerror(-r));
                else
                        job_fail(j, SBX_ERROR_INTERNAL, "Failed to start a VM worker: %s", strerror(-r));
                return r;
        }
        return 0;
}

/* The admission queue's callbacks. */
static void on_admitted(AdmissionWaiter *w) {
        (void) job_start(w->userdata);
}

static void on_refused(AdmissionWaiter *w, const char *why) {
        job_fail(w->userdata, SBX_ERROR_CAPACITY, "%s", why);
}

static bool on_warm_available(AdmissionWaiter *w) {
        Job *j = w->userdata;
        return j->req.use_warm_pool && !request_has_nic(&j->req) &&
               pool_has_ready(j->broker->pool, j->req.language, j->req.memory_mb);
}

static const AdmissionWaiterOps job_waiter_ops = {
        .start = on_admitted,
        .fail = on_refused,
        .warm_available = on_warm_available,
};

static int on_owner_gone(sd_bus_track *t, void *userdata) {
        Job *j = userdata;
        (void) t;
        job_cancel(j, "the caller disconnected");
        return 0;
}

int job_new(Broker *b, SbxRequest *req, sd_bus_message *call, Job **ret, sd_bus_error *error) {
        char why[ADMISSION_WHY_MAX], name[32];
        Job *j;
        uid_t uid;
        int r;

        uid = bus_sender_uid(call);

        j = calloc(1, sizeof(Job));
        if (!j)
                return -ENOMEM;
        j->broker = b;
        j->id = ++b->next_id;
        snprintf(j->path, sizeof j->path, SBX_JOB_PREFIX "/_%" PRIu64, j->id);
        vm_init(&j->vm);
        snprintf(name, sizeof name, "Job %" PRIu64, j->id);
        exec_init(&j->exec, b->event, name, &job_exec_ops, j);
        j->owner_uid = uid;
        j->req = *req;
        request_init(req, 0); /* taken over */
        j->t_created = now_usec(CLOCK_MONOTONIC);
        j->state = JOB_QUEUED;
        j->owner = strdup(sd_bus_message_get_sender(call) ?: "");
        if (!j->owner) {
                free(j);
                return -ENOMEM;
        }

        /* Link first so job_free() can unlink on every error path. */
        LIST_APPEND(b->jobs_head, b->jobs_tail, j);

        r = sd_event_add_time(b->event, &j->linger, CLOCK_MONOTONIC, UINT64_MAX, 0, on_linger_done, j);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(j->linger, SD_EVENT_OFF);

        r = exec_open_sinks(&j->exec, j->req.stdout_fd, j->req.stderr_fd);
        if (r < 0)
                goto fail;
        if (*j->owner) {
                r = sd_bus_track_new(b->bus, &j->track, on_owner_gone, j);
                if (r >= 0)
                        r = sd_bus_track_add_name(j->track, j->owner);
                if (r < 0)
                        goto fail;
        }
        /* Root and admin_group are held to no per-uid limit. */
        admission_waiter_init(&j->waiter, &job_waiter_ops, j, uid,
                              admission_has_user_limits(b->admission) && bus_sender_is_admin(b, call),
                              j->req.memory_mb);
        r = admission_enqueue(b->admission, &j->waiter, why);
        if (r == -EBUSY) {
                job_free(j);
                return sd_bus_error_set(error, SBX_ERROR_CAPACITY, why);
        }
        if (r < 0)
                goto fail;
        b->n_total++;
        *ret = j;
        return 0;

fail:
        job_free(j);
        return sd_bus_error_set_errnof(error, r, "Failed to set up the job: %m");
}

void job_cancel(Job *j, const char *why) {
        if (exec_is_complete(&j->exec))
                return;
        admission_cancel(&j->waiter);
        /* Nobody is left to read the output when the caller is gone. */
        exec_close_sinks(&j->exec);
        job_fail(j, SBX_ERROR_CANCELLED, "The run was cancelled: %s.", why);
}

Job *broker_find_job(Broker *b, uint64_t id) {
        for (Job *j = b->jobs_head; j; j = j->next)
                if (j->id == id)
                        return j;
        return NULL;
}

Job *job_free(Job *j) {
        Broker *b;

        if (!j)
                return NULL;
        b = j->broker;
        admission_cancel(&j->waiter);
        job_release_vm(j, true);
        j->linger = sd_event_source_disable_unref(j->linger);
        j->track = sd_bus_track_unref(j->track);
        j->reply_to = sd_bus_message_unref(j->reply_to);
        exec_done(&j->exec);
        request_done(&j->req);
        free(j->owner);
        free(j->error_message);

        LIST_REMOVE(b->jobs_head, b->jobs_tail, j);
        free(j);
        return NULL;
}
