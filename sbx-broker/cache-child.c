/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker.h"
#include "cache-child.h"
#include "cache-client.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "worker-spawn.h"

#define CACHE_RESTART_USEC (1000u * 1000u)

static int cache_listen(Broker *b) {
        char path[256];

        if (sbx_cache_socket_path(NULL, b->config.runtime_dir, path, sizeof path) < 0)
                return -ENAMETOOLONG;
        (void) mkdir(b->config.runtime_dir, 0755);
        /* Anyone may connect; sbx-cache decides by SO_PEERCRED. */
        return unix_listen(path, 128, &b->cache_listen_fd);
}

static int cache_spawn(Broker *b) {
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                /* It must not outlive us (a next broker starts its own). */
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                broker_exec_with_fd(b, b->config.cache_path, b->cache_listen_fd, "cache");
        }
        b->cache_pid = pid;
        log_debug("Started sbx-cache (pid %d).", (int) pid);
        return 0;
}

int broker_cache_start(Broker *b) {
        int r;

        if (b->config.cache_socket && *b->config.cache_socket)
                return 0; /* a system sbx-cache (sbx-cache.socket) */
        r = cache_listen(b);
        if (r < 0)
                return log_error_errno(r, "Failed to listen for sbx-cache on %s/" SBX_CACHE_SOCKET_NAME ": %m",
                                       b->config.runtime_dir);
        r = cache_spawn(b);
        if (r < 0)
                return log_error_errno(r, "Failed to start sbx-cache: %m");
        return 0;
}

static int on_restart(sd_event_source *s, uint64_t usec, void *userdata) {
        Broker *b = userdata;
        (void) s;
        (void) usec;

        b->cache_restart = sd_event_source_disable_unref(b->cache_restart);
        if (b->cache_listen_fd >= 0 && b->cache_pid == 0 && cache_spawn(b) < 0)
                log_warning_errno(errno, "Failed to restart sbx-cache: %m");
        return 0;
}

bool broker_cache_child_exited(Broker *b, pid_t pid, int status) {
        if (pid != b->cache_pid || pid == 0)
                return false;
        b->cache_pid = 0;
        if (b->cache_listen_fd < 0)
                return true; /* stopping */
        log_warning("sbx-cache (pid %d) %s %d; restarting it in 1 s. Snapshots are not used meanwhile.", (int) pid,
                    WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        b->cache_restarts++;
        if (!b->cache_restart && sd_event_add_time_relative(b->event, &b->cache_restart, CLOCK_MONOTONIC,
                                                            CACHE_RESTART_USEC, 0, on_restart, b) < 0)
                log_warning("Cannot schedule the restart of sbx-cache.");
        return true;
}

void broker_cache_stop(Broker *b) {
        b->cache_restart = sd_event_source_disable_unref(b->cache_restart);
        b->cache_listen_fd = safe_close(b->cache_listen_fd);
        if (b->cache_pid > 0) {
                (void) kill(b->cache_pid, SIGTERM);
                /* Its ingests are children of its own; it stops within a moment. */
                for (int i = 0; i < 50 && waitpid(b->cache_pid, NULL, WNOHANG) == 0; i++)
                        (void) usleep(20 * 1000);
                b->cache_pid = 0;
        }
}
