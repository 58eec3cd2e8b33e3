/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/random.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "fdio.h"
#include "frame.h"
#include "init.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "validate.h"

#define SEED_MAX 512u
#define ENV_ITEM_MAX (SBX_ENV_NAME_MAX + 1u + SBX_ENV_VALUE_MAX)

/* macro.h's _cleanup_close_pair_ hands close_pair() an int (*)[2], which
 * does not compile; this one takes what the cleanup attribute passes. */
static void close_pairp(int (*p)[2]) {
        (*p)[0] = safe_close((*p)[0]);
        (*p)[1] = safe_close((*p)[1]);
}

static const char *const base_env[] = {
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=" SBX_GUEST_HOME,
        "USER=user",
        "LOGNAME=user",
        "LANG=C.UTF-8",
        "TMPDIR=/tmp",
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
};

void exec_request_done(ExecRequest *req) {
        for (size_t i = 0; i < req->n_env; i++)
                free(req->env[i]);
        *req = (ExecRequest) { .language = SBX_LANG_INVALID };
}

static int parse_env(ExecRequest *req, const uint8_t *v, uint32_t n, const char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        char *eq;
        int r;

        if (req->n_env >= SBX_ENV_COUNT_MAX) {
                *ret_reason = "too many environment variables";
                return -E2BIG;
        }
        if (sbx_tlv_str(v, n, ENV_ITEM_MAX, &s) < 0 || !(eq = strchr(s, '='))) {
                *ret_reason = "malformed environment variable";
                return -EBADMSG;
        }
        *eq = 0;
        r = sbx_validate_env_name(s, ret_reason);
        *eq = '=';
        if (r < 0)
                return r;
        req->env[req->n_env++] = TAKE_PTR(s);
        return 0;
}

int exec_request_parse(const uint8_t *payload, size_t len, ExecRequest *req, const char **ret_reason) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        int r;

        *req = (ExecRequest) { .language = SBX_LANG_INVALID };
        sbx_tlv_iter_init(&it, payload, len);
        while ((r = sbx_tlv_next(&it, &tag, &v, &n)) > 0) {
                switch (tag) {
                case SBX_T_LANGUAGE: {
                        _cleanup_free_ char *s = NULL;
                        if (sbx_tlv_str(v, n, 32, &s) < 0)
                                goto bad;
                        req->language = sbx_language_from_string(s);
                        break;
                }
                case SBX_T_CODE:
                        if (n > SBX_CODE_MAX) {
                                *ret_reason = "code is larger than 1 MiB";
                                exec_request_done(req);
                                return -E2BIG;
                        }
                        req->code = v;
                        req->code_len = n;
                        req->have_code = true;
                        break;
                case SBX_T_TIMEOUT_MS:
                        if (sbx_tlv_u32(v, n, &req->timeout_ms) < 0)
                                goto bad;
                        break;
                case SBX_T_ENV:
                        r = parse_env(req, v, n, ret_reason);
                        if (r < 0) {
                                exec_request_done(req);
                                return r;
                        }
                        break;
                case SBX_T_CLOCK_NS:
                        if (sbx_tlv_u64(v, n, &req->clock_ns) < 0)
                                goto bad;
                        req->have_clock = true;
                        break;
                case SBX_T_SESSION: {
                        uint8_t b;
                        if (sbx_tlv_u8(v, n, &b) < 0)
                                goto bad;
                        req->session = b != 0;
                        break;
                }
                case SBX_T_SEED:
                        req->seed = v;
                        req->seed_len = MIN((size_t) n, (size_t) SEED_MAX);
                        break;
                default: /* newer hosts may send more */
                        break;
                }
        }
        if (r < 0)
                goto bad;
        if (req->language == SBX_LANG_INVALID) {
                *ret_reason = "missing or unknown language";
                exec_request_done(req);
                return -EINVAL;
        }
        if (!req->have_code) {
                *ret_reason = "missing code";
                exec_request_done(req);
                return -EINVAL;
        }
        if (req->timeout_ms == 0)
                req->timeout_ms = SBX_TIMEOUT_DEFAULT_S * 1000u;
        req->timeout_ms = MIN(req->timeout_ms, SBX_TIMEOUT_MAX_S * 1000u);
        return 0;

bad:
        *ret_reason = "malformed exec request";
        exec_request_done(req);
        return -EBADMSG;
}

static void add_entropy(const uint8_t *seed, size_t n) {
        _cleanup_close_ int fd = open("/dev/random", O_WRONLY | O_CLOEXEC | O_NOCTTY);
        _cleanup_free_ struct rand_pool_info *info = NULL;

        if (fd < 0) {
                log_warning_errno(errno, "Failed to open /dev/random: %m");
                return;
        }
        info = malloc(sizeof *info + n);
        if (!info)
                return;
        info->entropy_count = (int) (n * 8);
        info->buf_size = (int) n;
        memcpy(info->buf, seed, n);
        /* Credited entropy needs CAP_SYS_ADMIN; a plain write still mixes it in. */
        if (ioctl(fd, RNDADDENTROPY, info) < 0 && loop_write(fd, seed, n) < 0)
                log_warning_errno(errno, "Failed to add the host seed: %m");
        /* Make the next getrandom() use it rather than wait for the next reseed. */
        (void) ioctl(fd, RNDRESEEDCRNG);
}

void exec_apply_host_state(const ExecRequest *req) {
        if (req->have_clock) {
                struct timespec ts = {
                        .tv_sec = (time_t) (req->clock_ns / 1000000000u),
                        .tv_nsec = (long) (req->clock_ns % 1000000000u),
                };
                if (clock_settime(CLOCK_REALTIME, &ts) < 0)
                        log_warning_errno(errno, "Failed to set the clock: %m");
        }
        if (req->seed_len > 0)
                add_entropy(req->seed, req->seed_len);
}

static int write_code_file(const char *path, const uint8_t *code, size_t len) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        (void) unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        r = loop_write(fd, code, len);
        if (r < 0)
                return r;
        return RET_NERRNO(fchmod(fd, 0644));
}

/* What a failing child reports through the exec pipe before _exit(). */
typedef struct ChildFailure {
        int error;
        char step[28];
} ChildFailure;

_noreturn_ static void child_fail(int report_fd, const char *step) {
        ChildFailure f = { .error = errno };

        strncpy(f.step, step, sizeof f.step - 1);
        (void) !write(report_fd, &f, sizeof f);
        _exit(127);
}

/* Empties the capability bounding set, so nothing the code executes can gain a capability back,
 * whatever file capabilities or setuid bits it finds. Needs CAP_SETPCAP: call it while still root. */
static int drop_bounding_set(void) {
        char buf[16];
        unsigned long last;
        char *end;
        int r;

        r = read_small_file("/proc/sys/kernel/cap_last_cap", buf, sizeof buf);
        if (r < 0)
                return r;
        errno = 0;
        last = strtoul(buf, &end, 10);
        if (errno != 0 || end == buf || last > 63)
                return -EINVAL;
        for (unsigned long cap = 0; cap <= last; cap++) {
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                        return -errno;
                if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0)
                        return -EPERM;
        }
        return 0;
}

_noreturn_ static void child_run(char *const argv[], char *const envp[], int null_fd, int out_fd, int err_fd,
                                 const int extra_fds[], size_t n_extra, int report_fd) {
        static const struct {
                int resource;
                rlim_t limit;
        } limits[] = {
                { RLIMIT_NPROC, 256 }, /* a fork bomb runs into EAGAIN */
                { RLIMIT_CORE, 0 },
        };
        int tmp[EXEC_EXTRA_FDS_MAX];
        sigset_t none;

        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        (void) signal(SIGPIPE, SIG_DFL);

        if (setsid() < 0)
                child_fail(report_fd, "setsid");
        /* The agent is exempt from the OOM killer; user code must not be. */
        if (write_string_file("/proc/self/oom_score_adj", "0") < 0)
                child_fail(report_fd, "oom_score_adj");

        if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
                child_fail(report_fd, "dup2");
        /* Extra fds (sessions) go to 3, 4, ..., the report fd right after
         * them. Move everything out of the way first so nothing is clobbered. */
        if (n_extra > 0) {
                int r2;

                for (size_t i = 0; i < n_extra; i++)
                        if ((tmp[i] = fcntl(extra_fds[i], F_DUPFD_CLOEXEC, 100)) < 0)
                                child_fail(report_fd, "dup extra");
                if ((r2 = fcntl(report_fd, F_DUPFD_CLOEXEC, 100)) < 0)
                        child_fail(report_fd, "dup report");
                report_fd = r2;
                for (size_t i = 0; i < n_extra; i++)
                        if (dup2(tmp[i], 3 + (int) i) < 0)
                                child_fail(report_fd, "dup2 extra");
        }
        if (report_fd != 3 + (int) n_extra) {
                if (dup3(report_fd, 3 + (int) n_extra, O_CLOEXEC) < 0)
                        child_fail(report_fd, "dup3");
                report_fd = 3 + (int) n_extra;
        }
        if (close_range(4 + (unsigned) n_extra, ~0u, 0) < 0)
                child_fail(report_fd, "close_range");

        for (size_t i = 0; i < ELEMENTSOF(limits); i++) {
                struct rlimit rl = { limits[i].limit, limits[i].limit };
                if (setrlimit(limits[i].resource, &rl) < 0)
                        child_fail(report_fd, "setrlimit");
        }

        int r = drop_bounding_set();
        if (r < 0) {
                errno = -r;
                child_fail(report_fd, "capbset");
        }
        if (setgroups(0, NULL) < 0 || setgid(SBX_GUEST_GID) < 0 || setuid(SBX_GUEST_UID) < 0)
                child_fail(report_fd, "setuid");
        /* Never run user code as root, whatever happened above. */
        if (getuid() != SBX_GUEST_UID || geteuid() != SBX_GUEST_UID || getgid() != SBX_GUEST_GID ||
            getegid() != SBX_GUEST_GID || setuid(0) == 0) {
                errno = EPERM;
                child_fail(report_fd, "verify uid");
        }
        /* setuid binaries in the image stay harmless. */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(report_fd, "no_new_privs");
        if (chdir(SBX_GUEST_HOME) < 0)
                child_fail(report_fd, "chdir");

        execve(argv[0], argv, envp);
        child_fail(report_fd, "execve");
}

/* Under TCG, JavaScriptCore's optimizing tiers (DFG, and FTL above it) cost more than they gain:
 * the compilers themselves run emulated, on the one vCPU the code needs. Measured in a Bun session:
 * a 10^7-iteration loop 625 -> 423 ms, building and serializing 200,000 objects 912 -> 519 ms,
 * small execs unchanged. The baseline JIT stays. A request's own value wins. */
static const char *const emulated_js_env[] = {
        "BUN_JSC_useDFGJIT=0",
};
static bool emulated;

void exec_set_emulated(bool on) {
        emulated = on;
}

static size_t build_env(const ExecRequest *req, const char *envp[], size_t max) {
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(base_env) && n < max; i++)
                envp[n++] = base_env[i];
        if (emulated && req->language == SBX_LANG_JAVASCRIPT)
                for (size_t i = 0; i < ELEMENTSOF(emulated_js_env) && n < max; i++)
                        envp[n++] = emulated_js_env[i];

        /* Request values override the defaults and earlier duplicates. */
        for (size_t i = 0; i < req->n_env; i++) {
                const char *e = req->env[i];
                size_t k = strcspn(e, "=") + 1, j;

                for (j = 0; j < n; j++)
                        if (strncmp(envp[j], e, k) == 0)
                                break;
                if (j < n)
                        envp[j] = e;
                else if (n < max)
                        envp[n++] = e;
        }
        envp[n] = NULL;
        return n;
}

static int spawn_argv(const char *const argv[], const ExecRequest *req, const int extra_fds[], size_t n_extra,
                      ExecChild *ret, SbxError *error) {
        const char *envp[ELEMENTSOF(base_env) + ELEMENTSOF(emulated_js_env) + SBX_ENV_COUNT_MAX + 1];
        _cleanup_(close_pairp) int out[2] = { -EBADF, -EBADF }, err[2] = { -EBADF, -EBADF },
                                 report[2] = { -EBADF, -EBADF };
        _cleanup_close_ int null_fd = -EBADF;
        ChildFailure f;
        ssize_t k;
        pid_t pid;
        int r;

        if (n_extra > EXEC_EXTRA_FDS_MAX)
                return sbx_error_set(error, -EINVAL, "too many fds");
        build_env(req, envp, ELEMENTSOF(envp) - 1);

        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (null_fd < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(report, O_CLOEXEC) < 0) {
                r = -errno;
                return sbx_error_set(error, r, "cannot set up the child's fds: %s", strerror(-r));
        }

        pid = fork();
        if (pid < 0) {
                r = -errno;
                return sbx_error_set(error, r, "fork failed: %s", strerror(-r));
        }
        if (pid == 0)
                child_run((char *const *) argv, (char *const *) envp, null_fd, out[1], err[1], extra_fds, n_extra,
                          report[1]);

        /* The report pipe closes on a successful execve(), or carries the failure. */
        report[1] = safe_close(report[1]);
        do
                k = read(report[0], &f, sizeof f);
        while (k < 0 && errno == EINTR);
        if (k != 0) {
                (void) waitpid(pid, NULL, 0);
                if (k == (ssize_t) sizeof f) {
                        f.step[sizeof f.step - 1] = 0;
                        return sbx_error_set(error, -f.error ?: -EIO, "cannot start %s: %s: %s", argv[0], f.step,
                                             strerror(f.error));
                }
                return sbx_error_set(error, -EIO, "cannot start %s", argv[0]);
        }

        (void) fd_set_nonblock(out[0], 1);
        (void) fd_set_nonblock(err[0], 1);
        ret->pid = pid;
        ret->stdout_fd = TAKE_FD(out[0]);
        ret->stderr_fd = TAKE_FD(err[0]);
        return 0;
}

int exec_spawn_argv(const char *const argv[], const ExecRequest *req, const int extra_fds[], size_t n_extra,
                    ExecChild *ret, SbxError *error) {
        *ret = (ExecChild) { .stdout_fd = -EBADF, .stderr_fd = -EBADF };
        return spawn_argv(argv, req, extra_fds, n_extra, ret, error);
}

int exec_write_code(const ExecRequest *req, unsigned id, char *path, size_t path_size, SbxError *error) {
        static const char *const suffix[_SBX_LANG_MAX] = {
                [SBX_LANG_PYTHON] = "py",
                /* .ts so TypeScript works; plain JavaScript is valid TypeScript for Bun. */
                [SBX_LANG_JAVASCRIPT] = "ts",
                [SBX_LANG_RAW] = "sh",
        };
        int r;

        if (req->language < 0 || req->language >= _SBX_LANG_MAX)
                return sbx_error_set(error, -EINVAL, "unsupported language");
        snprintf(path, path_size, SBX_GUEST_RUNDIR "/code-%u.%s", id, suffix[req->language]);
        r = write_code_file(path, req->code, req->code_len);
        if (r < 0)
                return sbx_error_set(error, r, "cannot write %s: %s", path, strerror(-r));
        return 0;
}

int exec_spawn(const ExecRequest *req, unsigned id, ExecChild *ret, SbxError *error) {
        static const char *const interpreters[_SBX_LANG_MAX][3] = {
                /* -u: output streams live even if the env var is overridden. */
                [SBX_LANG_PYTHON] = { "/usr/bin/python3", "-u" },
                [SBX_LANG_JAVASCRIPT] = { "/usr/local/bin/bun", "run" },
                [SBX_LANG_RAW] = { "/bin/bash" },
        };
        const char *argv[4] = {};
        size_t n = 0;
        int r;

        *ret = (ExecChild) { .stdout_fd = -EBADF, .stderr_fd = -EBADF };
        r = exec_write_code(req, id, ret->path, sizeof ret->path, error);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ELEMENTSOF(interpreters[0]) && interpreters[req->language][i]; i++)
                argv[n++] = interpreters[req->language][i];
        argv[n] = ret->path;

        r = spawn_argv(argv, req, NULL, 0, ret, error);
        if (r < 0) {
                (void) unlink(ret->path);
                return r;
        }
        return 0;
}

void kill_user_processes(void) {
        pid_t pid = fork();

        if (pid < 0) {
                log_error_errno(errno, "Failed to fork the kill helper: %m");
                return;
        }
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setgid(SBX_GUEST_GID) < 0 || setuid(SBX_GUEST_UID) < 0)
                        _exit(1);
                /* kill(-1) reaches every process we may signal but ourselves, and
                 * it excludes concurrent fork()s, so a fork bomb cannot outrun it. */
                (void) kill(-1, SIGKILL);
                _exit(0);
        }
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
}
