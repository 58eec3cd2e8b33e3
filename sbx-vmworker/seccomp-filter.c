/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if HAVE_LIBSECCOMP
#include <seccomp.h>
#endif

#include "log.h"
#include "macro.h"
#include "seccomp-filter.h"

static bool applied;

bool worker_seccomp_applied(void) {
        return applied;
}

#if HAVE_LIBSECCOMP

static scmp_filter_ctx filter;

/* What the worker calls once it serves the VM: derived with strace -f over runs and sessions (file
 * transfers from/to regular files and pipes, a timeout, QEMU killed, a boot retry), on x86-64 with glibc
 * 2.36 and libsystemd 252, plus a few calls of paths strace did not reach (marked "unseen"). Argument
 * filters below: mmap/mprotect never PROT_EXEC, openat read-only, socket/socketpair
 * AF_UNIX only (and there is no connect() or bind(), so such a socket reaches nothing). */
static const char *const allowed[] = {
        /* memory (malloc); mmap and mprotect: see below */
        "brk", "munmap", "mremap", "madvise",
        /* I/O on fds the worker already holds: broker, guest, console, QEMU's stderr, caller fds */
        "read", "write", "writev", "recvmsg", "sendmsg", "recvfrom", "sendto",
        "close", "fcntl", "newfstatat", "fstat",
        /* sd-event */
        "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "timerfd_create", "timerfd_settime",
        "timerfd_gettime", "signalfd4", "poll", "ppoll", "rt_sigprocmask", "rt_sigreturn",
        "clock_gettime", "clock_nanosleep", "nanosleep",
        /* QEMU's lifetime: kill, reap, sd-event's child source */
        "kill", "wait4", "waitid", "pidfd_open", "pidfd_send_signal",
        /* cgroups: attach (boot retry) and statistics via openat (see below), removal */
        "rmdir",
        /* SEED, identity, locks, exit */
        "getrandom", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid", "futex", "exit", "exit_group",
};

int worker_seccomp_prepare(void) {
        int r;

        if (filter)
                return 0;
        filter = seccomp_init(SCMP_ACT_ERRNO(EPERM));
        if (!filter)
                return log_error_errno(ENOMEM, "Failed to allocate the seccomp filter: %m");

        for (size_t i = 0; i < ELEMENTSOF(allowed); i++) {
                int nr = seccomp_syscall_resolve_name(allowed[i]);
                if (nr == __NR_SCMP_ERROR) {
                        log_debug("seccomp: system call %s unknown here, not allowed.", allowed[i]);
                        continue;
                }
                r = seccomp_rule_add(filter, SCMP_ACT_ALLOW, nr, 0);
                if (r < 0)
                        goto fail;
        }
        /* Sockets: AF_UNIX only (no AF_INET, AF_INET6, AF_NETLINK, AF_PACKET ...). */
        r = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
        if (r >= 0)
                r = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
        /* No executable memory: nothing the worker does needs it (no JIT, no dlopen() this late). */
        if (r >= 0)
                r = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                                     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        if (r >= 0)
                r = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                                     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
        /* Reading existing files only (cgroup statistics and cgroup.procs): O_RDONLY, no O_CREAT, O_TRUNC or
         * O_TMPFILE. (cgroup.procs is opened for writing before the filter, see vm_cgroup_open_procs().) */
        if (r >= 0)
                r = seccomp_rule_add(filter, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
                                     SCMP_A2(SCMP_CMP_MASKED_EQ,
                                             (scmp_datum_t) (O_ACCMODE | O_CREAT | O_TRUNC | O_TMPFILE), 0));
        if (r < 0)
                goto fail;
        /* Everything else, ptrace, mount, umount2, kexec_load, init_module, finit_module, bpf,
         * perf_event_open, keyctl, add_key, clone, execve ..., is the default: EPERM. (libseccomp refuses
         * rules whose action is the default action, so they are not listed one by one; the self-test
         * checks them.) */
        return 0;

fail:
        seccomp_release(filter);
        filter = NULL;
        return log_error_errno(-r, "Failed to build the seccomp filter: %m");
}

int worker_seccomp_apply(void) {
        int r;

        if (applied)
                return 0;
        r = worker_seccomp_prepare();
        if (r < 0)
                return r;
        /* Sets PR_SET_NO_NEW_PRIVS too (SCMP_FLTATR_CTL_NNP defaults to on). */
        r = seccomp_load(filter);
        if (r < 0)
                return log_error_errno(-r, "Failed to load the seccomp filter: %m");
        seccomp_release(filter);
        filter = NULL;
        applied = true;
        log_debug("seccomp filter applied (%zu system calls allowed, plus socket/socketpair AF_UNIX, mmap/mprotect without PROT_EXEC, openat read-only).",
                  ELEMENTSOF(allowed) + 5);
        return 0;
}

#else

int worker_seccomp_prepare(void) {
        return 0;
}

int worker_seccomp_apply(void) {
        static bool logged;
        if (!logged)
                log_info("Built without libseccomp: the worker runs without its seccomp filter.");
        logged = true;
        return 0;
}

#endif

static bool expect_eperm(const char *what, long r) {
        bool ok = r < 0 && errno == EPERM;
        printf("%-40s %s (%s)\n", what, ok ? "denied" : "NOT DENIED", r < 0 ? strerror(errno) : "succeeded");
        return ok;
}

static bool expect_ok(const char *what, long r) {
        bool ok = r >= 0;
        printf("%-40s %s (%s)\n", what, ok ? "allowed" : "FAILED", r < 0 ? strerror(errno) : "ok");
        return ok;
}

int worker_seccomp_selftest(void) {
#if !HAVE_LIBSECCOMP
        printf("Built without libseccomp: nothing to test.\n");
        return 77;
#else
        bool ok = true;
        int sv[2], fd;
        char c = 'x';

        if (worker_seccomp_apply() < 0 || !applied) {
                printf("Failed to apply the seccomp filter.\n");
                return 1;
        }

        ok &= expect_eperm("ptrace(PTRACE_TRACEME)", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok &= expect_eperm("socket(AF_INET)", fd);
        fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ok &= expect_eperm("socket(AF_INET6)", fd);
        fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
        ok &= expect_eperm("socket(AF_NETLINK)", fd);
        fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
        ok &= expect_eperm("socket(AF_PACKET)", fd);
        ok &= expect_eperm("socketpair(AF_INET)", socketpair(AF_INET, SOCK_STREAM, 0, sv));
        ok &= expect_eperm("mount(tmpfs)", mount("none", "/mnt", "tmpfs", 0, NULL));
        ok &= expect_eperm("umount2", umount2("/mnt", MNT_DETACH));
        ok &= expect_eperm("bpf", syscall(SYS_bpf, 0, NULL, 0));
        ok &= expect_eperm("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
        ok &= expect_eperm("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
        ok &= expect_eperm("add_key", syscall(SYS_add_key, "user", "x", "y", 1, 0));
        ok &= expect_eperm("init_module", syscall(SYS_init_module, NULL, 0, ""));
        ok &= expect_eperm("finit_module", syscall(SYS_finit_module, -1, "", 0));
        ok &= expect_eperm("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
        long pid = syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
        if (pid == 0)
                _exit(0);
        ok &= expect_eperm("fork (clone)", pid);
        ok &= expect_eperm("execve", syscall(SYS_execve, "/bin/true", (char *[]) { (char *) "true", NULL }, NULL));
        ok &= expect_eperm("setuid(0)", syscall(SYS_setuid, 0));
        ok &= expect_eperm("unshare", syscall(SYS_unshare, 0));
        ok &= expect_eperm("connect (any)", connect(-1, NULL, 0));
        ok &= expect_eperm("mmap(PROT_EXEC)", mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                                                   0) == MAP_FAILED ? -1 : 0);
        ok &= expect_eperm("openat(O_CREAT)", open("/tmp/sbx-seccomp-selftest", O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        ok &= expect_eperm("openat(/etc/hostname, O_WRONLY)", open("/etc/hostname", O_WRONLY | O_CLOEXEC));
        ok &= expect_eperm("openat(/etc/hostname, O_RDWR)", open("/etc/hostname", O_RDWR | O_CLOEXEC));
        ok &= expect_eperm("open(/etc/passwd) via legacy open", syscall(SYS_open, "/etc/passwd", O_RDONLY));

        ok &= expect_ok("socketpair(AF_UNIX)", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        if (ok) {
                ok &= expect_ok("write", write(sv[0], &c, 1));
                ok &= expect_ok("read", read(sv[1], &c, 1));
                close(sv[0]);
                close(sv[1]);
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ok &= expect_ok("socket(AF_UNIX)", fd);
        if (fd >= 0)
                close(fd);
        fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
        ok &= expect_ok("openat(/proc/self/stat)", fd);
        if (fd >= 0)
                close(fd);
        struct timespec ts;
        ok &= expect_ok("clock_gettime", clock_gettime(CLOCK_MONOTONIC, &ts));
        void *p = malloc(1 << 20); /* mmap */
        ok &= expect_ok("malloc(1 MiB)", p ? 0 : -1);
        free(p);
        ok &= expect_ok("getpid", getpid());

        printf("%s\n", ok ? "seccomp self-test passed" : "seccomp self-test FAILED");
        return ok ? 0 : 1;
#endif
}
