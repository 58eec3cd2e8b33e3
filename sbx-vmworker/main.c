/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-vmworker: runs one piece of code in one throwaway QEMU microVM.
 *
 *   sbx-vmworker                 serve the connected broker socket passed as fd 3
 *                                (LISTEN_FDS=1, systemd socket activation with Accept=yes)
 *   sbx-vmworker --probe-accel   print "kvm" or "tcg": the accelerator that boots a guest here
 *
 * See docs/worker.md. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "accel.h"
#include "cgroup.h"
#include "config.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "sbx-error.h"
#include "seccomp-filter.h"
#include "worker.h"

static void config_donep(SbxConfig *c) {
        sbx_config_done(c);
}

static void help(void) {
        printf("Usage: sbx-vmworker [--probe-accel | --remove-stale]\n"
               "\n"
               "Runs one sandboxed execution in a QEMU microVM for sbx-broker, which hands\n"
               "over a connected socket as fd 3 (LISTEN_FDS=1).\n"
               "\n"
               "  --probe-accel  Print the accelerator that boots a guest here (kvm or tcg)\n"
               "  --remove-stale Remove VM cgroups left by workers that were killed\n"
               "  -h --help      Show this help\n"
               "     --version   Show the version\n"
               "\n"
               "Environment: SBX_CONFIG (configuration file), SBX_ACCEL, SBX_LOG_LEVEL.\n");
}

/* Refuses peers other than root and our own user: only the broker may drive us. */
static int check_peer(int fd) {
        struct ucred cred;
        socklen_t len = sizeof cred;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return log_error_errno(errno, "Failed to get the peer's credentials: %m");
        log_info("Serving pid %d (uid %u).", (int) cred.pid, (unsigned) cred.uid);
        if (cred.uid != 0 && cred.uid != geteuid()) {
                log_error("Refusing a connection from uid %u (pid %d): only root or uid %u may run VMs here.",
                          (unsigned) cred.uid, (int) cred.pid, (unsigned) geteuid());
                return -EPERM;
        }
        return 0;
}

static int get_broker_fd(void) {
        int n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "Failed to read LISTEN_FDS: %m");
        if (n != 1) {
                log_error("Expected exactly one connected socket as fd 3 (LISTEN_FDS=1, LISTEN_PID=our pid), got %d. "
                          "sbx-vmworker is started by sbx-broker or by sbx-vmworker.socket.",
                          n);
                return -EBADF;
        }
        int fd = SD_LISTEN_FDS_START;
        int r = sd_is_socket_unix(fd, SOCK_STREAM, 0, NULL, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to check fd %d: %m", fd);
        if (r == 0) {
                log_error("fd %d is not a connected AF_UNIX stream socket.", fd);
                return -ENOTSOCK;
        }
        /* QEMU must not inherit the broker connection. */
        r = fd_set_cloexec(fd, 1);
        if (r < 0)
                return log_error_errno(r, "Failed to set FD_CLOEXEC on fd %d: %m", fd);
        return fd;
}

static int run_probe(const SbxConfig *config) {
        uint64_t start = now_usec(CLOCK_MONOTONIC);
        SbxAccel a = accel_probe(config);

        log_debug("Accelerator probe took %" PRIu64 " ms.", (now_usec(CLOCK_MONOTONIC) - start) / 1000u);
        printf("%s\n", sbx_accel_to_string(a));
        return fflush(stdout) == 0 ? 0 : 1;
}

static int run_worker(const SbxConfig *config) {
        _cleanup_(worker_freep) Worker *w = NULL;
        sd_event *event = NULL;
        sigset_t mask;
        int fd, r;

        fd = get_broker_fd();
        if (fd < 0)
                return 1;
        r = check_peer(fd);
        if (r < 0) {
                safe_close(fd);
                return 1;
        }

        /* Delivered through sd-event: the signals and QEMU's exit. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                safe_close(fd);
                return log_error_errno(errno, "Failed to block signals: %m"), 1;
        }

        /* Built now, loaded once the request is read and QEMU forked (setup.c). */
        if (worker_seccomp_prepare() < 0) {
                safe_close(fd);
                return 1;
        }

        r = sd_event_new(&event);
        if (r < 0) {
                safe_close(fd);
                return log_error_errno(r, "Failed to allocate the event loop: %m"), 1;
        }
        r = worker_new(event, config, fd, &w);
        if (r < 0) {
                sd_event_unref(event);
                return log_error_errno(r, "Failed to set up the worker: %m"), 1;
        }
        (void) sd_notify(0, "READY=1\nSTATUS=Waiting for the run request");

        r = sd_event_loop(event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        w = worker_free(w);
        sd_event_unref(event);
        return r < 0 ? 1 : 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "probe-accel", no_argument, NULL, 'P' },
                { "remove-stale", no_argument, NULL, 'R' },
                { "seccomp-selftest", no_argument, NULL, 'S' }, /* hidden: for the unit test */
                {},
        };
        _cleanup_(config_donep) SbxConfig config = {};
        bool probe = false, remove_stale = false;
        static char ident[64];
        int c, r;

        snprintf(ident, sizeof ident, "sbx-vmworker[%d]", (int) getpid());
        log_set_ident(ident);
        log_parse_environment();

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("sbx-vmworker %s\n", SBX_VERSION);
                        return 0;
                case 'P':
                        probe = true;
                        break;
                case 'R':
                        remove_stale = true;
                        break;
                case 'S':
                        return worker_seccomp_selftest();
                default:
                        return 64;
                }
        if (optind < argc) {
                log_error("Unexpected argument: %s", argv[optind]);
                return 64;
        }

        /* A vanished peer shows up as EPIPE, never as a signal. */
        (void) signal(SIGPIPE, SIG_IGN);

        _cleanup_(sbx_error_done) SbxError error = {};
        r = sbx_config_load(&config, NULL, &error);
        if (r < 0) {
                log_error_errno(r, "%s", sbx_error_message(&error));
                return 1;
        }

        if (probe)
                return run_probe(&config);
        if (remove_stale) {
                /* Run by the broker after a worker died by a signal and could not clean up. */
                vm_cgroup_remove_stale(config.cgroup_parent);
                return 0;
        }
        return run_worker(&config);
}
