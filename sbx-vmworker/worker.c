/* SPDX-License-Identifier: Apache-2.0 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accel.h"
#include "broker-channel.h"
#include "fdio.h"
#include "guest-channel.h"
#include "host-tsc.h"
#include "log.h"
#include "macro.h"
#include "qemu.h"
#include "seccomp-filter.h"
#include "session.h"
#include "snapshot.h"
#include "text-util.h"
#include "validate.h"
#include "worker.h"

/* Longest message we put in SBX_T_MESSAGE (the broker accepts SBX_MESSAGE_MAX). */
#define WORKER_MESSAGE_MAX (SBX_MESSAGE_MAX - 96u)
/* Console lines quoted in boot failure messages. */
#define WORKER_CONSOLE_TAIL_MAX 1024u
#define WORKER_FINAL_FLUSH_USEC (10u * 1000000u)
/* After the guest channel closes, how long QEMU gets to exit by itself before we kill it. */
#define WORKER_QEMU_EXIT_WAIT_USEC (300u * 1000u)
/* Deadlines fire within this (sd-event would otherwise coalesce them by up to 250 ms). */
#define WORKER_TIMER_ACCURACY_USEC (10u * 1000u)

static void worker_start(Worker *w);
static int on_exec_deadline(sd_event_source *s, uint64_t usec, void *userdata);
static void on_broker_drain(FramedConn *c, void *userdata);
static void on_guest_drain(FramedConn *c, void *userdata);

uint64_t ms_since(uint64_t t) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        return now > t ? (now - t) / 1000u : 0;
}

/* ---- tearing the VM down ---- */

static void worker_close_vm_channels(Worker *w) {
        w->console_io = sd_event_source_disable_unref(w->console_io);
        w->qemu_stderr_io = sd_event_source_disable_unref(w->qemu_stderr_io);
        w->console_fd = safe_close(w->console_fd);
        w->qemu_stderr_fd = safe_close(w->qemu_stderr_fd);
        /* Not freed here: we may be inside one of its callbacks. worker_boot() and worker_free() do. */
        if (framed_conn_is_open(&w->guest))
                framed_conn_stop(&w->guest);
}

/* Kills the prepared QEMU children that were never released and closes their channels. */
void worker_discard_attempts(Worker *w) {
        for (size_t i = 0; i < ELEMENTSOF(w->attempts); i++) {
                qemu_discard(&w->attempts[i].child);
                w->attempts[i].agent_fd = safe_close(w->attempts[i].agent_fd);
                w->attempts[i].console_fd = safe_close(w->attempts[i].console_fd);
                w->attempts[i].stderr_fd = safe_close(w->attempts[i].stderr_fd);
        }
}

/* Reads what is left in the console and stderr pipes after QEMU exited, for the error message. */
static void worker_drain_diagnostics(Worker *w) {
        for (int i = 0; i < 64 && w->console_fd >= 0 && console_read_fd(&w->console, w->console_fd) > 0; i++)
                ;
        for (int i = 0; i < 64 && w->qemu_stderr_fd >= 0 && console_read_fd(&w->qemu_stderr, w->qemu_stderr_fd) > 0;
             i++)
                ;
}

/* Kills and reaps QEMU (if running) and closes its channels. Returns its wait status in *ret_status when
 * QEMU had exited on its own before we killed it, and -1 otherwise. */
void worker_stop_qemu(Worker *w, uint64_t wait_usec, int *ret_status) {
        int status = -1;

        w->qemu_exit = sd_event_source_disable_unref(w->qemu_exit);
        if (w->qemu_pid > 0) {
                /* Give QEMU a moment to finish dying by itself, so we can tell what happened. */
                uint64_t deadline = now_usec(CLOCK_MONOTONIC) + wait_usec;
                for (;;) {
                        int s;
                        pid_t p = waitpid(w->qemu_pid, &s, WNOHANG);
                        if (p == w->qemu_pid) {
                                status = s;
                                w->qemu_pid = 0;
                                break;
                        }
                        if (p < 0 && errno != EINTR)
                                break;
                        if (now_usec(CLOCK_MONOTONIC) >= deadline)
                                break;
                        (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
                }
                if (w->qemu_pid > 0) {
                        log_debug("Killing QEMU %d.", (int) w->qemu_pid);
                        qemu_kill_and_reap(&w->qemu_pid, NULL);
                }
        }
        worker_drain_diagnostics(w);
        worker_close_vm_channels(w);
        if (ret_status)
                *ret_status = status;
}

static void worker_exit_loop(Worker *w) {
        w->state = WORKER_DONE;
        w->timer = sd_event_source_disable_unref(w->timer);
        (void) sd_event_exit(w->event, 0);
}

/* Sends the final frame queued in the broker connection and leaves the event loop. */
static void worker_finish(Worker *w) {
        int r = framed_conn_flush(&w->broker, WORKER_FINAL_FLUSH_USEC);
        if (r < 0)
                log_warning_errno(r, "Failed to deliver the final message to the broker: %m");
        worker_exit_loop(w);
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

        log_error("%s %" PRIu64 " failed: %s", w->session ? "Session" : "Run", w->req.run_id,
                  message ?: "(out of memory)");
        worker_stop_qemu(w, 0, NULL);
        worker_discard_attempts(w);
        vm_network_release(&w->net);
        vm_cgroup_destroy(&w->cgroup);

        int r = broker_send_error(&w->broker, kind, message ?: "The VM worker ran out of memory.");
        if (r < 0)
                log_warning_errno(r, "Failed to send the error to the broker: %m");
        worker_finish(w);
}

char *worker_timeout_message(uint32_t timeout_ms) {
        if (timeout_ms % 1000u == 0)
                return text_printf_bounded(WORKER_MESSAGE_MAX, "execution timed out after %" PRIu32 " s",
                                           timeout_ms / 1000u);
        return text_printf_bounded(WORKER_MESSAGE_MAX, "execution timed out after %.1f s", timeout_ms / 1000.0);
}

static void worker_succeed(Worker *w, int32_t exit_code, uint64_t exec_ms, bool timed_out) {
        _cleanup_free_ char *message = NULL;
        VmCgroupStats stats;

        if (w->state == WORKER_DONE)
                return;

        /* One-shot VM: it goes before the result, so a result means QEMU is gone. */
        worker_stop_qemu(w, 0, NULL);
        vm_network_release(&w->net);
        vm_cgroup_read_stats(&w->cgroup, &stats);
        vm_cgroup_destroy(&w->cgroup);

        if (timed_out)
                message = worker_timeout_message(w->req.timeout_ms);

        RunResult result = {
                .exit_code = timed_out ? -1 : exit_code,
                .exec_ms = exec_ms,
                .boot_ms = w->boot_ms,
                .setup_ms = w->setup_ms,
                .cpu_ms = stats.cpu_usec / 1000u,
                .mem_peak_mb = (stats.memory_peak_bytes + (1u << 20) - 1) >> 20,
                .cpu_throttled = stats.nr_throttled,
                .timed_out = timed_out,
                .stdout_truncated = w->stdout_truncated,
                .stderr_truncated = w->stderr_truncated,
                .accel = sbx_accel_to_string(w->accel),
                .cgroup_mode = stats.limits_mode,
                .message = message,
                .port_mappings = w->net.mappings,
                .n_port_mappings = w->net.n_hostfwd,
        };
        log_info("Run %" PRIu64 " finished: exit %" PRIi32 "%s, boot %" PRIu64 " ms, exec %" PRIu64
                 " ms, cpu %" PRIu64 " ms, peak %" PRIu64 " MiB.",
                 w->req.run_id, result.exit_code, timed_out ? " (timed out)" : "", result.boot_ms, result.exec_ms,
                 result.cpu_ms, result.mem_peak_mb);

        int r = broker_send_result(&w->broker, &result);
        if (r < 0)
                log_warning_errno(r, "Failed to send the result to the broker: %m");
        worker_finish(w);
}

/* The broker is gone or told us to stop: no result is wanted, only cleanup. */
void worker_abort(Worker *w, const char *why) {
        if (w->state == WORKER_DONE)
                return;
        log_info("%s: stopping%s.", why, w->qemu_pid > 0 ? " the VM" : "");
        worker_stop_qemu(w, 0, NULL);
        vm_network_release(&w->net);
        vm_cgroup_destroy(&w->cgroup);
        worker_exit_loop(w);
}

void worker_guest_violation(Worker *w, const char *reason) {
        worker_fail(w, SBX_ERR_TRANSIENT, "The guest broke the protocol (%s); the VM was destroyed. Safe to retry.",
                    reason);
}

/* ---- output from the guest ---- */

void worker_forward_output(Worker *w, const GuestOutput *o) {
        bool out = o->stream == SBX_STREAM_STDOUT;
        uint64_t *sent = out ? &w->stdout_sent : &w->stderr_sent;
        bool *truncated = out ? &w->stdout_truncated : &w->stderr_truncated;
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

static void worker_on_hello(Worker *w, const uint8_t *p, size_t n) {
        GuestHello hello;
        const char *reason;
        SbxMsg exec;
        int r;

        r = guest_parse_hello(p, n, &hello, &reason);
        if (r < 0) {
                worker_guest_violation(w, reason);
                return;
        }

        w->boot_ms = ms_since(w->t_spawn);
        /* Warm interpreters and snapshots: snapshot.c takes over (and discards the spares when it is done). */
        if (w->snap && snapshot_on_hello(w->snap))
                return;
        /* Booted: the spare QEMU for a retry is not needed. */
        worker_discard_attempts(w);
        if (w->session) {
                log_info("Guest is up after %" PRIu64 " ms (attempt %u); the %s session is ready.", w->boot_ms,
                         w->boot_attempt, sbx_language_to_string(w->req.language));
                w->timer = sd_event_source_disable_unref(w->timer);
                w->state = WORKER_SESSION;
                r = broker_send_session_ready(&w->broker, w->boot_ms, w->setup_ms, sbx_accel_to_string(w->accel),
                                              w->qemu_pid, w->net.mappings, w->net.n_hostfwd);
                if (r < 0)
                        log_debug_errno(r, "Failed to send SESSION_READY: %m");
                return;
        }
        log_info("Guest is up after %" PRIu64 " ms (attempt %u); running the %s code.", w->boot_ms, w->boot_attempt,
                 sbx_language_to_string(w->req.language));

        r = guest_build_exec(&w->req, &exec);
        if (r >= 0) {
                r = framed_conn_send(&w->guest, &exec);
                sbx_msg_done(&exec);
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "Failed to send the code to the guest: %s", strerror(-r));
                return;
        }

        w->state = WORKER_RUNNING;
        w->t_exec = now_usec(CLOCK_MONOTONIC);
        w->timer = sd_event_source_disable_unref(w->timer);
        r = sd_event_add_time_relative(w->event, &w->timer, CLOCK_MONOTONIC,
                                       (uint64_t) w->req.timeout_ms * 1000u + WORKER_TIMEOUT_GRACE_USEC,
                                       WORKER_TIMER_ACCURACY_USEC, on_exec_deadline, w);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the execution deadline: %s", strerror(-r));
                return;
        }
        (void) sd_event_source_set_description(w->timer, "exec-deadline");
        (void) broker_send_status(&w->broker, SBX_PHASE_RUNNING, w->qemu_pid, w->boot_ms, w->net.mappings,
                                  w->net.n_hostfwd);
}

static void worker_on_guest_message(Worker *w, uint8_t type, const uint8_t *p, size_t n) {
        _cleanup_free_ char *message = NULL;
        const char *reason;
        GuestOutput output;
        GuestExit exit;
        char buf[64];
        int r;

        switch (type) {
        case SBX_G_OUTPUT:
                r = guest_parse_output(p, n, &output, &reason);
                if (r < 0)
                        worker_guest_violation(w, reason);
                else
                        worker_forward_output(w, &output);
                break;
        case SBX_G_EXIT:
                r = guest_parse_exit(p, n, &exit, &reason);
                if (r < 0)
                        worker_guest_violation(w, reason);
                else
                        worker_succeed(w, exit.exit_code, exit.exec_ms, exit.timed_out);
                break;
        case SBX_G_ERROR:
                r = guest_parse_error(p, n, &message, &reason);
                if (r == -ENOMEM)
                        worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                else if (r < 0)
                        worker_guest_violation(w, reason);
                else
                        worker_fail(w, SBX_ERR_TRANSIENT, "The guest agent could not run the code: %s",
                                    message ?: "(no reason given)");
                break;
        case SBX_G_PONG:
                /* We never ping, but a stray PONG is harmless. */
                break;
        case SBX_G_HELLO:
                worker_guest_violation(w, "a second HELLO");
                break;
        default:
                snprintf(buf, sizeof buf, "unknown message type %u", type);
                worker_guest_violation(w, buf);
                break;
        }
}

static int on_guest_frame(FramedConn *c, uint8_t type, const uint8_t *p, size_t n, void *userdata) {
        Worker *w = userdata;
        (void) c;

        if (w->snap && (w->state == WORKER_WARMING || (w->state == WORKER_BOOTING && snapshot_expects_resume(w->snap)))) {
                int r = snapshot_on_guest_frame(w->snap, type, p, n);
                return w->state == WORKER_DONE ? 1 : r;
        }
        if (w->state == WORKER_BOOTING) {
                if (type != SBX_G_HELLO)
                        worker_guest_violation(w, "a message before HELLO");
                else
                        worker_on_hello(w, p, n);
        } else if (w->state == WORKER_RUNNING)
                worker_on_guest_message(w, type, p, n);
        else if (w->state == WORKER_SESSION) {
                int r = session_on_guest_frame(w->session, type, p, n);
                if (w->state != WORKER_DONE)
                        return r;
        }

        /* Stop reading the guest once the run is over. */
        return w->state == WORKER_DONE;
}

static void on_guest_close(FramedConn *c, int error, void *userdata) {
        Worker *w = userdata;
        char buf[64];
        int status;
        (void) c;

        if (w->state == WORKER_DONE)
                return;
        if (error == -EBADMSG) {
                worker_guest_violation(w, "a malformed frame");
                return;
        }

        /* EOF: QEMU closed the socket, which it only does when it exits. */
        if (w->snap && snapshot_fallback(w->snap, "the guest channel closed"))
                return;
        worker_stop_qemu(w, WORKER_QEMU_EXIT_WAIT_USEC, &status);
        _cleanup_free_ char *tail = console_tail(&w->qemu_stderr, 512);
        worker_fail(w, SBX_ERR_TRANSIENT, "The guest channel closed %s (QEMU %s).%s%s Safe to retry.",
                    w->state == WORKER_BOOTING ? "while the guest was booting"
                    : w->session               ? "during the session"
                                               : "before the run finished",
                    status >= 0 ? qemu_describe_status(status, buf, sizeof buf) : "was still running",
                    tail && *tail ? " QEMU said: " : "", tail && *tail ? tail : "");
}

/* ---- QEMU ---- */

static int on_qemu_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Worker *w = userdata;
        char buf[64];
        int status;
        (void) s;

        if (w->state == WORKER_DONE)
                return 0;
        /* The guest may have sent EXIT and powered off: everything it sent is still in the socket. */
        framed_conn_drain(&w->guest);
        if (w->state == WORKER_DONE)
                return 0;
        /* Draining may have ended this attempt already (a failed snapshot restore whose closed channel
         * started the cold fallback, which stopped and reaped this QEMU): its exit is no news then. */
        if (w->qemu_exit != s)
                return 0;

        status = si->si_code == CLD_EXITED ? W_EXITCODE(si->si_status, 0) : si->si_status;
        if (w->snap && w->qemu_exit == s) {
                _cleanup_free_ char *why = NULL;
                worker_drain_diagnostics(w);
                _cleanup_free_ char *said = console_tail(&w->qemu_stderr, 300);
                if (asprintf(&why, "QEMU %s%s%s", qemu_describe_status(status, buf, sizeof buf),
                             said && *said ? ": " : "", said && *said ? said : "") < 0)
                        why = NULL;
                if (snapshot_fallback(w->snap, why ?: "QEMU exited"))
                        return 0;
        }
        worker_stop_qemu(w, 0, NULL);
        _cleanup_free_ char *tail = console_tail(&w->qemu_stderr, 512);
        _cleanup_free_ char *console = w->state == WORKER_BOOTING ? console_tail(&w->console, 512) : NULL;
        worker_fail(w, SBX_ERR_TRANSIENT, "QEMU %s unexpectedly %s.%s%s%s%s Safe to retry.",
                    qemu_describe_status(status, buf, sizeof buf),
                    w->state == WORKER_BOOTING ? "while the guest was booting"
                    : w->session               ? "during the session"
                                               : "during the run",
                    tail && *tail ? " QEMU said: " : "", tail && *tail ? tail : "",
                    console && *console ? " Console: " : "", console && *console ? console : "");
        return 0;
}

static int on_console_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        (void) revents;

        int r = console_read_fd(s == w->console_io ? &w->console : &w->qemu_stderr, fd);
        if (r == 0 || (r < 0 && r != -EAGAIN && r != -EINTR))
                /* EOF: QEMU is gone; its exit is handled elsewhere. */
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return 0;
}

static int on_qemu_spawned(pid_t pid, void *userdata) {
        Worker *w = userdata;
        int r = vm_cgroup_attach(&w->cgroup, pid);
        /* A networked QEMU outside its cgroup2 directory would escape sbx-netd's programs: fail closed. */
        return w->net.enabled ? r : 0;
}

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
                    w->session ? "during the session" : "during the run");
        return 0;
}

static int on_boot_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        (void) s;
        (void) usec;

        _cleanup_free_ char *tail = console_tail(&w->console, WORKER_CONSOLE_TAIL_MAX);
        log_warning("The guest did not say HELLO within %" PRIu32 " ms (attempt %u of %u). Console: %s",
                    w->config->boot_timeout_ms, w->boot_attempt, WORKER_BOOT_ATTEMPTS,
                    tail && *tail ? tail : "(empty)");
        if (w->snap && snapshot_fallback(w->snap, "it did not come up in time"))
                return 0;
        worker_stop_qemu(w, 0, NULL);
        if (w->boot_attempt < w->n_attempts)
                worker_boot(w);
        else
                worker_fail(w, SBX_ERR_BOOT_TIMEOUT,
                            "The VM did not boot within %" PRIu32 " ms, %u times in a row. Last console output: %s",
                            w->config->boot_timeout_ms, WORKER_BOOT_ATTEMPTS, tail && *tail ? tail : "(none)");
        return 0;
}

static int on_exec_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        (void) s;
        (void) usec;

        /* The agent enforces the timeout itself and reports it (a timed-out result). Silence past the
         * grace means the VM or its agent stopped working: that is the VM's failure, not the code's. */
        log_warning("The guest did not report within the timeout of %" PRIu32 " ms plus %u s grace; killing the VM.",
                    w->req.timeout_ms, WORKER_TIMEOUT_GRACE_USEC / 1000000u);
        worker_fail(w, SBX_ERR_TRANSIENT,
                    "The VM stopped responding: the guest did not report the end of the code within its timeout of "
                    "%" PRIu32 " ms plus %u s.",
                    w->req.timeout_ms, WORKER_TIMEOUT_GRACE_USEC / 1000000u);
        return 0;
}

/* Starts one boot attempt: releases the QEMU prepared for it, arms the deadline. */
void worker_boot(Worker *w) {
        int r;

        w->boot_attempt++;
        assert(w->boot_attempt >= 1 && w->boot_attempt <= w->n_attempts && w->boot_attempt <= WORKER_ATTEMPTS_MAX);
        __typeof__(w->attempts[0]) *a = &w->attempts[w->boot_attempt - 1];
        /* A previous attempt's channel is closed by now; free it before reusing the struct. */
        if (w->guest.fd >= 0 || w->guest.out)
                framed_conn_close(&w->guest);

        console_init(&w->console, "console", LOG_DEBUG);
        console_init(&w->qemu_stderr, "qemu", LOG_INFO);

        r = qemu_release(&a->child, on_qemu_spawned, w, &w->qemu_pid);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to start QEMU: %s", strerror(-r));
                return;
        }
        w->t_spawn = now_usec(CLOCK_MONOTONIC);
        if (w->boot_attempt == 1)
                w->setup_ms = (w->t_spawn - w->t_request) / 1000u;
        log_debug("Started QEMU %d (attempt %u).", (int) w->qemu_pid, w->boot_attempt);

        r = sd_event_add_child(w->event, &w->qemu_exit, w->qemu_pid, WEXITED, on_qemu_exit, w);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to watch QEMU: %s", strerror(-r));
                return;
        }

        r = framed_conn_open(&w->guest, w->event, "guest channel", TAKE_FD(a->agent_fd), SBX_GUEST_FRAME_MAX,
                             SBX_HOST_FRAME_MAX + 4096u, on_guest_frame, on_guest_close, w);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to watch the guest channel: %s", strerror(-r));
                return;
        }
        if (w->session)
                w->guest.on_drain = on_guest_drain; /* file writes wait for room in the channel */

        w->console_fd = TAKE_FD(a->console_fd);
        w->qemu_stderr_fd = TAKE_FD(a->stderr_fd);
        if (fd_set_nonblock(w->console_fd, 1) < 0 || fd_set_nonblock(w->qemu_stderr_fd, 1) < 0 ||
            sd_event_add_io(w->event, &w->console_io, w->console_fd, EPOLLIN, on_console_io, w) < 0 ||
            sd_event_add_io(w->event, &w->qemu_stderr_io, w->qemu_stderr_fd, EPOLLIN, on_console_io, w) < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to watch the QEMU console.");
                return;
        }

        w->timer = sd_event_source_disable_unref(w->timer);
        r = sd_event_add_time_relative(w->event, &w->timer, CLOCK_MONOTONIC,
                                       (uint64_t) w->config->boot_timeout_ms * 1000u, WORKER_TIMER_ACCURACY_USEC,
                                       on_boot_deadline, w);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the boot deadline: %s", strerror(-r));
                return;
        }
        (void) sd_event_source_set_description(w->timer, "boot-deadline");

        w->state = WORKER_BOOTING;
        (void) broker_send_status(&w->broker, SBX_PHASE_BOOTING, w->qemu_pid, 0, NULL, 0);
        if (w->snap)
                snapshot_on_released(w->snap);
}

/* Forks the QEMU of every boot attempt, each waiting for worker_boot() (see qemu_prepare()). QEMU
 * gets the images as open fds, so it needs no access to their paths. Returns a message on failure. */
static const char *worker_prepare_attempts(Worker *w) {
        static char buf[512];
        QemuImages images = QEMU_IMAGES_NULL;
        const char *failed = NULL;
        int r;

        r = qemu_images_open(w->config->kernel, w->config->initrd, w->config->rootfs, &images, &failed);
        if (r < 0) {
                snprintf(buf, sizeof buf, "The guest image %s is not readable: %s", failed ?: "?", strerror(-r));
                return buf;
        }
        for (size_t i = 0; i < w->n_attempts; i++) {
                _cleanup_close_pair_ int agent[2] = { -EBADF, -EBADF }, console[2] = { -EBADF, -EBADF },
                                         err[2] = { -EBADF, -EBADF };

                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agent) < 0 ||
                    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                        snprintf(buf, sizeof buf, "Failed to create the VM's channels: %s", strerror(errno));
                        qemu_images_close(&images);
                        return buf;
                }
                char **argv = w->snap ? snapshot_attempt_argv(w->snap, (unsigned) i) : NULL;
                QemuExtraFds extra;
                bool have_extra = w->snap && snapshot_attempt_fds(w->snap, (unsigned) i, &extra);
                r = qemu_prepare(argv ?: w->qemu_argv, agent[1], console[1], err[1], &images,
                                 have_extra ? &extra : NULL, &w->qemu_creds, &w->attempts[i].child);
                if (r < 0) {
                        snprintf(buf, sizeof buf, "Failed to start QEMU: %s", strerror(-r));
                        qemu_images_close(&images);
                        return buf;
                }
                w->attempts[i].agent_fd = TAKE_FD(agent[0]);
                w->attempts[i].console_fd = TAKE_FD(console[0]);
                w->attempts[i].stderr_fd = TAKE_FD(err[0]);
        }
        /* The children hold them now. */
        qemu_images_close(&images);
        if (w->snap)
                snapshot_after_prepare(w->snap);
        return NULL;
}

/* B_RUN arrived and was valid: set up and boot. */
static void worker_start(Worker *w) {
        const char *problem;
        uint32_t tsc_khz = 0;
        int r;

        w->t_request = now_usec(CLOCK_MONOTONIC);
        if (w->session)
                log_info("Session %" PRIu64 ": %s, %zu environment variable(s), %" PRIu32 " MiB, %" PRIu32
                         " vCPU(s).",
                         w->req.run_id, sbx_language_to_string(w->req.language), w->req.n_env, w->req.memory_mb,
                         w->req.vcpus);
        else
                log_info("Run %" PRIu64 ": %s, %zu bytes of code, timeout %" PRIu32 " ms, %" PRIu32 " MiB, %" PRIu32
                         " vCPU(s).",
                         w->req.run_id, sbx_language_to_string(w->req.language), w->req.code_len, w->req.timeout_ms,
                         w->req.memory_mb, w->req.vcpus);

        w->accel = accel_resolve(w->req.accel, w->config);
        if (w->accel == SBX_ACCEL_TCG) {
                r = w->snap ? snapshot_host_tsc_khz(w->snap, &tsc_khz) : host_tsc_khz(&tsc_khz);
                if (r < 0)
                        log_debug_errno(r, "Cannot tell the host's TSC frequency, the guest calibrates it: %m");
                else
                        log_debug("Host TSC: %" PRIu32 " kHz.", tsc_khz);
        }

        char net_error[512];
        r = vm_network_pick_ports(&w->net, &w->req, net_error, sizeof net_error);
        if (r < 0) {
                worker_fail(w, SBX_ERR_NETWORK, "%s", net_error);
                return;
        }

        QemuOptions o = {
                .binary = w->config->qemu,
                .kernel = w->config->kernel,
                .initrd = w->config->initrd,
                .rootfs = w->config->rootfs,
                .accel = w->accel,
                .memory_mb = w->req.memory_mb,
                .vcpus = w->req.vcpus,
                .tsc_khz = tsc_khz,
                .cmdline_extra = log_get_max_level() >= LOG_DEBUG ? "sbx.debug=1" : NULL,
                .sandbox = true,
                .image_fds = true,
        };
        vm_network_qemu_options(&w->net, &o);
        r = qemu_build_argv(&o, &w->qemu_argv);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to build the QEMU command line: %s", strerror(-r));
                return;
        }
        if (log_get_max_level() >= LOG_DEBUG) {
                _cleanup_free_ char *line = NULL;
                size_t len = 0;
                FILE *f = open_memstream(&line, &len);
                if (f) {
                        for (char **a = w->qemu_argv; *a; a++)
                                fprintf(f, "%s%s", a == w->qemu_argv ? "" : " ", *a);
                        if (fclose(f) == 0)
                                log_debug("QEMU command line: %s", line);
                }
        }

        vm_cgroup_remove_stale(w->config->cgroup_parent);
        vm_cgroup_create(&w->cgroup, w->config->cgroup_parent, w->req.run_id, w->req.memory_mb, w->req.vcpus);

        vm_cgroup_open_procs(&w->cgroup);

        /* Before the seccomp filter (no connect() after it) and before QEMU exists. */
        r = vm_network_register(&w->net, &w->req, vm_cgroup_bpf_dir(&w->cgroup), w->config->netd_socket, net_error,
                                sizeof net_error);
        if (r >= 0)
                r = vm_network_watch(&w->net, w->event, on_netd_lost, w);
        if (r < 0) {
                worker_fail(w, SBX_ERR_NETWORK, "%s", net_error);
                return;
        }

        (void) qemu_resolve_creds(&w->qemu_creds);
        if (w->qemu_creds.drop && w->config->qemu_uid_count > 0) {
                _cleanup_free_ char *dir = NULL;
                /* Lock files, not runtime state: they stay (empty) for the next VMs. */
                if (asprintf(&dir, "%s/qemu-uids", w->config->state_dir) < 0)
                        dir = NULL;
                (void) mkdir(w->config->state_dir, 0755);
                r = dir ? qemu_creds_take_vm_uid(&w->qemu_creds, dir, w->config->qemu_uid_first,
                                                 w->config->qemu_uid_count, &w->qemu_uid_lock_fd)
                        : -ENOMEM;
                if (r < 0) {
                        worker_fail(w, SBX_ERR_INTERNAL, "Failed to take a uid of its own for QEMU: %s", strerror(-r));
                        return;
                }
        }
        w->n_attempts = WORKER_BOOT_ATTEMPTS;
        if (w->snap)
                snapshot_plan(w->snap, &o);
        problem = worker_prepare_attempts(w);
        if (problem) {
                worker_fail(w, SBX_ERR_INTERNAL, "%s", problem);
                return;
        }
        /* From here on the worker forks and execs nothing, and the guest's bytes are next. */
        r = worker_seccomp_apply();
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to apply the worker's seccomp filter: %s", strerror(-r));
                return;
        }

        worker_boot(w);
}

/* ---- the broker ---- */

static int on_broker_frame(FramedConn *c, uint8_t type, const uint8_t *p, size_t n, void *userdata) {
        Worker *w = userdata;
        const char *reason;
        int r;
        (void) c;

        if (w->state == WORKER_DONE)
                return 1;

        if (w->session) {
                r = session_on_broker_frame(w->session, type, p, n);
                return w->state == WORKER_DONE ? 1 : r;
        }
        if (!w->have_request && type == SBX_B_SESSION_OPEN) {
                r = run_request_parse_kind(RUN_REQUEST_SESSION_OPEN, p, n, w->config, &w->req, &reason);
                if (r == -ENOMEM) {
                        worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                        return 1;
                }
                if (r < 0) {
                        worker_fail(w, SBX_ERR_INVALID, "Invalid session request: %s.", reason);
                        return 1;
                }
                w->have_request = true;
                bool snap = false, warm = false;
                if (snapshot_request_parse(p, n, &snap, &warm) < 0) {
                        worker_fail(w, SBX_ERR_INVALID, "Invalid session request: malformed SNAPSHOT or WARM.");
                        return 1;
                }
                if (snap && run_request_wants_nic(&w->req)) {
                        worker_fail(w, SBX_ERR_INVALID,
                                    "Invalid session request: a VM with a network or exposed ports is never restored "
                                    "from or saved to an L1 snapshot.");
                        return 1;
                }
                if ((snap || warm) && snapshot_new(w, snap, warm, &w->snap) < 0) {
                        worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                        return 1;
                }
                r = session_new(w, &w->session);
                if (r < 0) {
                        worker_fail(w, SBX_ERR_INTERNAL, "Failed to set up the session: %s", strerror(-r));
                        return 1;
                }
                w->broker.on_drain = on_broker_drain;
                worker_start(w);
                return w->state == WORKER_DONE;
        }

        if (type == SBX_B_CANCEL) {
                log_info("The broker cancelled the run.");
                worker_fail(w, SBX_ERR_TRANSIENT, "The run was cancelled.");
                return 1;
        }
        if (type != SBX_B_RUN) {
                worker_fail(w, SBX_ERR_INVALID, "Unexpected message type %u from the broker.", type);
                return 1;
        }
        if (w->have_request) {
                worker_fail(w, SBX_ERR_INVALID, "A worker runs exactly one SBX_B_RUN; got a second one.");
                return 1;
        }

        r = run_request_parse(p, n, w->config, &w->req, &reason);
        if (r == -ENOMEM) {
                worker_fail(w, SBX_ERR_INTERNAL, "Out of memory.");
                return 1;
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_INVALID, "Invalid run request: %s.", reason);
                return 1;
        }
        w->have_request = true;
        worker_start(w);
        return w->state == WORKER_DONE;
}

static void on_broker_drain(FramedConn *c, void *userdata) {
        Worker *w = userdata;
        (void) c;

        if (w->session && w->state == WORKER_SESSION)
                session_on_broker_drain(w->session);
}

static void on_guest_drain(FramedConn *c, void *userdata) {
        Worker *w = userdata;
        (void) c;

        if (w->session && w->state == WORKER_SESSION)
                session_on_guest_drain(w->session);
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
        worker_abort(w, "The broker closed the connection");
}

static int on_run_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        (void) s;
        (void) usec;

        worker_fail(w, SBX_ERR_INVALID, "No SBX_B_RUN or SBX_B_SESSION_OPEN within %u s of connecting.",
                    WORKER_RUN_WAIT_USEC / 1000000u);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Worker *w = userdata;
        (void) s;

        if (w->state == WORKER_DONE)
                return 0;
        log_info("Got SIG%s: stopping.", sigabbrev_np((int) si->ssi_signo) ?: "?");
        /* Tell the broker if it is still listening; it may well be the one that sent the signal. */
        worker_stop_qemu(w, 0, NULL);
        vm_network_release(&w->net);
        vm_cgroup_destroy(&w->cgroup);
        if (broker_send_error(&w->broker, SBX_ERR_TRANSIENT, "The VM worker was stopped by a signal.") >= 0)
                (void) framed_conn_flush(&w->broker, 1000000u);
        worker_exit_loop(w);
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
        w->console_fd = w->qemu_stderr_fd = w->qemu_uid_lock_fd = -EBADF;
        w->guest.fd = -EBADF;
        w->net = (VmNetwork) VM_NETWORK_NULL;
        for (size_t i = 0; i < ELEMENTSOF(w->attempts); i++) {
                w->attempts[i].child = QEMU_CHILD_NULL;
                w->attempts[i].agent_fd = w->attempts[i].console_fd = w->attempts[i].stderr_fd = -EBADF;
        }

        r = framed_conn_open(&w->broker, event, "broker connection", broker_fd, SBX_HOST_FRAME_MAX, BROKER_OUT_MAX,
                             on_broker_frame, on_broker_close, w);
        if (r < 0)
                return r;
        /* Session file requests bring an fd along (SCM_RIGHTS); a run never does. */
        w->broker.recv_fds = true;
        r = sd_event_add_signal(event, &w->sigterm, SIGTERM, on_signal, w);
        if (r >= 0)
                r = sd_event_add_signal(event, &w->sigint, SIGINT, on_signal, w);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(event, &w->timer, CLOCK_MONOTONIC, WORKER_RUN_WAIT_USEC, 0,
                                       on_run_wait_timeout, w);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(w);
        return 0;
}

Worker *worker_free(Worker *w) {
        if (!w)
                return NULL;
        /* Every exit path ends here: nothing of the VM may outlive the worker. */
        worker_stop_qemu(w, 0, NULL);
        worker_discard_attempts(w);
        vm_network_release(&w->net);
        vm_cgroup_destroy(&w->cgroup);
        /* QEMU is gone: its uid is free for the next VM. */
        w->qemu_uid_lock_fd = safe_close(w->qemu_uid_lock_fd);
        w->session = session_free(w->session);
        w->snap = snapshot_free(w->snap);
        if (w->guest.fd >= 0 || w->guest.out)
                framed_conn_close(&w->guest);
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
