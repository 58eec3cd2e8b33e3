/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus-names.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "session.h"
#include "list.h"
#include "utf8.h"
#include "validate.h"

SessionOp *session_op_free(SessionOp *op) {
        if (!op)
                return NULL;
        sd_bus_message_unref(op->call);
        request_done(&op->req);
        free(op->path);
        safe_close(op->fd);
        free(op);
        return NULL;
}

Session *broker_find_session(Broker *b, const char *path) {
        for (Session *s = b->sessions_head; s; s = s->next)
                if (strcmp(s->path, path) == 0)
                        return s;
        return NULL;
}

static void session_release_vm(Session *s) {
        /* EOF tells the worker to stop the VM and clean up. */
        vm_release(&s->vm, false);
        admission_release(&s->slot);
}

static void reply_error(sd_bus_message **call, const char *name, const char *fmt, const char *arg) {
        if (!*call)
                return;
        (void) sd_bus_reply_method_errorf(*call, name, fmt, arg);
        *call = sd_bus_message_unref(*call);
}

static int on_linger_done(sd_event_source *src, uint64_t usec, void *userdata) {
        (void) src;
        (void) usec;
        session_free(userdata);
        return 0;
}

static int on_idle_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        Session *s = userdata;
        (void) src;
        (void) usec;
        log_info("Session %" PRIu64 " was idle for %u s, closing it.", s->id, s->options.idle_timeout_s);
        session_close(s, "it was idle for longer than its idle timeout");
        return 0;
}

static void session_arm_idle(Session *s) {
        s->timer = sd_event_source_disable_unref(s->timer);
        (void) sd_event_add_time_relative(s->broker->event, &s->timer, CLOCK_MONOTONIC,
                                          (uint64_t) s->options.idle_timeout_s * 1000000u, 0, on_idle_timeout, s);
}

/* Ends the session: the VM goes away, queued calls fail, the object lingers
 * briefly so late callers get SessionClosed rather than an unknown object. */
static void session_end(Session *s, const char *current_error, const char *why) {
        /* why is a clause or, from the VM, a sentence with its own full stop. */
        size_t n = strlen(why);
        const char *stop = n > 0 && why[n - 1] == '.' ? "" : ".";
        char msg[SBX_MESSAGE_MAX + 64];

        if (s->closed)
                return;
        s->closed = true;
        log_info("Session %" PRIu64 " closed: %s%s", s->id, why, stop);
        session_release_vm(s);
        if (s->open_call) {
                (void) sd_bus_reply_method_errorf(s->open_call, current_error, "The session could not start: %s%s", why,
                                                  stop);
                s->open_call = sd_bus_message_unref(s->open_call);
        }

        snprintf(msg, sizeof msg, "The session is closed: %s%s", why, stop);
        if (s->current) {
                reply_error(&s->current->call, current_error, "%s", msg);
                s->current = session_op_free(s->current);
        }
        while (s->queue_head) {
                SessionOp *op = s->queue_head;
                s->queue_head = op->next;
                reply_error(&op->call, SBX_ERROR_SESSION_CLOSED, "%s", msg);
                session_op_free(op);
        }
        s->queue_tail = NULL;
        s->n_queued = 0;
        s->list_reply = sd_bus_message_unref(s->list_reply);
        exec_done(&s->exec);
        session_emit_changed(s, "Closed");

        /* Freed later from its own, pre-allocated source: arming it cannot fail, and the session is
         * never freed inside the handler that ended it. */
        s->timer = sd_event_source_disable_unref(s->timer);
        (void) sd_event_source_set_time_relative(s->linger, (uint64_t) s->broker->config.job_linger_s * 1000000u);
        (void) sd_event_source_set_enabled(s->linger, SD_EVENT_ONESHOT);
}

void session_close(Session *s, const char *why) {
        session_end(s, SBX_ERROR_SESSION_CLOSED, why);
}

static void session_vm_lost(Session *s, const char *why) {
        session_end(s, SBX_ERROR_VM_TRANSIENT, why);
}

static void session_start_next(Session *s);

static void session_op_done(Session *s) {
        s->current = session_op_free(s->current);
        exec_done(&s->exec);
        s->list_reply = sd_bus_message_unref(s->list_reply);
        session_start_next(s);
        if (!s->current && !s->closed)
                session_arm_idle(s);
}

/* The Exec call's result is in and its output reached the caller's fds: the reply. */
static void on_exec_complete(Exec *e, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Session *s = userdata;
        SessionOp *op = s->current;
        int r;

        if (!op || op->kind != SESSION_OP_EXEC || !e->have_result)
                return;
        s->exec_count++;
        r = sd_bus_message_new_method_return(op->call, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = exec_append_result(e, reply, sbx_accel_to_string(s->broker->accel));
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}", "exec_count", "u", s->exec_count);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        else
                (void) sd_bus_reply_method_errorf(op->call, SBX_ERROR_INTERNAL, "Failed to build the result: %s",
                                                  strerror(-r));
        session_emit_changed(s, "ExecCount");
        session_op_done(s);
}

/* The output goes to the caller of the running Exec as Output signals too. */
static void on_exec_output(Exec *e, SbxStream stream, const void *data, size_t n, void *userdata) {
        Session *s = userdata;
        (void) e;
        if (s->current)
                session_emit_output(s, sd_bus_message_get_sender(s->current->call), stream, data, n);
}

static const ExecOps session_exec_ops = {
        .on_output = on_exec_output,
        .on_complete = on_exec_complete,
};

static int send_op(Session *s, SessionOp *op) {
        int r;

        switch (op->kind) {
        case SESSION_OP_EXEC:
                return vm_exec(&s->vm, &s->exec, ++s->next_exec_id, op->req.code, op->req.code_len,
                               op->req.timeout_s * 1000u, op->req.env, op->req.n_env);
        case SESSION_OP_WRITE:
                r = vm_write_file(&s->vm, op->path, op->mode, op->fd);
                break;
        case SESSION_OP_READ:
                r = vm_read_file(&s->vm, op->path, op->fd);
                break;
        case SESSION_OP_LIST:
                return vm_list(&s->vm, op->path);
        default:
                return -EINVAL;
        }
        /* The worker has its own copy now. */
        op->fd = safe_close(op->fd);
        return r;
}

static void session_start_next(Session *s) {
        SessionOp *op;
        int r;

        if (s->current || !s->vm.ready || s->closed || !s->queue_head)
                return;
        op = s->queue_head;
        s->queue_head = op->next;
        if (!s->queue_head)
                s->queue_tail = NULL;
        s->n_queued--;
        op->next = NULL;
        s->current = op;
        s->timer = sd_event_source_disable_unref(s->timer);

        if (op->kind == SESSION_OP_EXEC && exec_open_sinks(&s->exec, op->req.stdout_fd, op->req.stderr_fd) < 0)
                /* What cannot be streamed is kept for the result instead. */
                log_warning("Session %" PRIu64 ": cannot stream into the caller's output fds.", s->id);
        if (op->kind == SESSION_OP_LIST) {
                r = sd_bus_message_new_method_return(op->call, &s->list_reply);
                if (r >= 0)
                        r = sd_bus_message_open_container(s->list_reply, 'a', "(sbt)");
                if (r < 0) {
                        reply_error(&op->call, SBX_ERROR_INTERNAL, "%s", "Failed to build the listing.");
                        session_op_done(s);
                        return;
                }
        }
        r = send_op(s, op);
        if (r < 0)
                session_vm_lost(s, "the VM worker stopped accepting requests");
}

int session_enqueue(Session *s, SessionOp *op, sd_bus_error *error) {
        if (s->closed)
                return sd_bus_error_set(error, SBX_ERROR_SESSION_CLOSED, "The session is closed.");
        if (s->n_queued >= SESSION_QUEUE_MAX)
                return sd_bus_error_setf(error, SBX_ERROR_CAPACITY,
                                         "This session already has %u calls waiting.", SESSION_QUEUE_MAX);
        op->next = NULL;
        if (s->queue_tail)
                s->queue_tail->next = op;
        else
                s->queue_head = op;
        s->queue_tail = op;
        s->n_queued++;
        session_start_next(s);
        return 0;
}

static const char *file_status_error(uint32_t status) {
        switch (status) {
        case SBX_FILE_INVALID_PATH:
                return SBX_ERROR_INVALID_PATH;
        case SBX_FILE_NOT_FOUND:
                return SBX_ERROR_NOT_FOUND;
        case SBX_FILE_TOO_LARGE:
                return SBX_ERROR_FILE_TOO_LARGE;
        default:
                return SBX_ERROR_FILE_IO;
        }
}

/* A write, read or listing ended. */
static void on_vm_file_done(Vm *vm, uint32_t status, const char *message, void *userdata) {
        Session *s = userdata;
        SessionOp *op = s->current;
        int r;
        (void) vm;

        if (status != SBX_FILE_OK)
                reply_error(&op->call, file_status_error(status), "%s", message ?: "The file operation failed.");
        else if (op->kind == SESSION_OP_LIST) {
                r = sd_bus_message_close_container(s->list_reply);
                if (r >= 0)
                        r = sd_bus_send(NULL, s->list_reply, NULL);
                if (r < 0)
                        reply_error(&op->call, SBX_ERROR_INTERNAL, "%s", "Failed to send the listing.");
        } else
                (void) sd_bus_reply_method_return(op->call, NULL);
        session_op_done(s);
}

static int on_vm_list_entry(Vm *vm, const char *name, bool is_dir, uint64_t size, void *userdata) {
        Session *s = userdata;
        (void) vm;

        if (!s->list_reply)
                return -EBADMSG;
        /* Names from the guest become D-Bus strings: they must be valid UTF-8. */
        _cleanup_free_ char *clean = utf8_sanitize(name, strlen(name));
        if (!clean)
                return -ENOMEM;
        return sd_bus_message_append(s->list_reply, "(sbt)", clean, (int) is_dir, size);
}

static void on_vm_ready(Vm *vm, void *userdata) {
        Session *s = userdata;

        log_info("Session %" PRIu64 " is ready (%s, %s).", s->id, sbx_language_to_string(s->options.language),
                 vm->info.restored ? "restored from the L1 snapshot" : "booted");
        if (s->open_call) {
                (void) sd_bus_reply_method_return(s->open_call, "o", s->path);
                s->open_call = sd_bus_message_unref(s->open_call);
        }
        session_start_next(s);
        if (!s->current)
                session_arm_idle(s);
}

static void on_vm_lost(Vm *vm, const char *error_name, const char *message, void *userdata) {
        Session *s = userdata;

        /* A VM that did not boot in time says so; any other loss is worth a retry. */
        if (!vm->ready && strcmp(error_name, SBX_ERROR_VM_BOOT_TIMEOUT) == 0)
                session_end(s, SBX_ERROR_VM_BOOT_TIMEOUT, message);
        else
                session_end(s, SBX_ERROR_VM_TRANSIENT, message);
}

static const VmOps session_vm_ops = {
        .on_ready = on_vm_ready,
        .on_file_done = on_vm_file_done,
        .on_list_entry = on_vm_list_entry,
        .on_lost = on_vm_lost,
};

int session_open(Broker *b, sd_bus_message *call, sd_bus_error *error) {
        char why[ADMISSION_WHY_MAX];
        Session *s;
        uid_t uid;
        int r;

        s = calloc(1, sizeof(Session));
        if (!s)
                return -ENOMEM;
        s->broker = b;
        vm_init(&s->vm);
        request_init(&s->options, b->config.default_memory_mb);
        r = request_read(call, &s->options, REQ_KEYS_OPEN_SESSION, b->max_memory_mb, error);
        if (r < 0) {
                request_done(&s->options);
                free(s);
                return r;
        }
        uid = bus_sender_uid(call);
        /* Sessions do not queue: no room (or the uid at its limit; root and admin_group have
         * none) is Capacity at once. */
        r = admission_charge(b->admission, &s->slot, ADMISSION_SLOT_SESSION, uid,
                             admission_has_user_limits(b->admission) && bus_sender_is_admin(b, call),
                             s->options.memory_mb, why);
        if (r < 0) {
                request_done(&s->options);
                free(s);
                return r == -ENOMEM ? r : sd_bus_error_set(error, SBX_ERROR_CAPACITY, why);
        }

        s->owner_uid = uid;
        s->id = ++b->next_id;
        snprintf(s->path, sizeof s->path, SBX_SESSION_PREFIX "/_%" PRIu64, s->id);
        snprintf(why, sizeof why, "Session %" PRIu64, s->id);
        exec_init(&s->exec, b->event, why, &session_exec_ops, s);
        s->created_realtime_usec = now_usec(CLOCK_REALTIME);
        s->owner = strdup(sd_bus_message_get_sender(call) ?: "");
        LIST_APPEND(b->sessions_head, b->sessions_tail, s);
        if (!s->owner) {
                session_free(s);
                return -ENOMEM;
        }
        r = sd_event_add_time(b->event, &s->linger, CLOCK_MONOTONIC, UINT64_MAX, 0, on_linger_done, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->linger, SD_EVENT_OFF);

        /* A session belongs to the caller's uid, not its connection: a client may
         * reconnect (or use one connection per call, like busctl). Abandoned
         * sessions end at their idle timeout. */
        /* A session may start from the L1 snapshot too, unless its VM needs a NIC. */
        bool snapshot = b->config.snapshots && s->options.use_snapshot && !request_has_nic(&s->options);
        r = vm_open(&s->vm, b, s->id, s->options.language, s->options.memory_mb, &s->options, false, snapshot,
                    false, &session_vm_ops, s);
        if (r < 0)
                goto fail;
        s->open_call = sd_bus_message_ref(call);
        log_info("Session %" PRIu64 " opening (%s, %u MB) for uid %d.", s->id,
                 sbx_language_to_string(s->options.language), s->options.memory_mb, (int) uid);
        return 1;
fail:
        session_free(s);
        return sd_bus_error_set_errnof(error, r, "Failed to start the session's VM: %m");
}

Session *session_free(Session *s) {
        Broker *b;

        if (!s)
                return NULL;
        b = s->broker;
        if (!s->closed) {
                /* Fail what is pending, without the linger (we are freeing). */
                s->closed = true;
                reply_error(&s->open_call, SBX_ERROR_SESSION_CLOSED, "%s", "The broker is stopping.");
                if (s->current)
                        reply_error(&s->current->call, SBX_ERROR_SESSION_CLOSED, "%s", "The broker is stopping.");
                for (SessionOp *op = s->queue_head; op; op = op->next)
                        reply_error(&op->call, SBX_ERROR_SESSION_CLOSED, "%s", "The broker is stopping.");
        }
        session_release_vm(s);
        s->timer = sd_event_source_disable_unref(s->timer);
        s->linger = sd_event_source_disable_unref(s->linger);
        s->open_call = sd_bus_message_unref(s->open_call);
        s->list_reply = sd_bus_message_unref(s->list_reply);
        session_op_free(s->current);
        while (s->queue_head) {
                SessionOp *op = s->queue_head;
                s->queue_head = op->next;
                session_op_free(op);
        }
        exec_done(&s->exec);
        request_done(&s->options);
        free(s->owner);

        LIST_REMOVE(b->sessions_head, b->sessions_tail, s);
        free(s);
        return NULL;
}
