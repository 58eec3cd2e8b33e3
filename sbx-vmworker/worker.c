/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker-channel.h"
#include "fdio.h"
#include "guest-channel.h"
#include "log.h"
#include "macro.h"
#include "setup.h"
#include "snapshot.h"
#include "text-util.h"
#include "worker.h"

/* Longest message we put in SBX_T_MESSAGE (the broker accepts SBX_MESSAGE_MAX). */
#define WORKER_MESSAGE_MAX (SBX_MESSAGE_MAX - 96u)
#define WORKER_FINAL_FLUSH_USEC (10u * 1000000u)

uint64_t ms_since(uint64_t t) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        return now > t ? (now - t) / 1000u : 0;
}

/* ---- state ---- */

static const char *const state_names[_WORKER_STATE_MAX] = {
        [WORKER_WAITING] = "waiting", [WORKER_BOOTING] = "booting", [WORKER_WARMING] = "warming",
        [WORKER_IDLE] = "idle",       [WORKER_EXEC] = "exec",       [WORKER_TRANSFER] = "transfer",
        [WORKER_DONE] = "done",
};

void worker_set_state(Worker *w, WorkerState s) {
        if (w->state == WORKER_DONE)
                return;
        if (w->state != s)
                log_debug("State %s -> %s.", state_names[w->state], state_names[s]);
        w->state = s;
        w->timer = sd_event_source_disable_unref(w->timer);
        if (s == WORKER_DONE)
                (void) sd_event_exit(w->event, 0);
}

int worker_arm_timer(Worker *w, uint64_t usec, sd_event_time_handler_t handler, const char *description) {
        w->timer = sd_event_source_disable_unref(w->timer);
        int r = sd_event_add_time_relative(w->event, &w->timer, CLOCK_MONOTONIC, usec, WORKER_TIMER_ACCURACY_USEC,
                                           handler, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->timer, description);
        return 0;
}

const char *worker_phase_phrase(const Worker *w) {
        switch (w->state) {
        case WORKER_WAITING:
        case WORKER_BOOTING:
        case WORKER_WARMING:
                return "while the guest was booting";
        case WORKER_EXEC:
                return "during the run";
        default:
                return "during the session";
        }
}

/* ---- the end ---- */

void worker_teardown_vm(Worker *w) {
        vm_stop(&w->vm, 0, NULL);
        vm_discard_attempts(&w->vm);
        vm_network_release(&w->net);
        vm_cgroup_destroy(&w->cgroup);
        /* QEMU is gone: its uid is free for the next VM. */
        w->qemu_uid_lock_fd = safe_close(w->qemu_uid_lock_fd);
}

void worker_fail(Worker *w, SbxErrorKind kind, const char *fmt, ...) {
        _cleanup_free_ char *raw = NULL, *message = NULL;
        va_list ap;

        if (w->state == WORKER_DONE)
                return;

        va_start(ap, fmt);
        if (vasprintf(&raw, fmt, ap) < 0)
                raw = NULL;
        va_end(ap);
        message = raw ? text_sanitize(raw, strlen(raw), WORKER_MESSAGE_MAX) : NULL;

        log_error("VM %" PRIu64 " failed: %s", w->req.run_id, message ?: "(out of memory)");
        worker_teardown_vm(w);
        int r = broker_send_error(&w->broker, kind, message ?: "The VM worker ran out of memory.");
        if (r >= 0)
                r = framed_conn_flush(&w->broker, WORKER_FINAL_FLUSH_USEC);
        if (r < 0)
                log_warning_errno(r, "Failed to deliver the error to the broker: %m");
        worker_set_state(w, WORKER_DONE);
}

void worker_abort(Worker *w, const char *why) {
        if (w->state == WORKER_DONE)
                return;
        log_info("%s: stopping%s.", why, w->vm.pid > 0 ? " the VM" : "");
        worker_teardown_vm(w);
        worker_set_state(w, WORKER_DONE);
}

void worker_guest_violation(Worker *w, const char *reason) {
        worker_fail(w, SBX_ERR_TRANSIENT, "The guest broke the protocol (%s); the VM was destroyed. Safe to retry.",
                    reason);
}

void worker_broker_violation(Worker *w, const char *what) {
        worker_fail(w, SBX_ERR_INTERNAL, "Protocol violation by the broker: %s. The VM was destroyed.", what);
}

void worker_guest_error(Worker *w, const uint8_t *p, size_t n, const char *what) {
        _cleanup_free_ char *message = NULL;
        const char *reason;

        int r = guest_parse_error(p, n, &message, &reason);
        if (r == -ENOMEM)
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
        else if (r < 0)
                worker_guest_violation(w, reason);
        else
                worker_fail(w, SBX_ERR_TRANSIENT, "The guest agent failed during the %s: %s. The VM was destroyed.",
                            what, message ?: "(no reason given)");
}

/* ---- the guest: frames go to the owner of the state ---- */

int worker_on_guest_frame(FramedConn *c, uint8_t type, const uint8_t *p, size_t n, void *userdata) {
        Worker *w = userdata;
        char buf[96];
        int r;
        (void) c;

        switch (w->state) {
        case WORKER_BOOTING:
        case WORKER_WARMING:
                r = boot_on_guest_frame(w, type, p, n);
                break;
        case WORKER_EXEC:
        case WORKER_TRANSFER:
        case WORKER_IDLE:
                if (type == SBX_G_PONG)
                        return 0; /* we never ping, but a stray PONG is harmless */
                if (type == SBX_G_ERROR) {
                        worker_guest_error(w, p, n, w->state == WORKER_EXEC ? "exec" : "request");
                        return 1;
                }
                if (w->state == WORKER_EXEC)
                        r = exec_on_guest_frame(w, type, p, n);
                else if (w->state == WORKER_TRANSFER)
                        r = transfer_on_guest_frame(w, type, p, n);
                else {
                        snprintf(buf, sizeof buf, "%s (type %u) during no request", guest_msg_type_to_string(type),
                                 type);
                        worker_guest_violation(w, buf);
                        r = 1;
                }
                break;
        default:
                return 1;
        }
        /* Stop reading the guest once the VM is gone. */
        return w->state == WORKER_DONE ? 1 : r;
}

void worker_on_guest_drain(FramedConn *c, void *userdata) {
        Worker *w = userdata;
        (void) c;

        if (w->state == WORKER_TRANSFER)
                transfer_on_guest_drain(w);
}

/* ---- the broker ---- */

/* B_SESSION_OPEN: the VM's settings; then setup and the first boot attempt. */
static void worker_open(Worker *w, const uint8_t *p, size_t n) {
        bool snapshot = false, warm = false;
        const char *reason;
        int r;

        r = run_request_parse(RUN_REQUEST_SESSION_OPEN, p, n, w->config, &w->req, &reason);
        if (r == -ENOMEM) {
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                return;
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_INVALID, "Invalid session request: %s.", reason);
                return;
        }
        if (snapshot_request_parse(p, n, &snapshot, &warm) < 0) {
                worker_fail(w, SBX_ERR_INVALID, "Invalid session request: malformed SNAPSHOT or WARM.");
                return;
        }
        if (snapshot && run_request_wants_nic(&w->req)) {
                worker_fail(w, SBX_ERR_INVALID,
                            "Invalid session request: a VM with a network or exposed ports is never restored from or "
                            "saved to an L1 snapshot.");
                return;
        }
        boot_plan_init(&w->plan, snapshot, warm);
        if (setup_vm(w) < 0)
                return;
        boot_start(w);
}

static int on_broker_frame(FramedConn *c, uint8_t type, const uint8_t *p, size_t n, void *userdata) {
        Worker *w = userdata;
        char buf[96];
        (void) c;

        switch (w->state) {
        case WORKER_DONE:
                return 1;
        case WORKER_WAITING:
                if (type != SBX_B_SESSION_OPEN) {
                        worker_fail(w, SBX_ERR_INVALID,
                                    "Unexpected message type %u from the broker before SBX_B_SESSION_OPEN.", type);
                        return 1;
                }
                if (w->broker.reader.n_fds > 0)
                        worker_broker_violation(w, "an fd that belongs to no file request");
                else
                        worker_open(w, p, n);
                return w->state == WORKER_DONE;
        default:
                break;
        }

        if (type == SBX_B_INTERRUPT) {
                exec_interrupt(w);
                return 0;
        }
        if (w->state == WORKER_BOOTING || w->state == WORKER_WARMING) {
                snprintf(buf, sizeof buf, "message type %u before SBX_W_SESSION_READY", type);
                worker_broker_violation(w, buf);
                return 1;
        }
        if (w->state != WORKER_IDLE) {
                snprintf(buf, sizeof buf, "message type %u while the %s is in flight", type,
                         w->state == WORKER_EXEC ? "exec" : "file request");
                worker_broker_violation(w, buf);
                return 1;
        }

        switch (type) {
        case SBX_B_EXEC:
                if (w->broker.reader.n_fds > 0)
                        worker_broker_violation(w, "an fd that belongs to no file request");
                else
                        exec_start(w, p, n);
                break;
        case SBX_B_FILE_WRITE:
        case SBX_B_FILE_READ:
        case SBX_B_LIST:
                transfer_start(w, type, p, n);
                break;
        default:
                snprintf(buf, sizeof buf, "unexpected message type %u", type);
                worker_broker_violation(w, buf);
                return 1;
        }
        return w->state == WORKER_DONE;
}

static void on_broker_drain(FramedConn *c, void *userdata) {
        Worker *w = userdata;
        (void) c;

        if (w->state == WORKER_TRANSFER)
                transfer_on_broker_drain(w);
}

static void on_broker_close(FramedConn *c, int error, void *userdata) {
        Worker *w = userdata;
        (void) c;

        if (error == -EBADMSG) {
                worker_fail(w, SBX_ERR_INVALID, "The broker sent a malformed frame.");
                return;
        }
        if (error < 0)
                log_debug_errno(error, "Broker connection failed: %m");
        /* EOF is the end of the VM's life: no reply is wanted. */
        worker_abort(w, "The broker closed the connection");
}

static int on_open_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        (void) s;
        (void) usec;

        worker_fail(w, SBX_ERR_INVALID, "No SBX_B_SESSION_OPEN within %u s of connecting.",
                    WORKER_OPEN_WAIT_USEC / 1000000u);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Worker *w = userdata;
        (void) s;

        if (w->state == WORKER_DONE)
                return 0;
        log_info("Got SIG%s: stopping.", sigabbrev_np((int) si->ssi_signo) ?: "?");
        /* Tell the broker if it is still listening; it may well be the one that sent the signal. */
        worker_teardown_vm(w);
        if (broker_send_error(&w->broker, SBX_ERR_TRANSIENT, "The VM worker was stopped by a signal.") >= 0)
                (void) framed_conn_flush(&w->broker, 1000000u);
        worker_set_state(w, WORKER_DONE);
        return 0;
}

int worker_new(sd_event *event, const SbxConfig *config, int broker_fd, Worker **ret) {
        _cleanup_(worker_freep) Worker *w = NULL;
        int r;

        w = calloc(1, sizeof *w);
        if (!w) {
                safe_close(broker_fd);
                return -ENOMEM;
        }
        w->event = sd_event_ref(event);
        w->config = config;
        w->state = WORKER_WAITING;
        w->qemu_uid_lock_fd = w->broker.fd = -EBADF;
        w->net = (VmNetwork) VM_NETWORK_NULL;
        boot_plan_init(&w->plan, false, false);
        vm_init(&w->vm);
        r = transfer_init(&w->transfer);
        if (r < 0) {
                safe_close(broker_fd);
                return r;
        }

        r = framed_conn_open(&w->broker, event, "broker connection", broker_fd, SBX_HOST_FRAME_MAX, BROKER_OUT_MAX,
                             on_broker_frame, on_broker_close, w);
        if (r < 0)
                return r;
        /* File requests bring an fd along (SCM_RIGHTS). */
        framed_conn_set_recv_fds(&w->broker, true);
        w->broker.on_drain = on_broker_drain;
        r = sd_event_add_signal(event, &w->sigterm, SIGTERM, on_signal, w);
        if (r >= 0)
                r = sd_event_add_signal(event, &w->sigint, SIGINT, on_signal, w);
        if (r < 0)
                return r;
        r = worker_arm_timer(w, WORKER_OPEN_WAIT_USEC, on_open_wait_timeout, "open-wait");
        if (r < 0)
                return r;

        *ret = TAKE_PTR(w);
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        /* Every exit path ends here: nothing of the VM may outlive the worker. */
        worker_teardown_vm(w);
        vm_done(&w->vm);
        boot_done(&w->boot);
        exec_done(&w->exec);
        transfer_done(&w->transfer);
        boot_plan_done(&w->plan);
        framed_conn_close(&w->broker);
        sd_event_source_disable_unref(w->timer);
        sd_event_source_disable_unref(w->sigterm);
        sd_event_source_disable_unref(w->sigint);
        strv_free(w->qemu_argv);
        run_request_done(&w->req);
        sd_event_unref(w->event);
        free(w);
        return NULL;
}
