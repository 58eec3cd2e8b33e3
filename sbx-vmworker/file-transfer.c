/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker-channel.h"
#include "file-transfer.h"
#include "guest-channel.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "text-util.h"
#include "worker.h"

/* Data for the guest is only read from the caller while less than this is queued towards the guest. */
#define TRANSFER_GUEST_QUEUE_HIGH (128u * 1024u)
/* Listing entries are only taken from the guest while less than this is queued towards the broker. */
#define TRANSFER_BROKER_QUEUE_HIGH (256u * 1024u)
/* A guest that sends more entries than this for one listing is broken (we forward TRANSFER_LIST_MAX). */
#define TRANSFER_LIST_RECEIVE_MAX (1000u * 1000u)
/* Chunks copied per wakeup before other events get a turn. */
#define TRANSFER_CHUNKS_PER_WAKEUP 16u

static const char *op_name(TransferOp op) {
        switch (op) {
        case TRANSFER_WRITE:
                return "file write";
        case TRANSFER_READ:
                return "file read";
        case TRANSFER_LIST:
        default:
                return "listing";
        }
}

int transfer_init(Transfer *t) {
        *t = (Transfer) { .caller.fd = -EBADF };
        t->buf = malloc(SBX_OUTPUT_CHUNK_MAX);
        return t->buf ? 0 : -ENOMEM;
}

static void transfer_reset(Transfer *t) {
        caller_fd_close(&t->caller);
        sbx_error_done(&t->caller_error);
        uint8_t *buf = t->buf;
        *t = (Transfer) { .caller.fd = -EBADF, .buf = buf };
}

void transfer_done(Transfer *t) {
        transfer_reset(t);
        free(t->buf);
        t->buf = NULL;
}

/* The request is answered: back to IDLE. */
static void transfer_end(Worker *w) {
        transfer_reset(&w->transfer);
        worker_set_state(w, WORKER_IDLE);
}

/* Something moved: the stall timer starts over. */
static void progress(Worker *w) {
        if (!w->timer)
                return;
        if (sd_event_source_set_time_relative(w->timer, TRANSFER_STALL_USEC) >= 0)
                (void) sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT);
}

static void caller_failed(Transfer *s, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void caller_failed(Transfer *s, int error, const char *fmt, ...) {
        va_list ap;

        if (!sbx_error_is_set(&s->caller_error)) {
                va_start(ap, fmt);
                (void) sbx_error_setv(&s->caller_error, error, fmt, ap);
                va_end(ap);
                log_info("File transfer: %s.", sbx_error_message(&s->caller_error));
        }
        caller_fd_close(&s->caller);
        s->buf_len = s->buf_off = 0;
}

static void finish_write(Worker *w);

static int on_stall(sd_event_source *src, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        Transfer *s = &w->transfer;
        (void) src;
        (void) usec;

        if (w->state != WORKER_TRANSFER)
                return 0;
        switch (s->wait) {
        case TRANSFER_WAIT_CALLER:
                if (s->op == TRANSFER_WRITE) {
                        caller_failed(s, -ETIMEDOUT, "the caller stopped sending data");
                        finish_write(w);
                } else {
                        caller_failed(s, -ETIMEDOUT, "the caller stopped reading");
                        s->wait = TRANSFER_WAIT_GUEST;
                        framed_conn_resume(&w->vm.guest); /* drain the guest until its FILE_RESULT */
                }
                if (w->state == WORKER_TRANSFER)
                        progress(w);
                return 0;
        case TRANSFER_WAIT_BROKER:
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's messages.");
                return 0;
        case TRANSFER_WAIT_GUEST:
        default:
                worker_fail(w, SBX_ERR_TRANSIENT,
                            "The VM stopped responding: no progress of the %s for %u s. The VM was destroyed.",
                            op_name(s->op), TRANSFER_STALL_USEC / 1000000u);
                return 0;
        }
}

/* ---- file write: caller fd -> H_FILE_DATA ---- */

static int send_data(Worker *w, uint8_t type, const void *data, size_t n) {
        SbxMsg m;

        sbx_msg_begin(&m, type);
        if (data)
                sbx_msg_put(&m, SBX_T_DATA, data, n);
        int r = framed_conn_send(&w->vm.guest, &m);
        sbx_msg_done(&m);
        return r;
}

static void finish_write(Worker *w) {
        Transfer *s = &w->transfer;

        caller_fd_close(&s->caller);
        if (s->end_sent)
                return;
        s->end_sent = true;
        s->wait = TRANSFER_WAIT_GUEST;
        int r = send_data(w, SBX_H_FILE_END, NULL, 0);
        if (r < 0)
                worker_fail(w, SBX_ERR_TRANSIENT, "The VM stopped responding: failed to write to the guest (%s).",
                            strerror(-r));
}

static void pump_write(Worker *w) {
        Transfer *s = &w->transfer;

        for (unsigned i = 0; i < TRANSFER_CHUNKS_PER_WAKEUP; i++) {
                if (w->state != WORKER_TRANSFER || !caller_fd_is_open(&s->caller) || s->end_sent)
                        return;
                if (framed_conn_queued(&w->vm.guest) >= TRANSFER_GUEST_QUEUE_HIGH) {
                        /* transfer_on_guest_drain() picks up from here. */
                        (void) caller_fd_watch(&s->caller, false);
                        s->wait = TRANSFER_WAIT_GUEST;
                        return;
                }
                ssize_t k = caller_fd_read(&s->caller, s->buf, SBX_OUTPUT_CHUNK_MAX);
                if (k == -EAGAIN || k == -EINTR) {
                        (void) caller_fd_watch(&s->caller, true);
                        s->wait = TRANSFER_WAIT_CALLER;
                        return;
                }
                if (k < 0) {
                        caller_failed(s, (int) k, "reading the caller's data failed: %s", strerror((int) -k));
                        finish_write(w);
                        return;
                }
                if (k == 0) {
                        finish_write(w);
                        return;
                }
                s->bytes += (uint64_t) k;
                progress(w);
                int r = send_data(w, SBX_H_FILE_DATA, s->buf, (size_t) k);
                if (r < 0) {
                        worker_fail(w, SBX_ERR_TRANSIENT,
                                    "The VM stopped responding: failed to write to the guest (%s).", strerror(-r));
                        return;
                }
                if (s->bytes > SBX_FILE_MAX) {
                        /* The guest refuses it (TOO_LARGE); no need to read the rest. */
                        finish_write(w);
                        return;
                }
        }
        /* Other events get a turn; come back on the next iteration. */
        (void) caller_fd_watch(&s->caller, true);
}

/* ---- file read: G_FILE_DATA -> caller fd ---- */

/* Writes the buffered chunk. true: done (or the caller is gone); false: wait for the caller. */
static bool flush_read(Worker *w) {
        Transfer *s = &w->transfer;

        while (s->buf_off < s->buf_len) {
                ssize_t k = caller_fd_write(&s->caller, s->buf + s->buf_off, s->buf_len - s->buf_off);
                if (k == -EAGAIN || k == -EINTR) {
                        (void) caller_fd_watch(&s->caller, true);
                        s->wait = TRANSFER_WAIT_CALLER;
                        return false;
                }
                if (k < 0) {
                        if (k == -EPIPE)
                                caller_failed(s, (int) k, "the caller stopped reading");
                        else
                                caller_failed(s, (int) k, "writing to the caller failed: %s", strerror((int) -k));
                        break;
                }
                s->buf_off += (size_t) k;
                s->bytes += (uint64_t) k;
                progress(w);
        }
        s->buf_len = s->buf_off = 0;
        if (caller_fd_is_open(&s->caller))
                (void) caller_fd_watch(&s->caller, false);
        s->wait = TRANSFER_WAIT_GUEST;
        return true;
}

static void on_caller_ready(CallerFd *f, void *userdata) {
        Worker *w = userdata;
        Transfer *s = &w->transfer;
        (void) f;

        if (w->state != WORKER_TRANSFER)
                return;
        if (s->op == TRANSFER_WRITE)
                pump_write(w);
        else if (s->op == TRANSFER_READ) {
                if (flush_read(w) && w->vm.guest.paused)
                        framed_conn_resume(&w->vm.guest);
        } else
                (void) caller_fd_watch(f, false);
}

/* ---- file requests ---- */

void transfer_start(Worker *w, uint8_t type, const uint8_t *p, size_t n) {
        Transfer *s = &w->transfer;
        FileRequest req = {};
        const char *reason;
        int fd = -EBADF, r;
        SbxMsg m;

        if (type != SBX_B_LIST) {
                fd = framed_conn_take_fd(&w->broker);
                if (fd < 0) {
                        worker_broker_violation(w, "a file request without an fd");
                        return;
                }
        }
        if (w->broker.reader.n_fds > 0) {
                safe_close(fd);
                worker_broker_violation(w, "an fd that belongs to no file request");
                return;
        }

        r = file_request_parse(p, n, &req, &reason);
        if (r < 0) {
                safe_close(fd);
                if (r == -ENOMEM) {
                        worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                        return;
                }
                worker_fail(w, SBX_ERR_INVALID, "Invalid file request: %s. The VM was destroyed.", reason);
                return;
        }

        s->op = type == SBX_B_FILE_WRITE ? TRANSFER_WRITE : type == SBX_B_FILE_READ ? TRANSFER_READ : TRANSFER_LIST;
        worker_set_state(w, WORKER_TRANSFER);
        log_debug("The %s of \"%s\".", op_name(s->op), req.path);

        if (fd >= 0) {
                r = caller_fd_open(&s->caller, w->event, fd, type == SBX_B_FILE_READ, on_caller_ready, w);
                if (r < 0) {
                        /* Nothing was asked of the guest yet: answer right away. */
                        _cleanup_free_ char *msg = text_printf_bounded(256, "the caller's fd cannot be used: %s",
                                                                       strerror(-r));
                        file_request_done(&req);
                        (void) broker_send_file_result(&w->broker, SBX_FILE_IO_ERROR, 0, msg);
                        transfer_end(w);
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
        r = framed_conn_send(&w->vm.guest, &m);
        sbx_msg_done(&m);
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "The VM stopped responding: failed to write to the guest (%s).",
                            strerror(-r));
                return;
        }
        r = worker_arm_timer(w, TRANSFER_STALL_USEC, on_stall, "transfer-stall");
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the stall timer: %s", strerror(-r));
                return;
        }

        s->wait = TRANSFER_WAIT_GUEST;
        if (s->op == TRANSFER_WRITE)
                pump_write(w);
}

static void file_result(Worker *w, const uint8_t *p, size_t n) {
        Transfer *s = &w->transfer;
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
        case TRANSFER_WRITE:
                if (!s->end_sent)
                        log_debug("The guest ended the write early (status %u).", (unsigned) status);
                else if (status == SBX_FILE_OK && !sbx_error_is_set(&s->caller_error) && size != s->bytes) {
                        guest_file_result_done(&res);
                        worker_guest_violation(w, "FILE_RESULT with a size other than the bytes written");
                        return;
                }
                break;
        case TRANSFER_READ:
                if (status == SBX_FILE_OK && size != s->received) {
                        guest_file_result_done(&res);
                        worker_guest_violation(w, "FILE_RESULT with a size other than the bytes sent");
                        return;
                }
                break;
        case TRANSFER_LIST:
                if (status == SBX_FILE_OK && size != s->received) {
                        guest_file_result_done(&res);
                        worker_guest_violation(w, "FILE_RESULT with a count other than the entries sent");
                        return;
                }
                size = s->n_entries;
                if (s->list_truncated)
                        snprintf(note, sizeof note, "listing truncated after %u entries", TRANSFER_LIST_MAX);
                else if (s->n_skipped > 0)
                        snprintf(note, sizeof note, "%u entries whose names are not valid UTF-8 were left out",
                                 s->n_skipped);
                if (*note && status == SBX_FILE_OK)
                        message = note;
                break;
        default:
                break;
        }
        if (sbx_error_is_set(&s->caller_error)) {
                /* The guest finished its part; the caller's side broke. */
                status = SBX_FILE_IO_ERROR;
                size = s->bytes;
                message = sbx_error_message(&s->caller_error);
        }

        log_info("The %s finished: status %u, %" PRIu64 " %s%s%s.", op_name(s->op), (unsigned) status, size,
                 s->op == TRANSFER_LIST ? "entries" : "bytes", message ? ": " : "", message ?: "");
        r = broker_send_file_result(&w->broker, status, size, message);
        guest_file_result_done(&res);
        if (r == -ENOBUFS) {
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's messages.");
                return;
        }
        transfer_end(w);
}

static int file_data(Worker *w, const uint8_t *p, size_t n) {
        Transfer *s = &w->transfer;
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
        progress(w);
        if (!caller_fd_is_open(&s->caller) || d.len == 0)
                return 0; /* the caller is gone: drained and dropped */
        memcpy(s->buf, d.data, d.len);
        s->buf_len = d.len;
        s->buf_off = 0;
        return flush_read(w) ? 0 : FRAMED_CONN_PAUSE;
}

static int list_entry(Worker *w, const uint8_t *p, size_t n) {
        Transfer *s = &w->transfer;
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
        if (++s->received > TRANSFER_LIST_RECEIVE_MAX) {
                worker_guest_violation(w, "more than a million LIST_ENTRY messages");
                return 1;
        }
        progress(w);
        if (!e.printable) {
                s->n_skipped++;
                return 0;
        }
        if (s->n_entries >= TRANSFER_LIST_MAX) {
                s->list_truncated = true;
                return 0;
        }
        r = broker_send_list_entry(&w->broker, e.name, e.is_dir, e.size);
        if (r == -ENOBUFS) {
                worker_fail(w, SBX_ERR_INTERNAL, "The broker stopped reading the worker's messages.");
                return 1;
        }
        s->n_entries++;
        if (framed_conn_queued(&w->broker) >= TRANSFER_BROKER_QUEUE_HIGH) {
                s->wait = TRANSFER_WAIT_BROKER; /* transfer_on_broker_drain() resumes */
                return FRAMED_CONN_PAUSE;
        }
        return 0;
}

/* ---- dispatch ---- */

int transfer_on_guest_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n) {
        Transfer *s = &w->transfer;
        char buf[96];

        if (type == SBX_G_FILE_RESULT) {
                file_result(w, p, n);
                return 0;
        }
        if (type == SBX_G_FILE_DATA && s->op == TRANSFER_READ)
                return file_data(w, p, n);
        if (type == SBX_G_LIST_ENTRY && s->op == TRANSFER_LIST)
                return list_entry(w, p, n);
        snprintf(buf, sizeof buf, "%s (type %u) during %s", guest_msg_type_to_string(type), type, op_name(s->op));
        worker_guest_violation(w, buf);
        return 1;
}

void transfer_on_broker_drain(Worker *w) {
        Transfer *s = &w->transfer;

        if (s->op == TRANSFER_LIST && s->wait == TRANSFER_WAIT_BROKER && w->vm.guest.paused) {
                s->wait = TRANSFER_WAIT_GUEST;
                framed_conn_resume(&w->vm.guest);
        }
}

void transfer_on_guest_drain(Worker *w) {
        Transfer *s = &w->transfer;

        if (s->op == TRANSFER_WRITE && s->wait == TRANSFER_WAIT_GUEST && !s->end_sent && caller_fd_is_open(&s->caller))
                pump_write(w);
}
