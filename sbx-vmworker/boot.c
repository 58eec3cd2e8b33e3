/* SPDX-License-Identifier: Apache-2.0 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "boot.h"
#include "broker-channel.h"
#include "fdio.h"
#include "guest-channel.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "validate.h"
#include "worker.h"

/* Console lines quoted in boot failure messages. */
#define BOOT_CONSOLE_TAIL_MAX 1024u
/* After the guest channel closes, how long QEMU gets to exit by itself before we kill it. */
#define BOOT_QEMU_EXIT_WAIT_USEC (300u * 1000u)

static void boot_attempt(Worker *w, unsigned index);

static BootKind current_kind(const Worker *w) {
        return boot_plan_kind(&w->plan, w->boot.attempt - 1);
}

static void set_note(Boot *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_note(Boot *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->note, sizeof b->note, fmt, ap);
        va_end(ap);
        log_info("L1 snapshot: %s", b->note);
}

static int on_boot_deadline(sd_event_source *s, uint64_t usec, void *userdata);

static int arm_boot_deadline(Worker *w, uint64_t usec) {
        return worker_arm_timer(w, usec, on_boot_deadline, "boot-deadline");
}

/* ---- W_SESSION_READY ---- */

static void boot_ready(Worker *w) {
        Boot *b = &w->boot;

        /* Up: the spare QEMUs are not needed. */
        vm_discard_attempts(&w->vm);
        worker_set_state(w, WORKER_IDLE);
        b->boot_ms = ms_since(w->vm.t_spawn);
        log_info("The %s VM is ready after %" PRIu64 " ms (attempt %u%s%s%s%s).",
                 sbx_language_to_string(w->req.language), b->boot_ms, b->attempt,
                 boot_plan_snapshot(&w->plan) ? (b->l1 && !b->saved ? ", tier l1" : ", tier cold") : "",
                 b->warm ? ", interpreter warm" : "", b->saved ? ", snapshot saved" : "",
                 w->net.n_hostfwd > 0 ? ", ports exposed" : "");

        ReadyInfo info = {
                .boot_ms = b->boot_ms,
                .setup_ms = w->setup_ms,
                .accel = sbx_accel_to_string(w->accel),
                .qemu_pid = w->vm.pid,
                .warm = b->warm,
                .snapshot = boot_plan_snapshot(&w->plan),
                .l1 = b->l1,
                .saved = b->saved,
                .restore_ms = b->restore_ms,
                .note = b->note,
                .mappings = w->net.mappings,
                .n_mappings = w->net.n_hostfwd,
        };
        int r = broker_send_ready(&w->broker, &info);
        if (r < 0)
                log_debug_errno(r, "Failed to send SESSION_READY: %m");
}

/* ---- the next attempt ---- */

static int on_deferred_boot(sd_event_source *src, void *userdata) {
        Worker *w = userdata;
        (void) src;

        w->boot.defer = sd_event_source_disable_unref(w->boot.defer);
        if (w->state != WORKER_DONE)
                boot_attempt(w, w->boot.next);
        return 0;
}

/* Starts attempt index from the event loop: the callers are inside the guest channel's callbacks,
 * and an attempt replaces that channel. */
static void boot_soon(Worker *w, unsigned index) {
        Boot *b = &w->boot;

        vm_stop(&w->vm, 0, NULL);
        worker_set_state(w, WORKER_BOOTING);
        b->next = index;
        b->defer = sd_event_source_disable_unref(b->defer);
        if (sd_event_add_defer(w->event, &b->defer, on_deferred_boot, w) < 0)
                boot_attempt(w, index);
}

/* The current attempt (a build or a restore) failed: starts the plan's cold fallback and returns
 * true, or returns false when there is none (the caller fails as usual). */
static bool boot_fallback(Worker *w, const char *why) {
        Boot *b = &w->boot;
        BootKind k = current_kind(w);
        unsigned f = boot_plan_fallback(&w->plan);

        if (k == BOOT_COLD || (w->state != WORKER_BOOTING && w->state != WORKER_WARMING))
                return false;
        if (b->fell_back || f == 0 || f >= boot_plan_n_attempts(&w->plan))
                return false;
        /* sbx-cache's entry (attempt 1 of a hit), not the files a build just made. */
        if (k == BOOT_RESTORE && b->attempt == 1)
                snapshot_report_bad(boot_plan_files(&w->plan), why);
        set_note(b, "the %s failed (%s); booted cold", k == BOOT_RESTORE ? "restore" : "snapshot build", why);
        b->resuming = b->l1 = b->saved = false;
        b->fell_back = true;
        boot_soon(w, f);
        return true;
}

/* ---- the warm-up, and a build's save ---- */

static void boot_warm(Worker *w) {
        const char *code = snapshot_warm_code(w->req.language);
        RunRequest session = { .language = w->req.language };
        RunRequest exec = { .code = (char *) code, .code_len = strlen(code), .timeout_ms = 60000 };
        SbxMsg m;
        int r;

        /* The session's environment is not part of the snapshot: the warm-up runs without it. */
        r = guest_build_exec(&session, &exec, &m);
        if (r >= 0) {
                r = framed_conn_send(&w->vm.guest, &m);
                sbx_msg_done(&m);
        }
        if (r < 0) {
                worker_fail(w, SBX_ERR_TRANSIENT, "Failed to start the interpreter: %s", strerror(-r));
                return;
        }
        worker_set_state(w, WORKER_WARMING);
        w->boot.t_warm = now_usec(CLOCK_MONOTONIC);
        /* The boot deadline goes on, renewed for the warm-up (and a save). */
        r = arm_boot_deadline(w, SNAPSHOT_WARM_TIMEOUT_USEC);
        if (r < 0)
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the boot deadline: %s", strerror(-r));
}

static void boot_on_warm_exit(Worker *w, const GuestExit *e) {
        Boot *b = &w->boot;
        char version[32];
        uint64_t save_ms = 0;
        int r;

        log_info("Interpreter started in %" PRIu64 " ms (exit %" PRIi32 ").", ms_since(b->t_warm), e->exit_code);
        b->warm = e->exit_code == 0;
        if (current_kind(w) != BOOT_BUILD) {
                boot_ready(w);
                return;
        }

        r = snapshot_save(&b->qmp, boot_plan_qmp_fd(&w->plan, b->attempt - 1), version, &save_ms);
        if (r >= 0) {
                vm_stop(&w->vm, 0, NULL); /* the VM on the shared file must not run on */
                r = snapshot_commit(boot_plan_files(&w->plan), w->req.language, version, save_ms);
                if (r < 0)
                        set_note(b, "the snapshot could not be handed to sbx-cache (%s)", strerror(-r));
                b->saved = r >= 0;
                /* Attempt 2 restores what we just saved, from our own files (a failure boots cold). */
                boot_soon(w, 1);
                return;
        }
        /* Nothing committed: the VM goes on as it is (its RAM file is a temporary one). */
        set_note(b, "saving the snapshot failed (%s); the session runs on the cold VM", strerror(-r));
        boot_ready(w);
}

/* ---- guest frames ---- */

static void boot_on_hello(Worker *w, const uint8_t *p, size_t n) {
        GuestHello hello;
        const char *reason;

        if (guest_parse_hello(p, n, &hello, &reason) < 0) {
                worker_guest_violation(w, reason);
                return;
        }
        log_debug("The guest said HELLO after %" PRIu64 " ms (attempt %u).", ms_since(w->vm.t_spawn),
                  w->boot.attempt);
        if (boot_plan_warm(&w->plan))
                boot_warm(w);
        else
                boot_ready(w);
}

static int boot_on_resume_frame(Worker *w, uint8_t type) {
        Boot *b = &w->boot;
        char buf[64];

        if (type == SBX_G_RESUMED) {
                b->resuming = false;
                b->l1 = b->warm = true;
                b->restore_ms = ms_since(w->vm.t_spawn);
                if (boot_plan_rewarm(&w->plan))
                        boot_warm(w); /* TCG translated nothing yet: the first exec would pay for it */
                else
                        boot_ready(w);
                return 0;
        }
        snprintf(buf, sizeof buf, "the restored guest sent %s", guest_msg_type_to_string(type));
        if (!boot_fallback(w, buf))
                worker_guest_violation(w, buf);
        return 1;
}

static int boot_on_warm_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n) {
        const char *reason = "unexpected message";
        GuestOutput out;
        GuestExit e;
        char buf[64];

        switch (type) {
        case SBX_G_OUTPUT:
                if (guest_parse_output(p, n, &out, &reason) >= 0) {
                        log_debug("Warm-up output: %.*s", (int) MIN(out.len, (size_t) 200), (const char *) out.data);
                        return 0;
                }
                break;
        case SBX_G_EXIT:
                if (guest_parse_exit(p, n, &e, &reason) >= 0) {
                        boot_on_warm_exit(w, &e);
                        return 0;
                }
                break;
        case SBX_G_PONG:
                return 0;
        default:
                snprintf(buf, sizeof buf, "%s while the interpreter started", guest_msg_type_to_string(type));
                reason = buf;
        }
        if (!boot_fallback(w, reason))
                worker_guest_violation(w, reason);
        return 1;
}

int boot_on_guest_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n) {
        if (w->state == WORKER_WARMING)
                return boot_on_warm_frame(w, type, p, n);
        if (w->boot.resuming)
                return boot_on_resume_frame(w, type);
        if (type != SBX_G_HELLO) {
                worker_guest_violation(w, "a message before HELLO");
                return 1;
        }
        boot_on_hello(w, p, n);
        return 0;
}

/* ---- diagnosis: QEMU exited, the guest channel closed, the deadline passed ---- */

static int on_qemu_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Worker *w = userdata;
        _cleanup_free_ char *how = NULL;
        int status;

        if (w->state == WORKER_DONE)
                return 0;
        /* The guest may have sent EXIT and powered off: everything it sent is still in the socket. */
        framed_conn_drain(&w->vm.guest);
        if (w->state == WORKER_DONE)
                return 0;
        /* Draining may have ended this attempt already (a failed snapshot restore whose closed channel
         * started the cold fallback, which stopped and reaped this QEMU): its exit is no news then. */
        if (w->vm.exit_source != s)
                return 0;

        status = si->si_code == CLD_EXITED ? W_EXITCODE(si->si_status, 0) : si->si_status;
        how = qemu_describe_status(status);
        if (current_kind(w) != BOOT_COLD) {
                _cleanup_free_ char *why = NULL;
                vm_drain_diagnostics(&w->vm);
                _cleanup_free_ char *said = console_tail(&w->vm.stderr_log, 300);
                if (asprintf(&why, "QEMU %s%s%s", how ?: "exited", said && *said ? ": " : "",
                             said && *said ? said : "") < 0)
                        why = NULL;
                if (boot_fallback(w, why ?: "QEMU exited"))
                        return 0;
        }
        vm_stop(&w->vm, 0, NULL);
        _cleanup_free_ char *tail = console_tail(&w->vm.stderr_log, 512);
        _cleanup_free_ char *console = w->state == WORKER_BOOTING ? console_tail(&w->vm.console, 512) : NULL;
        worker_fail(w, SBX_ERR_TRANSIENT, "QEMU %s unexpectedly %s.%s%s%s%s Safe to retry.", how ?: "exited",
                    worker_phase_phrase(w), tail && *tail ? " QEMU said: " : "", tail && *tail ? tail : "",
                    console && *console ? " Console: " : "", console && *console ? console : "");
        return 0;
}

static void on_guest_close(FramedConn *c, int error, void *userdata) {
        Worker *w = userdata;
        _cleanup_free_ char *how = NULL;
        int status;
        (void) c;

        if (w->state == WORKER_DONE)
                return;
        if (error == -EBADMSG) {
                worker_guest_violation(w, "a malformed frame");
                return;
        }

        /* EOF: QEMU closed the socket, which it only does when it exits. */
        if (boot_fallback(w, "the guest channel closed"))
                return;
        vm_stop(&w->vm, BOOT_QEMU_EXIT_WAIT_USEC, &status);
        _cleanup_free_ char *tail = console_tail(&w->vm.stderr_log, 512);
        if (status >= 0)
                how = qemu_describe_status(status);
        worker_fail(w, SBX_ERR_TRANSIENT, "The guest channel closed %s (QEMU %s).%s%s Safe to retry.",
                    worker_phase_phrase(w), status < 0 ? "was still running" : how ?: "exited",
                    tail && *tail ? " QEMU said: " : "", tail && *tail ? tail : "");
}

static int on_boot_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Worker *w = userdata;
        Boot *b = &w->boot;
        (void) s;
        (void) usec;

        _cleanup_free_ char *tail = console_tail(&w->vm.console, BOOT_CONSOLE_TAIL_MAX);
        log_warning("The guest did not say HELLO within %" PRIu32 " ms (attempt %u of %u). Console: %s",
                    w->config->boot_timeout_ms, b->attempt, boot_plan_n_attempts(&w->plan),
                    tail && *tail ? tail : "(empty)");
        if (boot_fallback(w, "it did not come up in time"))
                return 0;
        vm_stop(&w->vm, 0, NULL);
        if (b->attempt < boot_plan_n_attempts(&w->plan))
                boot_attempt(w, b->attempt);
        else
                worker_fail(w, SBX_ERR_BOOT_TIMEOUT,
                            "The VM did not boot within %" PRIu32 " ms, %u times in a row. Last console output: %s",
                            w->config->boot_timeout_ms, BOOT_COLD_ATTEMPTS, tail && *tail ? tail : "(none)");
        return 0;
}

/* ---- attempts ---- */

static int on_qemu_spawned(pid_t pid, void *userdata) {
        Worker *w = userdata;
        int r = vm_cgroup_attach(&w->cgroup, pid);
        /* A networked QEMU outside its cgroup2 directory would escape sbx-netd's programs: fail closed. */
        return w->net.enabled ? r : 0;
}

/* A restore's QEMU runs: load the state, then wait for G_RESUMED. */
static void boot_restore(Worker *w) {
        Boot *b = &w->boot;
        char why[96];

        int r = snapshot_restore_start(&b->qmp, boot_plan_qmp_fd(&w->plan, b->attempt - 1), &w->vm.guest);
        if (r < 0) {
                snprintf(why, sizeof why, "QMP: %s", strerror(-r));
                if (!boot_fallback(w, why))
                        worker_fail(w, SBX_ERR_TRANSIENT, "Restoring the snapshot failed: %s", why);
                return;
        }
        b->resuming = true;
        /* A restore gets its own, shorter deadline. */
        r = arm_boot_deadline(w, SNAPSHOT_RESTORE_TIMEOUT_USEC);
        if (r < 0)
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the boot deadline: %s", strerror(-r));
}

/* Starts attempt index (0-based): releases its prepared QEMU, arms the deadline. */
static void boot_attempt(Worker *w, unsigned index) {
        const VmCallbacks cb = {
                .on_guest_frame = worker_on_guest_frame,
                .on_guest_close = on_guest_close,
                .on_guest_drain = worker_on_guest_drain,
                .on_exit = on_qemu_exit,
                .attach = on_qemu_spawned,
                .userdata = w,
        };
        _cleanup_(sbx_error_done) SbxError error = {};
        int r;

        assert(index < boot_plan_n_attempts(&w->plan));
        w->boot.attempt = index + 1;
        w->boot.resuming = false;
        worker_set_state(w, WORKER_BOOTING);
        r = vm_release(&w->vm, w->event, index, &cb, &error);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "%s", sbx_error_message(&error));
                return;
        }
        if (index == 0)
                w->setup_ms = (w->vm.t_spawn - w->t_request) / 1000u;
        r = arm_boot_deadline(w, (uint64_t) w->config->boot_timeout_ms * 1000u);
        if (r < 0) {
                worker_fail(w, SBX_ERR_INTERNAL, "Failed to arm the boot deadline: %s", strerror(-r));
                return;
        }
        if (current_kind(w) == BOOT_RESTORE)
                boot_restore(w);
}

void boot_start(Worker *w) {
        snprintf(w->boot.note, sizeof w->boot.note, "%s", boot_plan_note(&w->plan));
        boot_attempt(w, 0);
}

void boot_done(Boot *b) {
        b->defer = sd_event_source_disable_unref(b->defer);
}
