/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "exec.h"
#include "files.h"
#include "fdio.h"
#include "frame.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "init.h"
#include "sbx-error.h"
#include "session.h"

/* How long output may keep trickling in after the code exited and every
 * user process was killed. Only a process stuck in the kernel gets near it. */
#define DRAIN_TIMEOUT_USEC (2 * 1000000u)
/* What a session exec's end may still find in each pipe: the pipe buffer
 * (the driver flushed before reporting), plus a margin. Bounds the drain
 * when a background process keeps writing. */
#define SESSION_DRAIN_MAX (2u * 1024u * 1024u)

typedef struct Exec {
        ExecChild child;
        bool exited; /* the main child was reaped */
        int status;
        bool timed_out;
        bool interrupted; /* H_INTERRUPT: SIGINT sent; the timer now means SIGKILL */
        uint64_t start_usec;
        uint64_t exec_ms;
        uint64_t drain_deadline;
        Session *session;      /* a session exec: the interpreter it runs in */
        bool have_done_status; /* the driver reported the status */
        int done_status;
        bool state_reset;
} Exec;

typedef struct Agent {
        int port_fd;
        int signal_fd;
        int timer_fd;
        SbxFrameReader reader;
        bool running;
        Exec exec;
        unsigned n_execs;
        uint64_t last_memory_check;
        Session sessions[_SBX_LANG_MAX];
        FileWrite file_write;
        uint8_t buf[SBX_OUTPUT_CHUNK_MAX];
} Agent;

static int send_simple(int port_fd, SbxMsg *m) {
        int r = sbx_msg_send(m, port_fd);

        sbx_msg_done(m);
        if (r < 0)
                return log_error_errno(r, "Failed to write to the host: %m");
        return 0;
}

int agent_send_hello(int port_fd) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_HELLO);
        sbx_msg_put_u32(&m, SBX_T_VERSION, SBX_PROTO_VERSION);
        sbx_msg_put_u64(&m, SBX_T_UPTIME_MS, now_usec(CLOCK_BOOTTIME) / 1000u);
        return send_simple(port_fd, &m);
}

static int send_error(Agent *a, const char *message) {
        SbxMsg m;

        log_warning("Refusing exec: %s", message);
        sbx_msg_begin(&m, SBX_G_ERROR);
        sbx_msg_put(&m, SBX_T_MESSAGE, message, strnlen(message, SBX_MESSAGE_MAX));
        return send_simple(a->port_fd, &m);
}

static int send_output(Agent *a, SbxStream stream, const void *data, size_t n) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, (uint8_t) stream);
        sbx_msg_put(&m, SBX_T_DATA, data, n);
        return send_simple(a->port_fd, &m);
}

static int handle_ping(Agent *a, const uint8_t *payload, size_t len) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v, *data = NULL;
        uint32_t n, data_len = 0;
        SbxMsg m;

        sbx_tlv_iter_init(&it, payload, len);
        while (sbx_tlv_next(&it, &tag, &v, &n) > 0)
                if (tag == SBX_T_DATA) {
                        data = v;
                        /* The host reads frames of at most SBX_GUEST_FRAME_MAX. */
                        data_len = MIN(n, SBX_OUTPUT_CHUNK_MAX);
                }

        sbx_msg_begin(&m, SBX_G_PONG);
        if (data)
                sbx_msg_put(&m, SBX_T_DATA, data, data_len);
        return send_simple(a->port_fd, &m);
}

/* SBX_H_RESUME: this VM was just restored from a memory snapshot (docs/snapshots.md), so its clock
 * is the snapshot's and its RNG state is shared with every other VM restored from it. Set the clock
 * from the host and mix the host's seed into the kernel RNG with a forced reseed (RNDADDENTROPY +
 * RNDRESEEDCRNG, exec_apply_host_state()), then answer RESUMED. The host sends no code before the
 * answer, so no user code runs on the old state. */
static int handle_resume(Agent *a, const uint8_t *payload, size_t len) {
        ExecRequest req = { .language = SBX_LANG_INVALID };
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        SbxMsg m;
        int r;

        sbx_tlv_iter_init(&it, payload, len);
        while ((r = sbx_tlv_next(&it, &tag, &v, &n)) > 0) {
                if (tag == SBX_T_CLOCK_NS && sbx_tlv_u64(v, n, &req.clock_ns) >= 0)
                        req.have_clock = true;
                else if (tag == SBX_T_SEED) {
                        req.seed = v;
                        req.seed_len = MIN((size_t) n, (size_t) 512u);
                }
        }
        if (r < 0 || !req.have_clock || req.seed_len < 16) {
                log_warning("Malformed RESUME from the host.");
                sbx_msg_begin(&m, SBX_G_ERROR);
                sbx_msg_put_str(&m, SBX_T_MESSAGE, "malformed RESUME (needs CLOCK_NS and a SEED of 16+ bytes)");
                return send_simple(a->port_fd, &m);
        }
        exec_apply_host_state(&req);
        log_debug("resumed: clock set, RNG reseeded with %zu host bytes", req.seed_len);

        sbx_msg_begin(&m, SBX_G_RESUMED);
        sbx_msg_put_u64(&m, SBX_T_UPTIME_MS, now_usec(CLOCK_BOOTTIME) / 1000u);
        return send_simple(a->port_fd, &m);
}

/* Hands the code to the language's persistent interpreter, starting it if needed. */
static int start_session(Agent *a, const ExecRequest *req, SbxError *error) {
        Exec *e = &a->exec;
        Session *s = &a->sessions[req->language];
        bool fresh;
        int r;

        e->child = (ExecChild) { .stdout_fd = -EBADF, .stderr_fd = -EBADF };
        r = exec_write_code(req, ++a->n_execs, e->child.path, sizeof e->child.path, error);
        if (r < 0)
                return r;
        r = session_submit(s, req, e->child.path, &fresh, error);
        if (r < 0) {
                (void) unlink(e->child.path);
                return r;
        }
        e->session = s;
        e->child.pid = s->pid;
        /* The previous interpreter died between execs: this one starts afresh. */
        e->state_reset = s->lost;
        s->lost = false;
        return 0;
}

static int start_exec(Agent *a, const uint8_t *payload, size_t len) {
        _cleanup_(sbx_error_done) SbxError error = {};
        ExecRequest req;
        const char *reason;
        int r;

        if (a->running)
                return send_error(a, "an exec is already running");

        r = exec_request_parse(payload, len, &req, &reason);
        if (r < 0)
                return send_error(a, reason);
        if (a->file_write.active) {
                exec_request_done(&req);
                return send_error(a, "a file write is in progress");
        }

        exec_apply_host_state(&req);

        a->exec = (Exec) {};
        if (req.session)
                r = start_session(a, &req, &error);
        else
                r = exec_spawn(&req, ++a->n_execs, &a->exec.child, &error);
        if (r < 0) {
                exec_request_done(&req);
                return send_error(a, sbx_error_message(&error));
        }
        a->exec.start_usec = now_usec(CLOCK_MONOTONIC);
        a->running = true;

        struct itimerspec its = {
                .it_value.tv_sec = req.timeout_ms / 1000u,
                .it_value.tv_nsec = (long) (req.timeout_ms % 1000u) * 1000000L,
        };
        log_debug("exec %u: pid %d, timeout %u ms", a->n_execs, (int) a->exec.child.pid, req.timeout_ms);
        exec_request_done(&req);
        if (timerfd_settime(a->timer_fd, 0, &its, NULL) < 0) {
                /* Without a timeout the code could run forever: better not at all. */
                log_error_errno(errno, "Failed to arm the timeout: %m");
                (void) kill(-a->exec.child.pid, SIGKILL);
                a->exec.timed_out = true;
        }
        return 0;
}

static void disarm_timer(Agent *a) {
        struct itimerspec its = {};
        (void) timerfd_settime(a->timer_fd, 0, &its, NULL);
}

static void kill_exec(Agent *a) {
        if (a->running && !a->exec.exited)
                (void) kill(-a->exec.child.pid, SIGKILL);
}

/* Ctrl-C: SIGINT to the code's process group, as a terminal would. An interpreter that survives it
 * (Python raises KeyboardInterrupt in the code) keeps the session's state; code that ignores it is
 * killed INTERRUPT_GRACE_USEC later. */
#define INTERRUPT_GRACE_USEC (2u * 1000000u)
static void interrupt_exec(Agent *a) {
        struct itimerspec its = {}, left = {};

        if (!a->running || a->exec.exited || a->exec.interrupted)
                return;
        a->exec.interrupted = true;
        (void) kill(-a->exec.child.pid, SIGINT);
        /* The exec's timer now ends the grace, unless the timeout comes first. */
        its.it_value.tv_sec = INTERRUPT_GRACE_USEC / 1000000u;
        if (timerfd_gettime(a->timer_fd, &left) == 0 &&
            (left.it_value.tv_sec > its.it_value.tv_sec || (left.it_value.tv_sec == 0 && left.it_value.tv_nsec == 0)))
                (void) timerfd_settime(a->timer_fd, 0, &its, NULL);
}

static int handle_frame(Agent *a, uint8_t type, const uint8_t *payload, size_t len) {
        switch (type) {
        case SBX_H_EXEC:
                return start_exec(a, payload, len);
        case SBX_H_PING:
                return handle_ping(a, payload, len);
        case SBX_H_RESUME:
                return handle_resume(a, payload, len);
        case SBX_H_CANCEL:
                log_debug("cancel requested");
                kill_exec(a);
                return 0;
        case SBX_H_INTERRUPT:
                log_debug("interrupt requested");
                interrupt_exec(a);
                return 0;
        case SBX_H_FILE_WRITE:
                return files_write_begin(&a->file_write, a->port_fd, payload, len, a->running);
        case SBX_H_FILE_DATA:
                return files_write_data(&a->file_write, a->port_fd, payload, len);
        case SBX_H_FILE_END:
                return files_write_end(&a->file_write, a->port_fd);
        case SBX_H_FILE_READ:
                return files_read(a->port_fd, payload, len, a->running);
        case SBX_H_LIST:
                return files_list(a->port_fd, payload, len, a->running);
        default:
                log_debug("Ignoring message type %u.", type);
                return 0;
        }
}

static int read_port(Agent *a) {
        uint8_t type;
        const uint8_t *payload;
        size_t len;
        int r;

        r = sbx_frame_reader_fill(&a->reader, a->port_fd);
        if (r == -EAGAIN || r == -EINTR)
                return 0;
        if (r < 0)
                return log_error_errno(r, "Failed to read from the host: %m");
        if (r == 0)
                return log_error_errno(ECONNRESET, "The host closed the channel.");

        while ((r = sbx_frame_reader_next(&a->reader, &type, &payload, &len)) > 0) {
                r = handle_frame(a, type, payload, len);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return log_error_errno(r, "Malformed frame from the host: %m");
        return 0;
}

/* One read per wakeup keeps stdout and stderr interleaved fairly. */
static int forward_output(Agent *a, int *fd, SbxStream stream) {
        ssize_t n = read(*fd, a->buf, sizeof a->buf);

        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                log_warning_errno(errno, "Failed to read the child's output: %m");
                n = 0;
        }
        if (n == 0) {
                *fd = safe_close(*fd);
                return 0;
        }
        return send_output(a, stream, a->buf, (size_t) n);
}

static void on_main_exit(Agent *a, int status) {
        Exec *e = &a->exec;
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        e->exited = true;
        e->status = status;
        e->exec_ms = (now - e->start_usec) / 1000u;
        disarm_timer(a);
        /* Daemons and stray children would keep the pipes open and live on
         * into the next exec. */
        kill_user_processes();
        e->drain_deadline = now_usec(CLOCK_MONOTONIC) + DRAIN_TIMEOUT_USEC;
}

/* The interpreter of the running session exec died (exit, signal, timeout or
 * cancel): its state is gone. What is left in the pipes is drained before
 * EXIT (see finish_session_pipes()). */
static void on_session_died(Agent *a, int status) {
        Exec *e = &a->exec;

        e->exited = true;
        e->status = status;
        e->exec_ms = (now_usec(CLOCK_MONOTONIC) - e->start_usec) / 1000u;
        e->state_reset = true;
        disarm_timer(a);
        /* Its process group goes with it (helpers, background jobs). */
        session_kill(e->session);
        e->session->pid = 0; /* reaped; the pipes are closed after the drain */
}

static void on_session_done(Agent *a, int status) {
        Exec *e = &a->exec;

        e->exited = true;
        e->have_done_status = true;
        e->done_status = status;
        e->exec_ms = (now_usec(CLOCK_MONOTONIC) - e->start_usec) / 1000u;
        disarm_timer(a);
}

static void reap_children(Agent *a) {
        struct signalfd_siginfo si;
        int status;
        pid_t pid;

        while (read(a->signal_fd, &si, sizeof si) > 0)
                ;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                if (a->running && !a->exec.exited && pid == a->exec.child.pid) {
                        if (a->exec.session)
                                on_session_died(a, status);
                        else
                                on_main_exit(a, status);
                        continue;
                }
                for (size_t i = 0; i < ELEMENTSOF(a->sessions); i++) {
                        Session *s = &a->sessions[i];
                        if (s->pid <= 0 || s->pid != pid)
                                continue;
                        /* Died while none of its execs ran (e.g. killed by a
                         * one-shot exec's cleanup): the next exec starts afresh. */
                        log_debug("session %zu: interpreter died while idle", i);
                        session_kill(s);
                        s->lost = true;
                        if (a->running && a->exec.session == s)
                                s->pid = 0; /* its exec already ended; drain before closing */
                        else
                                session_reset(s);
                }
        }
}

/* Memory guard: under TCG a guest out of memory could thrash on its page cache for a minute
 * before the kernel's OOM killer acted (the memory-hog test then hit its timeout). While code runs,
 * when both the memory still available and the zram swap are nearly gone, kill it here, as the OOM
 * killer would (SIGKILL: exit 137). The agent itself lives in the initramfs and is never reclaimed. */
#define MEMORY_CHECK_USEC (250u * 1000u)

static bool memory_exhausted(void) {
        uint64_t total, avail, swap_total = 0, swap_free = 0;
        char buf[4096];

        /* One read of /proc/meminfo every check: it is not free under emulation. */
        if (meminfo_read(buf, sizeof buf) < 0 || meminfo_lookup(buf, "MemTotal", &total) < 0 ||
            meminfo_lookup(buf, "MemAvailable", &avail) < 0)
                return false;
        (void) meminfo_lookup(buf, "SwapTotal", &swap_total);
        (void) meminfo_lookup(buf, "SwapFree", &swap_free);
        return avail * 100 < total * 3 && (swap_total == 0 || swap_free * 100 < swap_total * 5);
}

static void check_memory(Agent *a) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (!a->running || a->exec.exited || now - a->last_memory_check < MEMORY_CHECK_USEC)
                return;
        a->last_memory_check = now;
        if (!memory_exhausted())
                return;
        log_info("exec %u: the guest is out of memory; killing the code", a->n_execs);
        kill_user_processes();
}

static void on_timeout(Agent *a) {
        uint64_t expirations;

        if (read(a->timer_fd, &expirations, sizeof expirations) <= 0)
                return;
        if (!a->running || a->exec.exited)
                return;
        if (a->exec.interrupted) {
                log_debug("exec %u ignored the interrupt; killing it", a->n_execs);
                kill_exec(a);
                return;
        }
        log_debug("exec %u timed out", a->n_execs);
        a->exec.timed_out = true;
        kill_exec(a);
}

/* Forwards what a session pipe holds right now (bounded), without waiting. */
static int drain_now(Agent *a, int *fd, SbxStream stream) {
        size_t total = 0;

        while (*fd >= 0 && total < SESSION_DRAIN_MAX) {
                ssize_t n = read(*fd, a->buf, sizeof a->buf);
                int r;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break; /* EAGAIN: empty */
                }
                if (n == 0) {
                        *fd = safe_close(*fd);
                        break;
                }
                r = send_output(a, stream, a->buf, (size_t) n);
                if (r < 0)
                        return r;
                total += (size_t) n;
        }
        return 0;
}

/* Output of a background process between execs belongs to no exec: dropped. */
static void discard_output(Agent *a, int *fd) {
        ssize_t n = read(*fd, a->buf, sizeof a->buf);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                *fd = safe_close(*fd);
}

static int finish_session_pipes(Agent *a) {
        Exec *e = &a->exec;
        Session *s = e->session;
        int r;

        r = drain_now(a, &s->stdout_fd, SBX_STREAM_STDOUT);
        if (r >= 0)
                r = drain_now(a, &s->stderr_fd, SBX_STREAM_STDERR);
        if (s->pid <= 0)
                session_reset(s); /* the interpreter is gone (reaped) */
        return r;
}

static int finish_exec(Agent *a) {
        Exec *e = &a->exec;
        int32_t code;
        SbxMsg m;

        e->child.stdout_fd = safe_close(e->child.stdout_fd);
        e->child.stderr_fd = safe_close(e->child.stderr_fd);
        (void) unlink(e->child.path);

        if (e->timed_out)
                code = -1;
        else if (e->have_done_status)
                code = e->done_status;
        else if (WIFEXITED(e->status))
                code = WEXITSTATUS(e->status);
        else if (WIFSIGNALED(e->status))
                code = 128 + WTERMSIG(e->status);
        else
                code = -1;
        a->running = false;
        log_debug("exec %u: exit %d after %llu ms", a->n_execs, code, (unsigned long long) e->exec_ms);

        sbx_msg_begin(&m, SBX_G_EXIT);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, code);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, e->exec_ms);
        sbx_msg_put_u8(&m, SBX_T_TIMED_OUT, e->timed_out);
        if (e->session)
                sbx_msg_put_u8(&m, SBX_T_STATE_RESET, e->state_reset);
        return send_simple(a->port_fd, &m);
}

static int setup_fds(Agent *a, int port_fd) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block SIGCHLD: %m");
        a->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (a->signal_fd < 0)
                return log_error_errno(errno, "Failed to create signalfd: %m");
        a->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (a->timer_fd < 0)
                return log_error_errno(errno, "Failed to create timerfd: %m");
        a->port_fd = port_fd;
        sbx_frame_reader_init(&a->reader, SBX_HOST_FRAME_MAX);
        return 0;
}

int agent_run(int port_fd) {
        static Agent agent; /* the 32 KiB buffer does not belong on the stack */
        Agent *a = &agent;
        int r;

        *a = (Agent) { .port_fd = -EBADF, .signal_fd = -EBADF, .timer_fd = -EBADF };
        for (size_t i = 0; i < ELEMENTSOF(a->sessions); i++)
                session_init(&a->sessions[i], (SbxLanguage) i);
        file_write_init(&a->file_write);
        r = setup_fds(a, port_fd);
        if (r < 0)
                return r;
        /* Children may have exited before the signalfd existed. */
        reap_children(a);

        for (;;) {
                Exec *e = &a->exec;
                Session *cur = a->running ? e->session : NULL;
                struct pollfd p[6 + 3 * _SBX_LANG_MAX] = {
                        { .fd = a->port_fd, .events = POLLIN },
                        { .fd = a->signal_fd, .events = POLLIN },
                        { .fd = a->timer_fd, .events = POLLIN },
                        { .fd = !a->running ? -1 : cur ? cur->stdout_fd : e->child.stdout_fd, .events = POLLIN },
                        { .fd = !a->running ? -1 : cur ? cur->stderr_fd : e->child.stderr_fd, .events = POLLIN },
                        { .fd = cur && !e->exited ? cur->done_fd : -1, .events = POLLIN },
                };
                int timeout = -1;

                /* Idle interpreters: their background output is dropped. */
                for (size_t i = 0; i < ELEMENTSOF(a->sessions); i++) {
                        Session *s = &a->sessions[i];
                        bool idle = s != cur && s->pid > 0;
                        p[6 + 3 * i] = (struct pollfd) { .fd = idle ? s->stdout_fd : -1, .events = POLLIN };
                        p[7 + 3 * i] = (struct pollfd) { .fd = idle ? s->stderr_fd : -1, .events = POLLIN };
                        p[8 + 3 * i] = (struct pollfd) { .fd = idle ? s->done_fd : -1, .events = POLLIN };
                }

                if (a->running && e->exited && !cur) {
                        uint64_t now = now_usec(CLOCK_MONOTONIC);
                        timeout = now >= e->drain_deadline ? 0 : (int) ((e->drain_deadline - now + 999) / 1000);
                } else if (a->running && !e->exited)
                        timeout = MEMORY_CHECK_USEC / 1000u; /* check_memory() */
                if (poll(p, ELEMENTSOF(p), timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(errno, "poll() failed: %m");
                }

                check_memory(a);

                /* Output first: whatever the code wrote goes out before EXIT. */
                if (p[3].revents) {
                        r = forward_output(a, cur ? &cur->stdout_fd : &e->child.stdout_fd, SBX_STREAM_STDOUT);
                        if (r < 0)
                                return r;
                }
                if (p[4].revents) {
                        r = forward_output(a, cur ? &cur->stderr_fd : &e->child.stderr_fd, SBX_STREAM_STDERR);
                        if (r < 0)
                                return r;
                }
                if (p[5].revents && cur && !e->exited) {
                        int status;

                        r = session_read_done(cur, &status);
                        if (r > 0)
                                on_session_done(a, status);
                        else if (r < 0) {
                                /* A broken driver: kill it, the exec ends as a crash. */
                                log_debug("Session driver of exec %u closed its done pipe or wrote garbage.",
                                          a->n_execs);
                                cur->done_fd = safe_close(cur->done_fd);
                                session_kill(cur);
                        }
                }
                for (size_t i = 0; i < ELEMENTSOF(a->sessions); i++) {
                        Session *s = &a->sessions[i];
                        if (p[6 + 3 * i].revents && s->stdout_fd == p[6 + 3 * i].fd)
                                discard_output(a, &s->stdout_fd);
                        if (p[7 + 3 * i].revents && s->stderr_fd == p[7 + 3 * i].fd)
                                discard_output(a, &s->stderr_fd);
                        if (p[8 + 3 * i].revents && s->done_fd == p[8 + 3 * i].fd)
                                discard_output(a, &s->done_fd);
                }
                if (p[1].revents)
                        reap_children(a);
                if (p[2].revents)
                        on_timeout(a);
                if (p[0].revents) {
                        r = read_port(a);
                        if (r < 0) {
                                kill_exec(a);
                                return r;
                        }
                }

                if (a->running && e->exited && e->session) {
                        r = finish_session_pipes(a);
                        if (r >= 0)
                                r = finish_exec(a);
                        if (r < 0)
                                return r;
                } else if (a->running && e->exited &&
                           ((e->child.stdout_fd < 0 && e->child.stderr_fd < 0) ||
                            now_usec(CLOCK_MONOTONIC) >= e->drain_deadline)) {
                        if (e->child.stdout_fd >= 0 || e->child.stderr_fd >= 0)
                                log_warning("Output of exec %u still open after %u s, dropping it.", a->n_execs,
                                            DRAIN_TIMEOUT_USEC / 1000000u);
                        r = finish_exec(a);
                        if (r < 0)
                                return r;
                }
        }
}
