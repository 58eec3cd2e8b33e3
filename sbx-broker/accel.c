/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "fdio.h"
#include "log.h"
#include "macro.h"

/* The probe boots the guest under KVM once; it can hang on hosts where
 * /dev/kvm exists but does not work (nested PVM), so it has a deadline. */
#define PROBE_TIMEOUT_MS 30000

/* Everything that could change the answer: host kernel, guest kernel and initrd, QEMU. */
static void probe_key(const SbxConfig *c, char *buf, size_t size) {
        struct utsname u = {};
        struct stat k = {}, i = {};

        (void) uname(&u);
        (void) stat(c->kernel, &k);
        (void) stat(c->initrd, &i);
        snprintf(buf, size, "v1|%s|%s|%lld|%lld|%lld|%lld|%s", u.release, c->kernel, (long long) k.st_size,
                 (long long) k.st_mtime, (long long) i.st_size, (long long) i.st_mtime, c->qemu);
}

static int run_probe(Broker *b, SbxAccel *ret) {
        int pfd[2];
        pid_t pid;
        char out[64] = {};
        size_t got = 0;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return -errno;
        }
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (dup2(pfd[1], STDOUT_FILENO) < 0)
                        _exit(127);
                if (b->config_path)
                        setenv("SBX_CONFIG", b->config_path, 1);
                execl(b->config.worker_path, b->config.worker_path, "--probe-accel", (char *) NULL);
                _exit(127);
        }
        close(pfd[1]);

        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + PROBE_TIMEOUT_MS * 1000ull;
        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        break;
                struct pollfd p = { .fd = pfd[0], .events = POLLIN };
                int k = poll(&p, 1, (int) ((deadline - now) / 1000u) + 1);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                ssize_t n = read(pfd[0], out + got, sizeof out - 1 - got);
                if (n <= 0)
                        break;
                got += (size_t) n;
        }
        close(pfd[0]);
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);

        out[strcspn(out, "\n")] = 0;
        if (strcmp(out, "kvm") == 0)
                *ret = SBX_ACCEL_KVM;
        else if (strcmp(out, "tcg") == 0)
                *ret = SBX_ACCEL_TCG;
        else
                return -EIO;
        return 0;
}

int broker_resolve_accel(Broker *b) {
        char key[1024], path[1024], cached[1100];
        SbxAccel a = SBX_ACCEL_TCG;
        int r;

        if (b->config.accel != SBX_ACCEL_AUTO) {
                b->accel = b->config.accel;
                log_info("Accelerator: %s (configured).", sbx_accel_to_string(b->accel));
                return 0;
        }
        if (access("/dev/kvm", R_OK | W_OK) < 0) {
                b->accel = SBX_ACCEL_TCG;
                log_info("Accelerator: tcg (/dev/kvm is not usable: %m).");
                return 0;
        }

        probe_key(&b->config, key, sizeof key);
        snprintf(path, sizeof path, "%s/accel-probe", b->config.state_dir);
        if (read_small_file(path, cached, sizeof cached) > 0) {
                char *sp = strchr(cached, ' ');
                cached[strcspn(cached, "\n")] = 0;
                if (sp && strcmp(sp + 1, key) == 0) {
                        *sp = 0;
                        if (sbx_accel_from_string(cached, &a) == 0 && a != SBX_ACCEL_AUTO) {
                                b->accel = a;
                                log_info("Accelerator: %s (cached probe).", sbx_accel_to_string(a));
                                return 0;
                        }
                }
        }

        uint64_t t0 = now_usec(CLOCK_MONOTONIC);
        r = run_probe(b, &a);
        if (r < 0) {
                log_warning_errno(r, "KVM probe failed, using tcg: %m");
                a = SBX_ACCEL_TCG;
        }
        b->accel = a;
        log_info("Accelerator: %s (probed in %llu ms; override with SBX_ACCEL or accel=).", sbx_accel_to_string(a),
                 (unsigned long long) ((now_usec(CLOCK_MONOTONIC) - t0) / 1000u));

        if (r >= 0) {
                _cleanup_fclose_ FILE *f = NULL;
                (void) mkdir(b->config.state_dir, 0755);
                f = fopen(path, "we");
                if (f)
                        fprintf(f, "%s %s\n", sbx_accel_to_string(a), key);
        }
        return 0;
}
