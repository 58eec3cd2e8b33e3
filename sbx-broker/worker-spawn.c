/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "validate.h"
#include "worker-spawn.h"

static int connect_worker_socket(const char *path, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;

        int r = unix_connect(path, &fd);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to %s: %m", path);

        /* The socket must be systemd's (root) or our own: anyone else listening
         * there would receive our users' code. */
        struct ucred cred;
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return log_error_errno(errno, "Failed to read the peer credentials of %s: %m", path);
        if (cred.uid != 0 && cred.uid != geteuid())
                return log_error_errno(EPERM, "Refusing worker socket %s: it belongs to uid %d, not root or us.",
                                       path, (int) cred.uid);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

_noreturn_ void broker_exec_with_fd(Broker *b, const char *path, int fd, const char *fd_name) {
        if (b->config_path)
                setenv("SBX_CONFIG", b->config_path, 1);
        exec_with_listen_fd(path, fd, fd_name);
}

static int spawn_worker(Broker *b, int *ret_fd, pid_t *ret_pid) {
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
        if (pid == 0)
                broker_exec_with_fd(b, b->config.worker_path, sv[1], "connection");
        close(sv[1]);
        *ret_pid = pid;
        *ret_fd = sv[0];
        return 0;
}

void worker_link_init(WorkerLink *l) {
        *l = (WorkerLink) {};
        framed_conn_init(&l->conn);
}

static int on_worker_frame(FramedConn *c, uint8_t type, const uint8_t *payload, size_t len, void *userdata) {
        WorkerLink *l = userdata;
        (void) c;

        int r = l->on_frame(l->userdata, type, payload, len);
        if (r < 0) {
                l->on_lost(l->userdata, r, true);
                return 1; /* (not reached when the owner released the link) */
        }
        return 0;
}

static void on_worker_close(FramedConn *c, int error, void *userdata) {
        WorkerLink *l = userdata;
        (void) c;

        if (error == -ETIMEDOUT && l->pid > 0) {
                /* Stopped or wedged: make it stop its VM the moment it runs again. */
                (void) kill(l->pid, SIGTERM);
                (void) kill(l->pid, SIGCONT);
        }
        l->on_lost(l->userdata, error, error == -EBADMSG);
}

int worker_link_start(WorkerLink *l, Broker *b, worker_frame_handler_t on_frame, worker_lost_handler_t on_lost,
                      void *userdata) {
        int fd = -EBADF, r;

        l->broker = b;
        l->on_frame = on_frame;
        l->on_lost = on_lost;
        l->userdata = userdata;

        r = spawn_worker(b, &fd, &l->pid);
        if (r < 0)
                return r;
        /* Room for the largest request frame twice over; anything beyond is the worker's stall. */
        r = framed_conn_open(&l->conn, b->event, "VM worker", fd, SBX_WORKER_FRAME_MAX,
                             2 * (SBX_HOST_FRAME_MAX + SBX_FRAME_HEADER_SIZE), on_worker_frame, on_worker_close, l);
        if (r < 0)
                return r;
        return framed_conn_set_stall_timeout(&l->conn, WORKER_STALL_USEC);
}

void worker_link_move(WorkerLink *dst, WorkerLink *src, worker_frame_handler_t on_frame, worker_lost_handler_t on_lost,
                      void *userdata) {
        *dst = *src;
        framed_conn_move(&dst->conn, &src->conn, dst);
        dst->on_frame = on_frame;
        dst->on_lost = on_lost;
        dst->userdata = userdata;
        worker_link_init(src);
}

void worker_link_release(WorkerLink *l, bool kill_worker) {
        framed_conn_close(&l->conn);
        if (l->pid > 0 && kill_worker)
                /* The worker kills its QEMU on SIGTERM; the broker's SIGCHLD handler reaps it. */
                (void) kill(l->pid, SIGTERM);
        l->pid = 0;
}

int worker_link_send(WorkerLink *l, SbxMsg *m) {
        return framed_conn_send(&l->conn, m);
}

int worker_link_send_with_fd(WorkerLink *l, SbxMsg *m, int fd) {
        return framed_conn_send_with_fds(&l->conn, m, &fd, 1);
}
