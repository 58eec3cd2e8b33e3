/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel.h"
#include "broker-channel.h"
#include "caller-fd.h"
#include "fdio.h"
#include "guest-channel.h"
#include "log.h"
#include "macro.h"
#include "session.h"
#include "text-util.h"
#include "validate.h"

/* Data for the guest is only read from the caller while less than this is queued towards the guest. */
#define SESSION_GUEST_QUEUE_HIGH (128u * 1024u)
/* Listing entries are only taken from the guest while less than this is queued towards the broker. */
#define SESSION_BROKER_QUEUE_HIGH (256u * 1024u)
/* A guest that sends more entries than this for one listing is broken (we forward SESSION_LIST_MAX). */
#define SESSION_LIST_RECEIVE_MAX (1000u * 1000u)
/* Chunks copied per wakeup before other events get a turn. */
#define SESSION_CHUNKS_PER_WAKEUP 16u
#define SESSION_TIMER_ACCURACY_USEC (10u * 1000u)

typedef enum SessionOp {
        SESSION_IDLE,
        SESSION_EXEC,
        SESSION_FILE_WRITE,
        SESSION_FILE_READ,
        SESSION_LIST,
} SessionOp;

/* What an operation in flight waits for: decides who is blamed when it stalls. */
typedef enum SessionWait {
        SESSION_WAIT_GUEST,
        SESSION_WAIT_CALLER,
        SESSION_WAIT_BROKER,
} SessionWait;

struct Session {
        Worker *w;
        SessionOp op;
        SessionWait wait;
        sd_event_source *timer; /* the exec deadline, or the stall timer of a file operation */

        RunRequest exec;

        CallerFd caller;
        bool caller_failed; /* the caller stopped sending or reading; caller_error says how */
        char caller_error[160];
        bool end_sent;  /* write: SBX_H_FILE_END is out */
        uint8_t *buf;   /* one chunk, SBX_OUTPUT_CHUNK_MAX bytes: never more of a file in memory */
        size_t buf_len, buf_off;
        uint64_t bytes;    /* file bytes taken from the caller (write) or written to it (read) */
        uint64_t received; /* read: file bytes from the guest; list: entries from the guest */
        unsigned n_entries, n_skipped;
        bool list_truncated;
};

static const char *session_op_name(SessionOp op) {
        switch (op) {
        case SESSION_EXEC:
                return "exec";
        case SESSION_FILE_WRITE:
                return "file write";
        case SESSION_FILE_READ:
                return "file read";
        case SESSION_LIST:
                return "listing";
        default:
                return "nothing";
        }
}

static void session_end_op(Session *s) {
        caller_fd_close(&s->caller);
        s->timer = sd_event_source_disable_unref(s->timer);
        run_request_done(&s->exec);
        s->op = SESSION_IDLE;
        s->wait = SESSION_WAIT_GUEST;
        s->caller_failed = s->end_sent = s->list_truncated = false;
        s->caller_error[0] = 0;
        s->buf_len = s->buf_off = 0;
        s->bytes = s->received = 0;
        s->n_entries = s->n_skipped = 0;
}

static void session_violation(Session *s, const char *what) {
        worker_fail(s->w, SBX_ERR_INTERNAL, "Protocol violation by the broker: %s. The session was closed.", what);
}

/* ---- timers ---- */

static int on_session_timer(sd_event_source *src, uint64_t usec, void *userdata);

static int session_arm(Session *s, uint64_t usec) {
        s->timer = sd_event_source_disable_unref(s->timer);
        int r = sd_event_add_time_relative(s->w->event, &s->timer, CLOCK_MONOTONIC, usec, SESSION_TIMER_ACCURACY_USEC,
                                           on_session_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->timer, "session-deadline");
        return 0;
}

/* Something moved: the stall timer starts over. */
static void session_progress(Session *s) {
        if (!s->timer || s->op == SESSION_EXEC)
                return;
        if (sd_event_source_set_time_relative(s->timer, SESSION_STALL_USEC) >= 0)
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

static void session_caller_failed(Session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void session_caller_failed(Session *s, const char *fmt, ...) {
        va_list ap;

        if (!s->caller_failed) {
                va_start(ap, fmt);
                vsnprintf(s->caller_error, sizeof s->caller_error, fmt, ap);
                va_end(ap);
                s->caller_failed = true;
                log_info("File transfer: %s.", s->caller_error);
        }
        caller_fd_close(&s->caller);
        s->buf_len = s->buf_off = 0;
}

static void session_finish_write(Session *s);

static int on_session_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Session *s = userdata;
        Worker *w = s->w;
        (void) src;
        (void) usec;

        if (w->state != WORKER_SESSION)
                return 0;
        if (s->op == SESSION_EXEC) {
                log_warning("Exec %" PRIu64 " did not finish within its timeout of %" PRIu32 " ms plus %u s grace.",
                            s->exec.run_id, s->exec.timeout_ms, SESSION_EXEC_GRACE_USEC / 1000000u);
                worker_fail(w, SBX_ERR_TRANSIENT,
                            "The VM stopped responding: exec %" PRIu64 " did not end within its timeout of %" PRIu32
                            " ms plus %u s. The session was closed.",
                            s->exec.run_id, s->exec.timeout_ms, SESSION_EXEC_GRACE_USEC / 1000000u);
                return 0;
        }

        switch (s->wait) {
        case SESSION_WAIT_CALLER:
                if (s->op == SESSION_FILE_WRITE) {
                        session_caller_failed(s, "the caller stopped sending data");
                        session_finish_write(s);
                } else {
                        session_caller_failed(s, "the caller stopped reading");
                        s->wait = SESSION_WAIT_GUEST;
                        framed_conn_resume(&w->guest); /* drain the guest until its FILE_RESULT */
                }
                if (w->state == WORKER_SESSION && s->op != SESSION_IDLE)
                        session_progress(s);
                return 0;
        case SESSION_WAIT_BROKER:
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's messages.");
                return 0;
        case SESSION_WAIT_GUEST:
        default:
                worker_fail(w, SBX_ERR_TRANSIENT,
                            "The VM stopped responding: no progress of the %s for %u s. The session was closed.",
                            session_op_name(s->op), SESSION_STALL_USEC / 1000000u);
                return 0;
        }
}

/* ---- exec ---- */

static void session_start_exec(Session *s, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        const char *reason;
        SbxMsg m;
        int r;

        r = run_request_parse_kind(RUN_REQUEST_EXEC, p, n, w->config, &s->exec, &reason);
        if (r == -ENOMEM) {
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                return;
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_INVALID, "Invalid exec request: %s. The session was closed.", reason);
                return;
        }

        r = guest_build_session_exec(&w->req, &s->exec, &m);
        if (r == -E2BIG) {
                worker_fail(w, SBX_ERR_INVALID,
                            "Invalid exec request: more than %u environment variables in the session and "
                            "the exec together. The session was closed.",
                            SBX_ENV_COUNT_MAX);
                return;
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to build the exec request: %s", strerror(-r));
                return;
        }

        log_info("Exec %" PRIu64 ": %zu bytes of code, timeout %" PRIu32 " ms.", s->exec.run_id, s->exec.code_len,
                 s->exec.timeout_ms);
        w->stdout_sent = w->stderr_sent = 0;
        w->stdout_truncated = w->stderr_truncated = false;
        w->t_exec = now_usec(CLOCK_MONOTONIC);
        s->op = SESSION_EXEC;

        r = framed_conn_send(&w->guest, &m);
        sbx_msg_done(&m);
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "Failed to send the code to the guest: %s", strerror(-r));
                return;
        }
        r = session_arm(s, (uint64_t) s->exec.timeout_ms * 1000u + SESSION_EXEC_GRACE_USEC);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the exec deadline: %s", strerror(-r));
                return;
        }
}

static void session_exec_done(Session *s, const GuestExit *e) {
        _cleanup_free_ char *message = NULL;
        Worker *w = s->w;
        VmCgroupStats stats;

        vm_cgroup_read_stats(&w->cgroup, &stats);
        if (e->timed_out)
                message = worker_timeout_message(s->exec.timeout_ms);

        RunResult result = {
                .exit_code = e->timed_out ? -1 : e->exit_code,
                .exec_ms = e->exec_ms,
                .cpu_ms = stats.cpu_usec / 1000u,
                .mem_peak_mb = (stats.memory_peak_bytes + (1u << 20) - 1) >> 20,
                .cpu_throttled = stats.nr_throttled,
                .timed_out = e->timed_out,
                .stdout_truncated = w->stdout_truncated,
                .stderr_truncated = w->stderr_truncated,
                .accel = sbx_accel_to_string(w->accel),
                .cgroup_mode = stats.limits_mode,
                .message = message,
                .have_state_reset = true,
                .state_reset = e->state_reset,
        };
        log_info("Exec %" PRIu64 " finished: exit %" PRIi32 "%s%s, exec %" PRIu64 " ms (host %" PRIu64 " ms).",
                 s->exec.run_id, result.exit_code, e->timed_out ? " (timed out)" : "",
                 e->state_reset ? ", interpreter restarted" : "", e->exec_ms, ms_since(w->t_exec));

        int r = broker_send_result(&w->broker, &result);
        if (r == -ENOBUFS) {
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's output.");
                return;
        }
        if (r < 0)
                log_debug_errno(r, "Failed to send the result: %m"); /* the broker is gone: its close handler ends us */
        session_end_op(s);
}

/* ---- file write: caller fd -> H_FILE_DATA ---- */

static int session_send_data(Session *s, uint8_t type, const void *data, size_t n) {
        SbxMsg m;

        sbx_msg_begin(&m, type);
        if (data)
                sbx_msg_put(&m, SBX_T_DATA, data, n);
        int r = framed_conn_send(&s->w->guest, &m);
        sbx_msg_done(&m);
        return r;
}

static void session_finish_write(Session *s) {
        caller_fd_close(&s->caller);
        if (s->end_sent)
                return;
        s->end_sent = true;
        s->wait = SESSION_WAIT_GUEST;
        int r = session_send_data(s, SBX_H_FILE_END, NULL, 0);
        if (r < 0)
                worker_fail(s->w, SBX_ERR_TRANSIENT, "The VM stopped responding: failed to write to the guest (%s).",
                            strerror(-r));
}

static void session_pump_write(Session *s) {
        Worker *w = s->w;

        for (unsigned i = 0; i < SESSION_CHUNKS_PER_WAKEUP; i++) {
                if (w->state != WORKER_SESSION || !caller_fd_is_open(&s->caller) || s->end_sent)
                        return;
                if (framed_conn_queued(&w->guest) >= SESSION_GUEST_QUEUE_HIGH) {
                        /* session_on_guest_drain() picks up from here. */
                        (void) caller_fd_watch(&s->caller, false);
                        s->wait = SESSION_WAIT_GUEST;
                        return;
                }
                ssize_t k = caller_fd_read(&s->caller, s->buf, SBX_OUTPUT_CHUNK_MAX);
                if (k == -EAGAIN || k == -EINTR) {
                        (void) caller_fd_watch(&s->caller, true);
                        s->wait = SESSION_WAIT_CALLER;
                        return;
                }
                if (k < 0) {
                        session_caller_failed(s, "reading the caller's data failed: %s", strerror((int) -k));
                        session_finish_write(s);
                        return;
                }
                if (k == 0) {
                        session_finish_write(s);
                        return;
                }
                s->bytes += (uint64_t) k;
                session_progress(s);
                int r = session_send_data(s, SBX_H_FILE_DATA, s->buf, (size_t) k);
                if (r < 0) {
                        worker_fail(w, SBX_ERR_TRANSIENT,
                                    "The VM stopped responding: failed to write to the guest (%s).", strerror(-r));
                        return;
                }
                if (s->bytes > SBX_FILE_MAX) {
                        /* The guest refuses it (TOO_LARGE); no need to read the rest. */
                        session_finish_write(s);
                        return;
                }
        }
        /* Other events get a turn; come back on the next iteration. */
        (void) caller_fd_watch(&s->caller, true);
}

/* ---- file read: G_FILE_DATA -> caller fd ---- */

/* Writes the buffered chunk. true: done (or the caller is gone); false: wait for the caller. */
static bool session_flush_read(Session *s) {
        while (s->buf_off < s->buf_len) {
                ssize_t k = caller_fd_write(&s->caller, s->buf + s->buf_off, s->buf_len - s->buf_off);
                if (k == -EAGAIN || k == -EINTR) {
                        (void) caller_fd_watch(&s->caller, true);
                        s->wait = SESSION_WAIT_CALLER;
                        return false;
                }
                if (k < 0) {
                        if (k == -EPIPE)
                                session_caller_failed(s, "the caller stopped reading");
                        else
                                session_caller_failed(s, "writing to the caller failed: %s", strerror((int) -k));
                        break;
                }
                s->buf_off += (size_t) k;
                s->bytes += (uint64_t) k;
                session_progress(s);
        }
        s->buf_len = s->buf_off = 0;
        if (caller_fd_is_open(&s->caller))
                (void) caller_fd_watch(&s->caller, false);
        s->wait = SESSION_WAIT_GUEST;
        return true;
}

static void on_caller_ready(CallerFd *f, void *userdata) {
        Session *s = userdata;
        Worker *w = s->w;
        (void) f;

        if (w->state != WORKER_SESSION)
                return;
        if (s->op == SESSION_FILE_WRITE)
                session_pump_write(s);
        else if (s->op == SESSION_FILE_READ) {
                if (session_flush_read(s) && w->guest.paused)
                        framed_conn_resume(&w->guest);
        } else
                (void) caller_fd_watch(f, false);
}

/* ---- file requests ---- */

static void session_start_file(Session *s, uint8_t type, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        FileRequest req = {};
        const char *reason;
        int fd = -EBADF, r;
        SbxMsg m;

        if (type != SBX_B_LIST) {
                fd = sbx_frame_reader_take_fd(&w->broker.reader);
                if (fd < 0) {
                        session_violation(s, "a file request without an fd");
                        return;
                }
        }
        if (w->broker.reader.n_fds > 0) {
                safe_close(fd);
                session_violation(s, "an fd that belongs to no file request");
                return;
        }

        r = file_request_parse(p, n, &req, &reason);
        if (r < 0) {
                safe_close(fd);
                if (r == -ENOMEM) {
                        worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                        return;
                }
                worker_fail(w, SBX_ERR_INVALID, "Invalid file request: %s. The session was closed.", reason);
                return;
        }

        s->op = type == SBX_B_FILE_WRITE ? SESSION_FILE_WRITE : type == SBX_B_FILE_READ ? SESSION_FILE_READ : SESSION_LIST;
        log_debug("Session %s of \"%s\".", session_op_name(s->op), req.path);

        if (fd >= 0) {
                r = caller_fd_open(&s->caller, w->event, fd, type == SBX_B_FILE_READ, on_caller_ready, s);
                if (r < 0) {
                        /* Nothing was asked of the guest yet: answer right away. */
                        _cleanup_free_ char *msg = text_printf_bounded(256, "the caller's fd cannot be used: %s",
                                                                       strerror(-r));
                        file_request_done(&req);
                        (void) broker_send_file_result(&w->broker, SBX_FILE_IO_ERROR, 0, msg);
                        session_end_op(s);
                        return;
                }
        }

        r = guest_build_path_request(type == SBX_B_FILE_WRITE ? SBX_H_FILE_WRITE :
                                     type == SBX_B_FILE_READ  ? SBX_H_FILE_READ :
                                                                SBX_H_LIST,
                                     req.path, req.mode, &m);
        file_request_done(&req);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to build the file request: %s", strerror(-r));
                return;
        }
        r = framed_conn_send(&w->guest, &m);
        sbx_msg_done(&m);
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "The VM stopped responding: failed to write to the guest (%s).",
                            strerror(-r));
                return;
        }
        r = session_arm(s, SESSION_STALL_USEC);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the stall timer: %s", strerror(-r));
                return;
        }

        s->wait = SESSION_WAIT_GUEST;
        if (s->op == SESSION_FILE_WRITE)
                session_pump_write(s);
}

static void session_file_result(Session *s, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        GuestFileResult res = {};
        const char *reason;
        char note[160] = "";
        int r;

        r = guest_parse_file_result(p, n, &res, &reason);
        if (r == -ENOMEM) {
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                return;
        }
        if (r < 0) {
                worker_guest_violation(w, reason);
                return;
        }

        SbxFileStatus status = res.status;
        uint64_t size = res.size;
        const char *message = res.message;

        switch (s->op) {
        case SESSION_FILE_WRITE:
                if (!s->end_sent)
                        log_debug("The guest ended the write early (status %u).", (unsigned) status);
                else if (status == SBX_FILE_OK && !s->caller_failed && size != s->bytes) {
                        guest_file_result_done(&res);
                        worker_guest_violation(w, "FILE_RESULT with a size other than the bytes written");
                        return;
                }
                break;
        case SESSION_FILE_READ:
                if (status == SBX_FILE_OK && size != s->received) {
                        guest_file_result_done(&res);
                        worker_guest_violation(w, "FILE_RESULT with a size other than the bytes sent");
                        return;
                }
                break;
        case SESSION_LIST:
                if (status == SBX_FILE_OK && size != s->received) {
                        guest_file_result_done(&res);
                        worker_guest_violation(w, "FILE_RESULT with a count other than the entries sent");
                        return;
                }
                size = s->n_entries;
                if (s->list_truncated)
                        snprintf(note, sizeof note, "listing truncated after %u entries", SESSION_LIST_MAX);
                else if (s->n_skipped > 0)
                        snprintf(note, sizeof note, "%u entries whose names are not valid UTF-8 were left out",
                                 s->n_skipped);
                if (*note && status == SBX_FILE_OK)
                        message = note;
                break;
        default:
                break;
        }
        if (s->caller_failed) {
                /* The guest finished its part; the caller's side broke. */
                status = SBX_FILE_IO_ERROR;
                size = s->bytes;
                message = s->caller_error;
        }

        log_info("Session %s finished: status %u, %" PRIu64 " %s%s%s.", session_op_name(s->op), (unsigned) status, size,
                 s->op == SESSION_LIST ? "entries" : "bytes", message ? ": " : "", message ?: "");
        r = broker_send_file_result(&w->broker, status, size, message);
        guest_file_result_done(&res);
        if (r == -ENOBUFS) {
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's messages.");
                return;
        }
        session_end_op(s);
}

static int session_file_data(Session *s, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        GuestFileData d;
        const char *reason;
        int r;

        r = guest_parse_file_data(p, n, &d, &reason);
        if (r < 0) {
                worker_guest_violation(w, reason);
                return 1;
        }
        s->received += d.len;
        if (s->received > SBX_FILE_MAX) {
                worker_guest_violation(w, "more than 500 MiB of FILE_DATA");
                return 1;
        }
        session_progress(s);
        if (!caller_fd_is_open(&s->caller) || d.len == 0)
                return 0; /* the caller is gone: drained and dropped */
        memcpy(s->buf, d.data, d.len);
        s->buf_len = d.len;
        s->buf_off = 0;
        return session_flush_read(s) ? 0 : FRAMED_CONN_PAUSE;
}

static int session_list_entry(Session *s, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        GuestListEntry e;
        const char *reason;
        int r;

        r = guest_parse_list_entry(p, n, &e, &reason);
        if (r == -ENOMEM) {
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                return 1;
        }
        if (r < 0) {
                worker_guest_violation(w, reason);
                return 1;
        }
        if (++s->received > SESSION_LIST_RECEIVE_MAX) {
                worker_guest_violation(w, "more than a million LIST_ENTRY messages");
                return 1;
        }
        session_progress(s);
        if (!e.printable) {
                s->n_skipped++;
                return 0;
        }
        if (s->n_entries >= SESSION_LIST_MAX) {
                s->list_truncated = true;
                return 0;
        }
        r = broker_send_list_entry(&w->broker, e.name, e.is_dir, e.size);
        if (r == -ENOBUFS) {
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's messages.");
                return 1;
        }
        s->n_entries++;
        if (framed_conn_queued(&w->broker) >= SESSION_BROKER_QUEUE_HIGH) {
                s->wait = SESSION_WAIT_BROKER; /* session_on_broker_drain() resumes */
                return FRAMED_CONN_PAUSE;
        }
        return 0;
}

/* ---- dispatch ---- */

int session_on_guest_frame(Session *s, uint8_t type, const uint8_t *p, size_t n) {
        _cleanup_free_ char *message = NULL;
        Worker *w = s->w;
        const char *reason;
        char buf[96];
        int r;

        if (type == SBX_G_PONG)
                return 0;
        if (type == SBX_G_ERROR) {
                r = guest_parse_error(p, n, &message, &reason);
                if (r == -ENOMEM)
                        worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                else if (r < 0)
                        worker_guest_violation(w, reason);
                else
                        worker_fail(w, SBX_ERR_TRANSIENT, "The guest agent failed during the %s: %s. The session was closed.",
                                    session_op_name(s->op), message ?: "(no reason given)");
                return 1;
        }

        switch (s->op) {
        case SESSION_EXEC:
                if (type == SBX_G_OUTPUT) {
                        GuestOutput o;
                        r = guest_parse_output(p, n, &o, &reason);
                        if (r < 0)
                                worker_guest_violation(w, reason);
                        else
                                worker_forward_output(w, &o);
                        return 0;
                }
                if (type == SBX_G_EXIT) {
                        GuestExit e;
                        r = guest_parse_exit(p, n, &e, &reason);
                        if (r < 0)
                                worker_guest_violation(w, reason);
                        else
                                session_exec_done(s, &e);
                        return 0;
                }
                break;
        case SESSION_FILE_WRITE:
                if (type == SBX_G_FILE_RESULT) {
                        session_file_result(s, p, n);
                        return 0;
                }
                break;
        case SESSION_FILE_READ:
                if (type == SBX_G_FILE_DATA)
                        return session_file_data(s, p, n);
                if (type == SBX_G_FILE_RESULT) {
                        session_file_result(s, p, n);
                        return 0;
                }
                break;
        case SESSION_LIST:
                if (type == SBX_G_LIST_ENTRY)
                        return session_list_entry(s, p, n);
                if (type == SBX_G_FILE_RESULT) {
                        session_file_result(s, p, n);
                        return 0;
                }
                break;
        default:
                break;
        }
        snprintf(buf, sizeof buf, "%s (type %u) during %s", guest_msg_type_to_string(type), type,
                 s->op == SESSION_IDLE ? "no request" : session_op_name(s->op));
        worker_guest_violation(w, buf);
        return 1;
}

int session_on_broker_frame(Session *s, uint8_t type, const uint8_t *p, size_t n) {
        Worker *w = s->w;
        char buf[96];

        if (type == SBX_B_CLOSE) {
                worker_abort(w, "The broker closed the session");
                return 1;
        }
        if (type == SBX_B_CANCEL) {
                worker_fail(w, SBX_ERR_TRANSIENT, "The session was cancelled.");
                return 1;
        }
        if (type == SBX_B_INTERRUPT) {
                /* Ctrl-C for the running exec; late ones (the exec just ended) are no error. */
                if (w->state == WORKER_SESSION && s->op == SESSION_EXEC) {
                        SbxMsg m;
                        sbx_msg_begin(&m, SBX_H_INTERRUPT);
                        int r = framed_conn_send(&w->guest, &m);
                        sbx_msg_done(&m);
                        if (r < 0)
                                log_debug_errno(r, "Failed to send INTERRUPT: %m");
                        else
                                log_info("Exec %" PRIu64 ": interrupted by the caller.", s->exec.run_id);
                }
                return 0;
        }
        if (w->state != WORKER_SESSION) {
                snprintf(buf, sizeof buf, "message type %u before SBX_W_SESSION_READY", type);
                session_violation(s, buf);
                return 1;
        }
        if (s->op != SESSION_IDLE) {
                snprintf(buf, sizeof buf, "message type %u while the %s is in flight", type, session_op_name(s->op));
                session_violation(s, buf);
                return 1;
        }

        switch (type) {
        case SBX_B_EXEC:
                if (w->broker.reader.n_fds > 0)
                        session_violation(s, "an fd that belongs to no file request");
                else
                        session_start_exec(s, p, n);
                break;
        case SBX_B_FILE_WRITE:
        case SBX_B_FILE_READ:
        case SBX_B_LIST:
                session_start_file(s, type, p, n);
                break;
        default:
                snprintf(buf, sizeof buf, "unexpected message type %u in a session", type);
                session_violation(s, buf);
                return 1;
        }
        return w->state == WORKER_DONE;
}

void session_on_broker_drain(Session *s) {
        Worker *w = s->w;

        if (s->op == SESSION_LIST && s->wait == SESSION_WAIT_BROKER && w->guest.paused) {
                s->wait = SESSION_WAIT_GUEST;
                framed_conn_resume(&w->guest);
        }
}

void session_on_guest_drain(Session *s) {
        if (s->op == SESSION_FILE_WRITE && s->wait == SESSION_WAIT_GUEST && !s->end_sent &&
            caller_fd_is_open(&s->caller))
                session_pump_write(s);
}

int session_new(Worker *w, Session **ret) {
        Session *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->buf = malloc(SBX_OUTPUT_CHUNK_MAX);
        if (!s->buf) {
                free(s);
                return -ENOMEM;
        }
        s->w = w;
        s->caller.fd = -EBADF;
        *ret = s;
        return 0;
}

Session *session_free(Session *s) {
        if (!s)
                return NULL;
        session_end_op(s);
        free(s->buf);
        free(s);
        return NULL;
}
