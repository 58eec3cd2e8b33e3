/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Writes everything, waiting with poll() on EAGAIN. Uses MSG_NOSIGNAL on sockets. */
int loop_write(int fd, const void *buf, size_t n);
int fd_set_nonblock(int fd, int nonblock);
int fd_set_cloexec(int fd, int cloexec);
/* Moves fd to exactly `target` (for handing fd 3 to a child). */
int fd_move_to(int fd, int target);
uint64_t now_usec(int clock);
/* Reads a small text file into a NUL-terminated buffer. */
int read_small_file(const char *path, char *buf, size_t size);
int write_string_file(const char *path, const char *s);
/* A blocking AF_UNIX stream socket (close-on-exec) connected to path. -ENAMETOOLONG, or connect's
 * -errno (-ENOENT, -ECONNREFUSED when nobody listens). */
int unix_connect(const char *path, int *ret_fd);
/* A listening AF_UNIX stream socket (close-on-exec, non-blocking) at path, replacing a stale one
 * there. Mode 0666: the daemons behind these sockets check every peer with SO_PEERCRED. */
int unix_listen(const char *path, int backlog, int *ret_fd);
/* In a forked child: executes path (searched in $PATH if it has no slash) with fd as its fd 3, the
 * way systemd's socket activation passes one (LISTEN_FDS=1, LISTEN_PID, LISTEN_FDNAMES=fd_name),
 * with the signal mask and SIGPIPE reset. Never returns. */
__attribute__((noreturn)) void exec_with_listen_fd(const char *path, int fd, const char *fd_name);
/* Removes a directory tree; returns 0 when it is gone. */
int rm_rf(const char *path);
