/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker-channel.h"
#include "exec.h"
#include "fdio.h"
#include "guest-channel.h"
#include "log.h"
#include "macro.h"
#include "validate.h"
#include "text-util.h"
#include "worker.h"

/* Longest message we put in SBX_T_MESSAGE (the broker accepts SBX_MESSAGE_MAX). */
#define EXEC_MESSAGE_MAX (SBX_MESSAGE_MAX - 96u)

void exec_done(Exec *e) {
        run_request_done(&e->req);
        *e = (Exec) {};
}

/* "execution timed out after N s", or NULL on OOM. */
static char *timeout_message(uint32_t timeout_ms) {
        if (timeout_ms % 1000u == 0)
                return text_printf_bounded(EXEC_MESSAGE_MAX, "execution timed out after %" PRIu32 " s",
                                           timeout_ms / 1000u);
        return text_printf_bounded(EXEC_MESSAGE_MAX, "execution timed out after %.1f s", timeout_ms / 1000.0);
}

static int on_exec_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        const Exec *e = &w->exec;
        (void) s;
        (void) usec;

        /* The agent enforces the timeout itself and reports it (a timed-out result). Silence past the
         * grace means the VM or its agent stopped working: that is the VM's failure, not the code's. */
        log_warning("Exec %" PRIu64 " did not finish within its timeout of %" PRIu32 " ms plus %u s grace.",
                    e->req.run_id, e->req.timeout_ms, EXEC_GRACE_USEC / 1000000u);
        worker_fail(w, SBX_ERR_TRANSIENT,
                    "The VM stopped responding: exec %" PRIu64 " did not end within its timeout of %" PRIu32
                    " ms plus %u s. The VM was destroyed.",
                    e->req.run_id, e->req.timeout_ms, EXEC_GRACE_USEC / 1000000u);
        return 0;
}

void exec_start(Worker *w, const uint8_t *p, size_t n) {
        Exec *e = &w->exec;
        const char *reason;
        SbxMsg m;
        int r;

        exec_done(e);
        r = run_request_parse(RUN_REQUEST_EXEC, p, n, w->config, &e->req, &reason);
        if (r == -ENOMEM) {
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                return;
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_INVALID, "Invalid exec request: %s. The VM was destroyed.", reason);
                return;
        }

        r = guest_build_exec(&w->req, &e->req, &m);
        if (r == -E2BIG) {
                worker_fail(w, SBX_ERR_INVALID,
                            "Invalid exec request: more than %u environment variables in the session and "
                            "the exec together. The VM was destroyed.",
                            SBX_ENV_COUNT_MAX);
                return;
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to build the exec request: %s", strerror(-r));
                return;
        }

        log_info("Exec %" PRIu64 ": %zu bytes of code, timeout %" PRIu32 " ms.", e->req.run_id, e->req.code_len,
                 e->req.timeout_ms);
        worker_set_state(w, WORKER_EXEC);
        e->t_start = now_usec(CLOCK_MONOTONIC);
        r = framed_conn_send(&w->vm.guest, &m);
        sbx_msg_done(&m);
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "Failed to send the code to the guest: %s", strerror(-r));
                return;
        }
        r = worker_arm_timer(w, (uint64_t) e->req.timeout_ms * 1000u + EXEC_GRACE_USEC, on_exec_deadline,
                             "exec-deadline");
        if (r < 0)
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the exec deadline: %s", strerror(-r));
}

/* W_OUTPUT within the caps; the chunk that crosses one is cut there, later output is dropped. */
static void exec_forward_output(Worker *w, const GuestOutput *o) {
        Exec *e = &w->exec;
        bool out = o->stream == SBX_STREAM_STDOUT;
        uint64_t *sent = out ? &e->stdout_sent : &e->stderr_sent;
        bool *truncated = out ? &e->stdout_truncated : &e->stderr_truncated;
        uint64_t cap = out ? SBX_STDOUT_MAX : SBX_STDERR_MAX;
        size_t room = *sent >= cap ? 0 : (size_t) (cap - *sent);
        size_t take = MIN(room, o->len);

        if (take < o->len && !*truncated) {
                *truncated = true;
                log_debug("%s reached its cap of %" PRIu64 " bytes; discarding the rest.", out ? "stdout" : "stderr",
                          cap);
        }
        if (take == 0)
                return;
        *sent += take;

        int r = broker_send_output(&w->broker, o->stream, o->data, take);
        if (r == -ENOBUFS)
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's output.");
        /* Other errors mean the broker is gone; its close handler cleans up. */
}

static void exec_finish(Worker *w, const GuestExit *ge) {
        _cleanup_free_ char *message = NULL;
        Exec *e = &w->exec;
        VmCgroupStats stats;

        vm_cgroup_read_stats(&w->cgroup, &stats);
        if (ge->timed_out)
                message = timeout_message(e->req.timeout_ms);

        RunResult result = {
                .exit_code = ge->timed_out ? -1 : ge->exit_code,
                .exec_ms = ge->exec_ms,
                .cpu_ms = stats.cpu_usec / 1000u,
                .mem_peak_mb = (stats.memory_peak_bytes + (1u << 20) - 1) >> 20,
                .cpu_throttled = stats.nr_throttled,
                .timed_out = ge->timed_out,
                .stdout_truncated = e->stdout_truncated,
                .stderr_truncated = e->stderr_truncated,
                .accel = sbx_accel_to_string(w->accel),
                .cgroup_mode = stats.limits_mode,
                .message = message,
                .state_reset = ge->state_reset,
        };
        log_info("Exec %" PRIu64 " finished: exit %" PRIi32 "%s%s, exec %" PRIu64 " ms (host %" PRIu64 " ms).",
                 e->req.run_id, result.exit_code, ge->timed_out ? " (timed out)" : "",
                 ge->state_reset ? ", interpreter restarted" : "", ge->exec_ms, ms_since(e->t_start));

        int r = broker_send_result(&w->broker, &result);
        if (r == -ENOBUFS) {
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's output.");
                return;
        }
        if (r < 0)
                log_debug_errno(r, "Failed to send the result: %m"); /* the broker is gone: its close handler ends us */
        exec_done(e);
        worker_set_state(w, WORKER_IDLE);
}

int exec_on_guest_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n) {
        const char *reason;
        GuestOutput o;
        GuestExit e;
        char buf[96];

        switch (type) {
        case SBX_G_OUTPUT:
                if (guest_parse_output(p, n, &o, &reason) < 0)
                        worker_guest_violation(w, reason);
                else
                        exec_forward_output(w, &o);
                return 0;
        case SBX_G_EXIT:
                if (guest_parse_exit(p, n, &e, &reason) < 0)
                        worker_guest_violation(w, reason);
                else
                        exec_finish(w, &e);
                return 0;
        default:
                snprintf(buf, sizeof buf, "%s (type %u) during exec", guest_msg_type_to_string(type), type);
                worker_guest_violation(w, buf);
                return 1;
        }
}

void exec_interrupt(Worker *w) {
        SbxMsg m;

        if (w->state != WORKER_EXEC)
                return;
        sbx_msg_begin(&m, SBX_H_INTERRUPT);
        int r = framed_conn_send(&w->vm.guest, &m);
        sbx_msg_done(&m);
        if (r < 0)
                log_debug_errno(r, "Failed to send INTERRUPT: %m");
        else
                log_info("Exec %" PRIu64 ": interrupted by the caller.", w->exec.req.run_id);
}
