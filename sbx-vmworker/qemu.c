/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "proto.h"
#include "qemu.h"

/* Caps QEMU's block I/O thread pool so the process fits its pids.max. */
#define QEMU_THREAD_POOL_MAX 8
/* TCG translation cache, MiB: bounded so the VM fits its memory limit (default is 1 GiB). */
#define QEMU_TCG_TB_SIZE_MB 64

void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

typedef struct ArgvBuilder {
        char **argv;
        size_t n;
        int error;
} ArgvBuilder;

static void argv_add(ArgvBuilder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argv_add(ArgvBuilder *b, const char *fmt, ...) {
        va_list ap;
        char *s;

        if (b->error)
                return;
        char **l = reallocarray(b->argv, b->n + 2, sizeof(char *));
        if (!l) {
                b->error = -ENOMEM;
                return;
        }
        b->argv = l;
        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0) {
                b->error = -ENOMEM;
                return;
        }
        b->argv[b->n++] = s;
        b->argv[b->n] = NULL;
}

/* QEMU's option parser splits on ','; a literal comma in a value is written ",,". */
static char *qemu_escape_commas(const char *s) {
        size_t extra = 0;
        for (const char *p = s; *p; p++)
                extra += *p == ',';
        char *out = malloc(strlen(s) + extra + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                *o++ = *p;
                if (*p == ',')
                        *o++ = ',';
        }
        *o = 0;
        return out;
}

int qemu_build_argv(const QemuOptions *o, char ***ret) {
        _cleanup_free_ char *rootfs = qemu_escape_commas(o->rootfs);
        ArgvBuilder b = {};

        if (!rootfs)
                return -ENOMEM;

        argv_add(&b, "%s", o->binary);
        argv_add(&b, "-M");
        argv_add(&b, "microvm,isa-serial=on");
        if (o->accel == SBX_ACCEL_KVM) {
                argv_add(&b, "-accel");
                argv_add(&b, "kvm");
                argv_add(&b, "-cpu");
                argv_add(&b, "host");
        } else {
                argv_add(&b, "-accel");
                argv_add(&b, "tcg,tb-size=%d", QEMU_TCG_TB_SIZE_MB);
                argv_add(&b, "-cpu");
                argv_add(&b, "max");
        }
        argv_add(&b, "-m");
        argv_add(&b, "%" PRIu32 "M", o->memory_mb);
        argv_add(&b, "-smp");
        argv_add(&b, "%" PRIu32, o->vcpus);
        argv_add(&b, "-nodefaults");
        argv_add(&b, "-no-user-config");
        argv_add(&b, "-display");
        argv_add(&b, "none");
        argv_add(&b, "-no-reboot");
        argv_add(&b, "-object");
        argv_add(&b, "main-loop,id=main-loop,thread-pool-min=0,thread-pool-max=%d", QEMU_THREAD_POOL_MAX);
        if (o->sandbox) {
                argv_add(&b, "-sandbox");
                argv_add(&b, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        }

        /* Serial console: a socket we drain into a ring buffer for diagnostics. */
        argv_add(&b, "-chardev");
        argv_add(&b, "socket,id=console,fd=%d", QEMU_CONSOLE_FD);
        argv_add(&b, "-serial");
        argv_add(&b, "chardev:console");

        argv_add(&b, "-kernel");
        argv_add(&b, "%s", o->kernel);
        argv_add(&b, "-initrd");
        argv_add(&b, "%s", o->initrd);
        argv_add(&b, "-append");
        if (o->accel != SBX_ACCEL_KVM && o->tsc_khz > 0)
                argv_add(&b, "console=ttyS0 quiet panic=-1 tsc_early_khz=%" PRIu32 "%s%s", o->tsc_khz,
                         o->cmdline_extra ? " " : "", o->cmdline_extra ?: "");
        else
                argv_add(&b, "console=ttyS0 quiet panic=-1%s%s", o->cmdline_extra ? " " : "", o->cmdline_extra ?: "");

        argv_add(&b, "-drive");
        argv_add(&b, "id=root,file=%s,format=raw,if=none,readonly=on", rootfs);
        argv_add(&b, "-device");
        argv_add(&b, "virtio-blk-device,drive=root");
        argv_add(&b, "-device");
        argv_add(&b, "virtio-rng-device");

        /* The agent channel: one end of a socketpair, so there is no socket file to leak. */
        argv_add(&b, "-device");
        argv_add(&b, "virtio-serial-device");
        argv_add(&b, "-chardev");
        argv_add(&b, "socket,id=agent,fd=%d", QEMU_AGENT_FD);
        argv_add(&b, "-device");
        argv_add(&b, "virtserialport,chardev=agent,name=%s", SBX_AGENT_PORT_NAME);

        if (b.error) {
                strv_free(b.argv);
                return b.error;
        }
        *ret = b.argv;
        return 0;
}

/* Runs in the forked child: only async-signal-safe calls until exec. */
_noreturn_ static void qemu_child(char **argv, int agent_fd, int console_fd, int stderr_fd, int go_fd,
                                  pid_t parent) {
        sigset_t none;
        char go = 0;
        ssize_t n;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(126);
        /* The worker may have died between fork() and prctl(). */
        if (getppid() != parent)
                _exit(126);

        /* Wait until the worker has put us into the VM's cgroups. */
        while ((n = read(go_fd, &go, 1)) < 0 && errno == EINTR)
                ;
        if (n != 1 || go != 'g')
                _exit(126);

        /* Terminal signals go to the worker, which cleans up; it kills us. */
        (void) setsid();
        /* A crashing QEMU must not write the guest's memory to disk. */
        (void) setrlimit(RLIMIT_CORE, &(struct rlimit) {});

        for (int sig = 1; sig < _NSIG; sig++)
                (void) signal(sig, SIG_DFL);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);

        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0)
                _exit(126);

        /* Move the sources above the targets first, so dup2() cannot clobber one. */
        int high_agent = fcntl(agent_fd, F_DUPFD_CLOEXEC, 10);
        int high_console = fcntl(console_fd, F_DUPFD_CLOEXEC, 10);
        int high_stderr = fcntl(stderr_fd, F_DUPFD_CLOEXEC, 10);
        if (high_agent < 0 || high_console < 0 || high_stderr < 0)
                _exit(126);
        if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(high_stderr, STDOUT_FILENO) < 0 ||
            dup2(high_stderr, STDERR_FILENO) < 0 || dup2(high_agent, QEMU_AGENT_FD) < 0 ||
            dup2(high_console, QEMU_CONSOLE_FD) < 0)
                _exit(126);
        /* Everything else is closed on exec. */
        if (close_range(QEMU_CONSOLE_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                for (int fd = QEMU_CONSOLE_FD + 1; fd < 4096; fd++)
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);

        execvp(argv[0], argv);
        /* stderr is the worker's pipe: it will quote this. */
        static const char msg[] = "sbx-vmworker: failed to execute QEMU\n";
        (void) !write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(127);
}

int qemu_spawn(char **argv, int agent_fd, int console_fd, int stderr_fd, QemuAttachFunc attach, void *userdata,
               pid_t *ret_pid) {
        _cleanup_close_pair_ int go[2] = { -EBADF, -EBADF };
        pid_t parent = getpid();

        if (pipe2(go, O_CLOEXEC) < 0)
                return -errno;

        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                go[1] = safe_close(go[1]);
                qemu_child(argv, agent_fd, console_fd, stderr_fd, go[0], parent);
        }

        if (attach)
                attach(pid, userdata);
        if (write(go[1], "g", 1) != 1) {
                int r = -errno;
                qemu_kill_and_reap(&pid, NULL);
                return r;
        }
        *ret_pid = pid;
        return 0;
}

void qemu_kill_and_reap(pid_t *pid, int *ret_status) {
        int status = 0;

        if (*pid <= 0)
                return;
        (void) kill(*pid, SIGKILL);
        while (waitpid(*pid, &status, 0) < 0) {
                if (errno != EINTR) {
                        /* Already reaped elsewhere (or not our child): nothing left to wait for. */
                        log_debug_errno(errno, "Failed to reap QEMU %d: %m", (int) *pid);
                        break;
                }
        }
        *pid = 0;
        if (ret_status)
                *ret_status = status;
}

const char *qemu_describe_status(int status, char *buf, size_t size) {
        if (WIFEXITED(status))
                snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                snprintf(buf, size, "was killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ?: "?");
        else
                snprintf(buf, size, "ended with wait status 0x%x", status);
        return buf;
}
