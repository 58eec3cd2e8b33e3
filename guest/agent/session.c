/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdio.h"
#include "init.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "session-drivers.h"
#include "session.h"

static const struct {
        const char *path; /* where the driver is written at first use */
        const char *text;
        const char *argv[4];
} drivers[_SBX_LANG_MAX] = {
        [SBX_LANG_PYTHON] = {
                SBX_GUEST_RUNDIR "/session.py", driver_python,
                { "/usr/bin/python3", "-u", SBX_GUEST_RUNDIR "/session.py" },
        },
        [SBX_LANG_JAVASCRIPT] = {
                SBX_GUEST_RUNDIR "/session.js", driver_javascript,
                { "/usr/local/bin/bun", SBX_GUEST_RUNDIR "/session.js" },
        },
        [SBX_LANG_RAW] = {
                SBX_GUEST_RUNDIR "/session.sh", driver_raw,
                { "/bin/bash", SBX_GUEST_RUNDIR "/session.sh" },
        },
};

void session_init(Session *s, SbxLanguage language) {
        *s = (Session) {
                .language = language,
                .stdout_fd = -EBADF,
                .stderr_fd = -EBADF,
                .req_fd = -EBADF,
                .done_fd = -EBADF,
        };
}

static int write_driver(SbxLanguage l) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        /* Root-owned in a root-owned directory: user code cannot change it. */
        if (lstat(drivers[l].path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 &&
            (size_t) st.st_size == strlen(drivers[l].text))
                return 0;
        (void) unlink(drivers[l].path);
        fd = open(drivers[l].path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        r = loop_write(fd, drivers[l].text, strlen(drivers[l].text));
        if (r < 0)
                return r;
        return RET_NERRNO(fchmod(fd, 0644));
}

static int session_start(Session *s, const ExecRequest *req, SbxError *error) {
        int req_pipe[2] = { -EBADF, -EBADF }, done_pipe[2] = { -EBADF, -EBADF };
        ExecChild child;
        int r;

        r = write_driver(s->language);
        if (r < 0)
                return sbx_error_set(error, r, "cannot write %s: %s", drivers[s->language].path, strerror(-r));
        if (pipe2(req_pipe, O_CLOEXEC) < 0 || pipe2(done_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                r = sbx_error_set(error, r, "cannot create the session pipes: %s", strerror(-r));
                goto finish;
        }
        r = exec_spawn_argv(drivers[s->language].argv, req, (const int[]) { req_pipe[0], done_pipe[1] }, 2, &child,
                            error);
        if (r < 0)
                goto finish;

        (void) fd_set_nonblock(req_pipe[1], 1);
        (void) fd_set_nonblock(done_pipe[0], 1);
        s->pid = child.pid;
        s->stdout_fd = child.stdout_fd;
        s->stderr_fd = child.stderr_fd;
        s->req_fd = TAKE_FD(req_pipe[1]);
        s->done_fd = TAKE_FD(done_pipe[0]);
        s->done_len = 0;
        log_debug("session %d: interpreter pid %d", (int) s->language, (int) s->pid);
        r = 0;
finish:
        safe_close(req_pipe[0]);
        safe_close(req_pipe[1]);
        safe_close(done_pipe[0]);
        safe_close(done_pipe[1]);
        return r;
}

void session_kill(Session *s) {
        if (s->pid > 0)
                (void) kill(-s->pid, SIGKILL);
}

void session_reset(Session *s) {
        s->stdout_fd = safe_close(s->stdout_fd);
        s->stderr_fd = safe_close(s->stderr_fd);
        s->req_fd = safe_close(s->req_fd);
        s->done_fd = safe_close(s->done_fd);
        s->pid = 0;
        s->done_len = 0;
}

/* Kills and reaps a broken interpreter right away, so it can be replaced. */
static void session_destroy(Session *s) {
        pid_t pid = s->pid;

        session_kill(s);
        if (pid > 0)
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        session_reset(s);
}

/* The exec's env as NUL-separated KEY=VALUE entries, for the driver to set
 * before the code runs: a running interpreter (a session's, or a warm pool
 * VM's started before the request existed) does not have it yet. */
static int write_env_file(const Session *s, const ExecRequest *req, char *path, size_t path_size) {
        static const char *const names[_SBX_LANG_MAX] = {
                [SBX_LANG_PYTHON] = "python",
                [SBX_LANG_JAVASCRIPT] = "javascript",
                [SBX_LANG_RAW] = "raw",
        };
        _cleanup_close_ int fd = -EBADF;
        int r;

        snprintf(path, path_size, SBX_GUEST_RUNDIR "/session-env.%s", names[s->language]);
        (void) unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < req->n_env; i++) {
                r = loop_write(fd, req->env[i], strlen(req->env[i]) + 1);
                if (r < 0)
                        return r;
        }
        return RET_NERRNO(fchmod(fd, 0644));
}

int session_submit(Session *s, const ExecRequest *req, const char *code_path, bool *ret_fresh, SbxError *error) {
        char line[192], env_path[64] = "";
        int n, r;

        *ret_fresh = false;
        /* A closed done pipe means the driver lost it (user code closed its fd 4). */
        if (s->pid > 0 && (s->done_fd < 0 || s->req_fd < 0))
                session_destroy(s);

        for (int attempt = 0;; attempt++) {
                if (s->pid <= 0) {
                        r = session_start(s, req, error);
                        if (r < 0)
                                return r;
                        *ret_fresh = true;
                }
                /* Stale bytes in the done pipe would end this exec early. */
                for (char junk[256]; read(s->done_fd, junk, sizeof junk) > 0;)
                        ;
                s->done_len = 0;

                if (req->n_env > 0 && !*env_path) {
                        r = write_env_file(s, req, env_path, sizeof env_path);
                        if (r < 0)
                                return sbx_error_set(error, r, "cannot write the exec's environment: %s",
                                                     strerror(-r));
                }
                /* "CODE_PATH[\tENV_PATH]\n" */
                n = snprintf(line, sizeof line, "%s%s%s\n", code_path, *env_path ? "\t" : "", env_path);
                if (write(s->req_fd, line, (size_t) n) == n)
                        return 0;
                r = -errno;
                /* EPIPE: the interpreter died and is not reaped yet; EAGAIN: it
                 * stopped reading requests. Either way, start a new one once. */
                log_debug("session %d: request write failed: %s", (int) s->language, strerror(-r));
                session_destroy(s);
                if (attempt > 0)
                        return sbx_error_set(error, r < 0 ? r : -EIO, "the session interpreter does not accept code");
        }
}

int session_read_done(Session *s, int *ret_status) {
        char *nl;
        ssize_t k;

        if (s->done_fd < 0)
                return -EPIPE;
        k = read(s->done_fd, s->done_buf + s->done_len, sizeof s->done_buf - 1 - s->done_len);
        if (k < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -EPIPE;
        if (k == 0) {
                s->done_fd = safe_close(s->done_fd);
                return -EPIPE;
        }
        s->done_len += (size_t) k;
        s->done_buf[s->done_len] = 0;
        nl = memchr(s->done_buf, '\n', s->done_len);
        if (!nl)
                return s->done_len >= sizeof s->done_buf - 1 ? -EPIPE : 0;

        char *end;
        long v;

        *nl = 0;
        errno = 0;
        v = strtol(s->done_buf, &end, 10);
        if (errno != 0 || end == s->done_buf || *end != 0 || v < -255 || v > 255)
                return -EPIPE;
        /* Whatever follows (there should be nothing) is dropped. */
        s->done_len = 0;
        *ret_status = (int) v;
        return 1;
}
