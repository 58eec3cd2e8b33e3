/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>

#include "log.h"
#include "macro.h"
#include "proto.h"
#include "qemu.h"

int qemu_resolve_creds(QemuCreds *ret) {
        QemuCreds c = {};

        if (geteuid() != 0) {
                *ret = c;
                return 0;
        }
        errno = 0;
        struct passwd *pw = getpwnam("sbx-qemu");
        if (pw && pw->pw_uid != 0 && pw->pw_gid != 0) {
                c.uid = pw->pw_uid;
                c.gid = pw->pw_gid;
                snprintf(c.user, sizeof c.user, "sbx-qemu");
        } else {
                c.uid = c.gid = 65534;
                snprintf(c.user, sizeof c.user, "nobody");
        }
        errno = 0;
        struct group *gr = getgrnam("kvm");
        if (gr && gr->gr_gid != 0)
                c.groups[c.n_groups++] = gr->gr_gid;
        c.drop = true;
        log_debug("QEMU will run as %s (uid %u, gid %u%s).", c.user, (unsigned) c.uid, (unsigned) c.gid,
                  c.n_groups ? ", group kvm" : "");
        *ret = c;
        return 0;
}

int qemu_creds_take_vm_uid(QemuCreds *c, const char *lock_dir, uint32_t first, uint32_t count, int *ret_lock_fd) {
        _cleanup_close_ int dir_fd = -EBADF;

        if (!c->drop || count == 0)
                return 0;
        if (mkdir(lock_dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        dir_fd = open(lock_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dir_fd < 0)
                return -errno;
        /* Lowest free first: the lock files stay as many as VMs ever ran at once. A uid is free once
         * its worker is gone, and with it its QEMU (PDEATHSIG, and the cgroup is destroyed). */
        for (uint32_t i = 0; i < count; i++) {
                uint32_t uid = first + i;
                char name[16];
                snprintf(name, sizeof name, "%u", uid);
                _cleanup_close_ int fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return -errno;
                /* Held until this worker exits, however it exits. */
                if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                        if (errno == EWOULDBLOCK)
                                continue;
                        return -errno;
                }
                c->uid = (uid_t) uid;
                c->gid = (gid_t) uid;
                snprintf(c->user, sizeof c->user, "uid %u", uid);
                *ret_lock_fd = TAKE_FD(fd);
                log_debug("QEMU will run as uid/gid %u, this VM's own.", uid);
                return 0;
        }
        return -EUSERS;
}

/* Child only: a fixed message on stderr (the worker's pipe, which quotes it), then exit. */
_noreturn_ static void child_die(const char *msg) {
        (void) !write(STDERR_FILENO, msg, strlen(msg));
        _exit(126);
}

/* Child only: closes every fd from 3 on but the n in keep (sorted here, without qsort: fork-safe). */
static void close_all_but(int *keep, size_t n) {
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
                        int t = keep[j];
                        keep[j] = keep[j - 1];
                        keep[j - 1] = t;
                }
        unsigned lo = 3;
        for (size_t i = 0; i < n; i++) {
                if (keep[i] < 0 || (unsigned) keep[i] < lo)
                        continue;
                if ((unsigned) keep[i] > lo)
                        (void) close_range(lo, (unsigned) keep[i] - 1u, 0);
                lo = (unsigned) keep[i] + 1u;
        }
        /* On failure (old kernel) the rest is still closed on exec. */
        (void) close_range(lo, ~0U, 0);
}

/* Child only, as root: give up root for good. The bounding set goes first (dropping needs CAP_SETPCAP);
 * setresuid() to non-zero uids then clears the permitted and effective sets. */
static void drop_privileges(const QemuCreds *c, pid_t parent) {
        for (unsigned long cap = 0; cap < 64; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        child_die("sbx-vmworker: failed to drop the capability bounding set\n");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                child_die("sbx-vmworker: failed to clear the ambient capabilities\n");
        if (setgroups(c->n_groups, c->groups) < 0)
                child_die("sbx-vmworker: failed to set QEMU's supplementary groups\n");
        if (setresgid(c->gid, c->gid, c->gid) < 0)
                child_die("sbx-vmworker: failed to set QEMU's gid\n");
        if (setresuid(c->uid, c->uid, c->uid) < 0)
                child_die("sbx-vmworker: failed to set QEMU's uid\n");
        /* Make sure: there is no way back. */
        if (setresuid(0, 0, 0) == 0 || setresgid(0, 0, 0) == 0)
                child_die("sbx-vmworker: QEMU could regain root; not starting it\n");
        /* A change of credentials clears the parent-death signal: set it again, and check the parent is
         * still there (it may have died in between). PID 1 of a new namespace sees no parent (0). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || (parent > 0 && getppid() != parent))
                _exit(126);
}

/* Child only, unprivileged worker in a user namespace of its own: QEMU keeps our uid (mapped to
 * itself) but must not keep the capabilities the new namespace gave us. Drops the bounding set and
 * ambient set, then clears the rest; exec as a non-zero uid would clear them too. */
static void drop_userns_capabilities(pid_t parent) {
        struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = {};

        for (unsigned long cap = 0; cap < 64; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                        child_die("sbx-vmworker: failed to drop the capability bounding set\n");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                child_die("sbx-vmworker: failed to clear the ambient capabilities\n");
        if (syscall(SYS_capset, &hdr, data) < 0)
                child_die("sbx-vmworker: failed to clear QEMU's capabilities\n");
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || (parent > 0 && getppid() != parent))
                _exit(126);
}

static bool write_proc_self(const char *name, const char *text, size_t len) {
        char path[64] = "/proc/self/";
        size_t n = strlen(path);
        for (size_t i = 0; name[i] && n + 1 < sizeof path; i++)
                path[n++] = name[i];
        path[n] = 0;
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        bool ok = write(fd, text, len) == (ssize_t) len;
        close(fd);
        return ok;
}

/* Formats "ID ID 1\n" without stdio (we are between fork and exec). */
static size_t format_id_map(unsigned id, char buf[40]) {
        char digits[12];
        size_t nd = 0, n = 0;
        do
                digits[nd++] = (char) ('0' + id % 10);
        while ((id /= 10) && nd < sizeof digits);
        for (int k = 0; k < 2; k++) {
                for (size_t i = nd; i-- > 0;)
                        buf[n++] = digits[i];
                buf[n++] = ' ';
        }
        buf[n++] = '1';
        buf[n++] = '\n';
        return n;
}

/* Child only, unprivileged worker: the same namespaces a root worker gives QEMU (mount, IPC, and
 * network without a NIC), inside a new user namespace that maps only our own uid and gid. False
 * when the kernel or a sandbox (RestrictNamespaces=) does not allow it: QEMU then runs without. */
static bool enter_user_namespace(bool has_nic) {
        char map[40];
        uid_t uid = geteuid();
        gid_t gid = getegid();

        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWIPC | (has_nic ? 0 : CLONE_NEWNET)) < 0)
                return false;
        /* Without these maps we would be the overflow uid; an unmapped gid cannot be kept either. */
        if (!write_proc_self("setgroups", "deny", 4))
                child_die("sbx-vmworker: failed to deny setgroups in QEMU's user namespace\n");
        size_t n = format_id_map((unsigned) uid, map);
        if (!write_proc_self("uid_map", map, n))
                child_die("sbx-vmworker: failed to map QEMU's uid\n");
        n = format_id_map((unsigned) gid, map);
        if (!write_proc_self("gid_map", map, n))
                child_die("sbx-vmworker: failed to map QEMU's gid\n");
        return true;
}

/* The stand-in's view of QEMU, for its signal handler. */
static volatile pid_t qemu_in_pidns = 0;

static void forward_signal(int sig) {
        if (qemu_in_pidns > 0)
                (void) kill(qemu_in_pidns, sig);
}

/* Child only: QEMU becomes PID 1 of a PID namespace of its own, as a child of this process, which
 * stays behind as the worker's "QEMU": it holds nothing, runs unprivileged, passes termination
 * signals on, and ends the way QEMU ended. Killing it kills QEMU (its parent-death signal). Returns
 * true in the new child, false when there is no new namespace; never returns in the stand-in. */
static bool enter_pid_namespace(const QemuCreds *creds, bool in_userns, pid_t worker) {
        pid_t child;
        int status;

        if (unshare(CLONE_NEWPID) < 0)
                return false; /* no privilege: QEMU runs in the worker's PID namespace */
        child = fork();
        if (child < 0)
                _exit(126);
        if (child == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                        _exit(126);
                return true;
        }
        qemu_in_pidns = child;
        (void) close_range(0, ~0U, 0);
        struct sigaction sa = { .sa_handler = forward_signal };
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGHUP, &sa, NULL);
        if (in_userns)
                drop_userns_capabilities(worker);
        else
                drop_privileges(creds, worker);
        while (waitpid(child, &status, 0) < 0)
                if (errno != EINTR)
                        _exit(126);
        if (WIFEXITED(status))
                _exit(WEXITSTATUS(status));
        /* Die of the same signal, so the worker reads the same story. */
        int sig = WTERMSIG(status);
        sigset_t one;
        (void) signal(sig, SIG_DFL);
        sigemptyset(&one);
        sigaddset(&one, sig);
        (void) sigprocmask(SIG_UNBLOCK, &one, NULL);
        (void) kill(getpid(), sig);
        _exit(128 + sig);
}

/* Child only, after the drop: -kernel and -initrd take paths, not fds. Where QEMU's user cannot read
 * the path (e.g. a directory on the way is 0700), use the inherited fd through /proc/self/fd/N
 * instead, which searches no directory (the file's own mode still applies). Keeping the path where it
 * works keeps the command line telling (ps, pkill -f <kernel>). */
_Static_assert(QEMU_KERNEL_FD == 5 && QEMU_INITRD_FD == 6, "fix_image_paths() hardcodes the fd numbers");
static void fix_image_paths(char **argv) {
        for (char **a = argv; *a && a[1]; a++) {
                if (strcmp(*a, "-kernel") == 0 && access(a[1], R_OK) < 0)
                        a[1] = (char *) "/proc/self/fd/5";
                else if (strcmp(*a, "-initrd") == 0 && access(a[1], R_OK) < 0)
                        a[1] = (char *) "/proc/self/fd/6";
        }
}

/* Runs in the forked child: only async-signal-safe calls until exec. */
_noreturn_ static void qemu_child(char **argv, int agent_fd, int console_fd, int stderr_fd, const QemuImages *images,
                                  const QemuExtraFds *extra, const QemuCreds *creds, int go_fd, pid_t parent) {
        sigset_t none;
        char go = 0;
        ssize_t n;
        bool in_pidns = false, in_userns = false;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                _exit(126);
        /* The worker may have died between fork() and prctl(). */
        if (getppid() != parent)
                _exit(126);

        /* While we wait (possibly a whole boot attempt), hold nothing of the worker's: not its other VM
         * channels, not the broker connection. */
        int keep[10] = { agent_fd, console_fd, stderr_fd, go_fd }, n_keep = 4;
        if (images) {
                keep[n_keep++] = images->kernel_fd;
                keep[n_keep++] = images->initrd_fd;
                keep[n_keep++] = images->rootfs_fd;
        }
        const int extra_in[3] = { extra ? extra->qmp_fd : -1, extra ? extra->ram_fd : -1, extra ? extra->state_fd : -1 };
        for (size_t i = 0; i < 3; i++)
                if (extra_in[i] >= 0)
                        keep[n_keep++] = extra_in[i];
        close_all_but(keep, (size_t) n_keep);

        /* Wait until the worker has put us into the VM's cgroups. */
        while ((n = read(go_fd, &go, 1)) < 0 && errno == EINTR)
                ;
        if (n != 1 || go != 'g')
                _exit(126);

        /* Namespaces of its own, while we are still root: QEMU sees none of the host's System V IPC,
         * its mount changes stay its own, and a VM without a NIC gets an empty network namespace
         * (a VM with one uses user networking: its sockets must be the host's, where sbx-netd
         * filters them). Best effort: an unprivileged worker cannot, and runs QEMU without. */
        bool has_nic = false;
        for (char **a = argv; *a; a++)
                if (strcmp(*a, "-netdev") == 0)
                        has_nic = true;
        if (creds && creds->drop) {
                if (unshare(CLONE_NEWNS | CLONE_NEWIPC | (has_nic ? 0 : CLONE_NEWNET)) == 0)
                        (void) mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
                /* And a PID namespace: QEMU sees no other process of the host. */
                in_pidns = enter_pid_namespace(creds, false, parent);
        } else if (geteuid() != 0) {
                /* An unprivileged worker (the systemd unit's sbx-qemu): the same namespaces, owned by a
                 * user namespace of QEMU's own. (Mounts there are slaves of ours: no MS_PRIVATE needed.) */
                in_userns = enter_user_namespace(has_nic);
                if (in_userns)
                        in_pidns = enter_pid_namespace(creds, true, parent);
        }

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
        int high_img[3] = { -1, -1, -1 };
        if (images) {
                high_img[0] = fcntl(images->kernel_fd, F_DUPFD_CLOEXEC, 10);
                high_img[1] = fcntl(images->initrd_fd, F_DUPFD_CLOEXEC, 10);
                high_img[2] = fcntl(images->rootfs_fd, F_DUPFD_CLOEXEC, 10);
                if (high_img[0] < 0 || high_img[1] < 0 || high_img[2] < 0)
                        _exit(126);
        }
        if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(high_stderr, STDOUT_FILENO) < 0 ||
            dup2(high_stderr, STDERR_FILENO) < 0 || dup2(high_agent, QEMU_AGENT_FD) < 0 ||
            dup2(high_console, QEMU_CONSOLE_FD) < 0)
                _exit(126);
        int high_extra[3] = { -1, -1, -1 };
        for (size_t i = 0; i < 3; i++)
                if (extra_in[i] >= 0 && (high_extra[i] = fcntl(extra_in[i], F_DUPFD_CLOEXEC, 20)) < 0)
                        _exit(126);
        if (images && (dup2(high_img[0], QEMU_KERNEL_FD) < 0 || dup2(high_img[1], QEMU_INITRD_FD) < 0 ||
                       dup2(high_img[2], QEMU_ROOTFS_FD) < 0))
                _exit(126);
        int last = images ? QEMU_ROOTFS_FD : QEMU_CONSOLE_FD;
        for (int i = 0; i < 3; i++)
                if (high_extra[i] >= 0) {
                        if (dup2(high_extra[i], QEMU_QMP_FD + i) < 0)
                                _exit(126);
                        last = QEMU_QMP_FD + i;
                } else
                        (void) fcntl(QEMU_QMP_FD + i, F_SETFD, FD_CLOEXEC); /* a gap: whatever is there goes */
        /* Everything else is closed on exec. */
        if (close_range((unsigned) last + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                for (int fd = last + 1; fd < 4096; fd++)
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);

        if (in_userns)
                drop_userns_capabilities(in_pidns ? 0 : parent);
        if (creds && creds->drop) {
                /* In the new PID namespace our parent is the stand-in, which getppid() cannot name. */
                drop_privileges(creds, in_pidns ? 0 : parent);
                /* The worker's cwd may be a directory QEMU's user cannot enter. */
                (void) !chdir("/");
        }
        if (images)
                fix_image_paths(argv);
        /* Nothing QEMU executes may gain privileges (QEMU's -sandbox also denies exec). */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_die("sbx-vmworker: failed to set PR_SET_NO_NEW_PRIVS\n");

        execvp(argv[0], argv);
        /* stderr is the worker's pipe: it will quote this. */
        static const char msg[] = "sbx-vmworker: failed to execute QEMU\n";
        (void) !write(STDERR_FILENO, msg, sizeof msg - 1);
        _exit(127);
}

int qemu_prepare(char **argv, int agent_fd, int console_fd, int stderr_fd, const QemuImages *images,
                 const QemuExtraFds *extra, const QemuCreds *creds, QemuChild *ret) {
        _cleanup_close_pair_ int go[2] = { -EBADF, -EBADF };
        pid_t parent = getpid();

        if (pipe2(go, O_CLOEXEC) < 0)
                return -errno;

        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                go[1] = safe_close(go[1]);
                qemu_child(argv, agent_fd, console_fd, stderr_fd, images, extra, creds, go[0], parent);
        }
        *ret = (QemuChild) { .pid = pid, .go_fd = TAKE_FD(go[1]) };
        return 0;
}

int qemu_release(QemuChild *c, QemuAttachFunc attach, void *userdata, pid_t *ret_pid) {
        if (c->pid <= 0)
                return -ESRCH;
        if (attach) {
                int r = attach(c->pid, userdata);
                if (r < 0) {
                        qemu_discard(c);
                        return r;
                }
        }
        if (write(c->go_fd, "g", 1) != 1) {
                int r = errno > 0 ? -errno : -EIO;
                qemu_discard(c);
                return r;
        }
        c->go_fd = safe_close(c->go_fd);
        *ret_pid = c->pid;
        c->pid = 0;
        return 0;
}

void qemu_discard(QemuChild *c) {
        c->go_fd = safe_close(c->go_fd);
        qemu_kill_and_reap(&c->pid, NULL);
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

char *qemu_describe_status(int status) {
        char *s;
        int r;

        if (WIFEXITED(status))
                r = asprintf(&s, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                r = asprintf(&s, "was killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ?: "?");
        else
                r = asprintf(&s, "ended with wait status 0x%x", status);
        return r < 0 ? NULL : s;
}
