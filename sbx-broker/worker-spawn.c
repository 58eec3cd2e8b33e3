/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "worker-spawn.h"

static int connect_worker_socket(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;

        if (strlen(path) >= sizeof sa.sun_path)
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return log_error_errno(errno, "Failed to connect to %s: %m", path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int broker_spawn_worker(Broker *b, int *ret_fd, pid_t *ret_pid) {
        int sv[2], r;
        pid_t pid;

        if (b->config.worker_socket) {
                *ret_pid = 0;
                return connect_worker_socket(b->config.worker_socket, ret_fd);
        }

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(sv[0]);
                close(sv[1]);
                return r;
        }
        if (pid == 0) {
                char buf[32];
                sigset_t none;

                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                signal(SIGPIPE, SIG_DFL);
                if (fd_move_to(sv[1], 3) < 0)
                        _exit(127);
                snprintf(buf, sizeof buf, "%d", (int) getpid());
                setenv("LISTEN_PID", buf, 1);
                setenv("LISTEN_FDS", "1", 1);
                setenv("LISTEN_FDNAMES", "connection", 1);
                if (b->config_path)
                        setenv("SBX_CONFIG", b->config_path, 1);
                execl(b->config.worker_path, b->config.worker_path, (char *) NULL);
                fprintf(stderr, "sbx-broker: failed to execute %s: %m\n", b->config.worker_path);
                _exit(127);
        }
        close(sv[1]);
        *ret_pid = pid;
        *ret_fd = sv[0];
        return 0;
}
