/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "init.h"
#include "log.h"
#include "macro.h"
#include "net.h"

static int mount_one(const char *what, const char *where, const char *type, unsigned long flags, const char *data) {
        if (mount(what, where, type, flags, data) < 0)
                return log_error_errno(errno, "Failed to mount %s on %s: %m", type ?: what, where);
        return 0;
}

static int mkdir_mode(const char *path, mode_t mode) {
        if (mkdir(path, mode) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Failed to create %s: %m", path);
        /* mkdir() honours the umask; chmod() does not. */
        if (chmod(path, mode) < 0)
                return log_error_errno(errno, "Failed to chmod %s: %m", path);
        return 0;
}

static void sleep_usec(uint64_t usec) {
        struct timespec ts = { .tv_sec = usec / 1000000u, .tv_nsec = (long) (usec % 1000000u) * 1000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

_noreturn_ void guest_poweroff(void) {
        sync();
        (void) reboot(RB_POWER_OFF);
        /* QEMU runs with -no-reboot, so a reboot ends the VM as well. */
        (void) reboot(RB_AUTOBOOT);
        for (;;)
                pause();
}

int meminfo_read(char *buf, size_t size) {
        return read_small_file("/proc/meminfo", buf, size);
}

int meminfo_lookup(const char *buf, const char *key, uint64_t *ret) {
        size_t klen = strlen(key);

        for (const char *line = buf; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
                unsigned long long kb;

                if (strncmp(line, key, klen) != 0 || line[klen] != ':')
                        continue;
                if (sscanf(line + klen + 1, "%llu", &kb) != 1)
                        return -EBADMSG;
                *ret = (uint64_t) kb * 1024u;
                return 0;
        }
        return -ENOENT;
}

int meminfo_bytes(const char *key, uint64_t *ret) {
        char buf[4096];
        int r;

        r = meminfo_read(buf, sizeof buf);
        if (r < 0)
                return r;
        return meminfo_lookup(buf, key, ret);
}

static bool cmdline_has(const char *cmdline, const char *word) {
        size_t n = strlen(word);

        for (const char *p = cmdline; (p = strstr(p, word)); p += n)
                if ((p == cmdline || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
                        return true;
        return false;
}

/* The kernel gives init /dev/console as fds 0-2 (the initramfs has the
 * node). Make sure of it: logs go to stderr, and pipes for children must not
 * land on 0-2. */
static void ensure_std_fds(void) {
        for (int fd = 0; fd <= 2; fd++) {
                if (fcntl(fd, F_GETFD) >= 0)
                        continue;
                int n = open("/dev/console", O_RDWR | O_NOCTTY);
                if (n < 0)
                        n = open("/dev/null", O_RDWR | O_NOCTTY);
                if (n >= 0 && n != fd) {
                        (void) dup2(n, fd);
                        (void) close(n);
                }
        }
}

int guest_early_setup(GuestOptions *ret) {
        char cmdline[4096];
        int r;

        umask(0022);
        (void) reboot(RB_DISABLE_CAD);

        r = mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        if (r < 0)
                return r;
        r = mount_one("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        if (r < 0)
                return r;
        r = mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        if (r < 0)
                return r;
        ensure_std_fds();

        *ret = (GuestOptions) {};
        if (read_small_file("/proc/cmdline", cmdline, sizeof cmdline) >= 0) {
                ret->probe = cmdline_has(cmdline, "sbx.probe=1");
                ret->debug = cmdline_has(cmdline, "sbx.debug=1");
                ret->tcg = cmdline_has(cmdline, "sbx.tcg=1");
        }
        return 0;
}

static int wait_for_path(const char *path, uint64_t timeout_usec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;

        while (access(path, F_OK) < 0) {
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return log_error_errno(ENOENT, "%s did not appear: %m", path);
                sleep_usec(2000);
        }
        return 0;
}

static int mount_overlay_root(void) {
        int r;

        r = wait_for_path("/dev/vda", 5 * 1000000u);
        if (r < 0)
                return r;
        r = mount_one("/dev/vda", "/mnt/ro", "erofs", MS_RDONLY, NULL);
        if (r < 0)
                return r;
        /* The per-VM writes live in RAM. A quarter of it at most, so that a
         * full overlay is ENOSPC for the guest and not an OOM for the VM. */
        r = mount_one("tmpfs", "/mnt/rw", "tmpfs", MS_NOSUID | MS_NODEV, "size=25%,mode=0755");
        if (r < 0)
                return r;
        if (mkdir_mode("/mnt/rw/upper", 0755) < 0 || mkdir_mode("/mnt/rw/work", 0755) < 0)
                return -EIO;
        return mount_one("overlay", "/newroot", "overlay", 0,
                         "lowerdir=/mnt/ro,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work");
}

/* Same steps as util-linux switch_root, minus deleting the initramfs: it
 * only holds this binary. */
static int switch_root(void) {
        int r;

        /* The final /proc gets hidepid, which is a per-instance option. */
        if (umount2("/proc", MNT_DETACH) < 0)
                return log_error_errno(errno, "Failed to unmount /proc: %m");
        r = mount_one("/dev", "/newroot/dev", NULL, MS_MOVE, NULL);
        if (r < 0)
                return r;
        r = mount_one("/sys", "/newroot/sys", NULL, MS_MOVE, NULL);
        if (r < 0)
                return r;
        (void) unlink("/init");

        if (chdir("/newroot") < 0)
                return log_error_errno(errno, "Failed to chdir to /newroot: %m");
        r = mount_one(".", "/", NULL, MS_MOVE, NULL);
        if (r < 0)
                return r;
        if (chroot(".") < 0)
                return log_error_errno(errno, "Failed to chroot: %m");
        if (chdir("/") < 0)
                return log_error_errno(errno, "Failed to chdir to /: %m");
        return 0;
}

static int bring_up_lo(void) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {};

        if (fd < 0)
                return log_warning_errno(errno, "Failed to open a socket for lo: %m");
        strncpy(ifr.ifr_name, "lo", sizeof ifr.ifr_name - 1);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return log_warning_errno(errno, "Failed to get flags of lo: %m");
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
                return log_warning_errno(errno, "Failed to bring up lo: %m");
        return 0;
}

static int setup_dev(void) {
        static const char *const gone[] = { "/dev/mem", "/dev/kmem", "/dev/port" };
        static const struct {
                const char *target, *path;
        } links[] = {
                { "/proc/self/fd", "/dev/fd" },
                { "/proc/self/fd/0", "/dev/stdin" },
                { "/proc/self/fd/1", "/dev/stdout" },
                { "/proc/self/fd/2", "/dev/stderr" },
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(gone); i++)
                if (unlink(gone[i]) < 0 && errno != ENOENT)
                        return log_error_errno(errno, "Failed to remove %s: %m", gone[i]);

        /* No udev: the usual symlinks are ours to make. */
        for (size_t i = 0; i < ELEMENTSOF(links); i++)
                if (symlink(links[i].target, links[i].path) < 0 && errno != EEXIST)
                        log_warning_errno(errno, "Failed to create %s: %m", links[i].path);

        if (mkdir_mode("/dev/shm", 01777) < 0)
                return -EIO;
        r = mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=25%,mode=1777");
        if (r < 0)
                return r;

        if (mkdir_mode("/dev/pts", 0755) < 0)
                return -EIO;
        if (mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                  "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
                log_warning_errno(errno, "Failed to mount devpts, continuing without ptys: %m");
        return 0;
}

int guest_setup_root(void) {
        int r;

        r = mount_overlay_root();
        if (r < 0)
                return r;
        r = switch_root();
        if (r < 0)
                return r;

        /* uid 1000 must not see (or read the environment of) root's processes. */
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible") < 0) {
                r = mount_one("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2");
                if (r < 0)
                        return r;
        }
        r = mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=50%,mode=1777");
        if (r < 0)
                return r;
        r = mount_one("tmpfs", SBX_GUEST_HOME, "tmpfs", MS_NOSUID | MS_NODEV, "size=50%,uid=1000,gid=1000,mode=0700");
        if (r < 0)
                return r;
        r = mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "size=10%,mode=0755");
        if (r < 0)
                return r;
        if (mkdir_mode(SBX_GUEST_RUNDIR, 0755) < 0)
                return -EIO;
        r = setup_dev();
        if (r < 0)
                return r;

        if (sethostname("sandbox", strlen("sandbox")) < 0)
                log_warning_errno(errno, "Failed to set the hostname: %m");

        /* Kernel pointers and the kernel log are not the sandbox's business. */
        (void) write_string_file("/proc/sys/kernel/kptr_restrict", "2");
        (void) write_string_file("/proc/sys/kernel/dmesg_restrict", "1");
        /* The OOM killer must pick user code, never the agent. Children reset this. */
        r = write_string_file("/proc/self/oom_score_adj", "-1000");
        if (r < 0)
                log_warning_errno(r, "Failed to set oom_score_adj: %m");
        return 0;
}

static void setup_swap(void) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ uint8_t *page = NULL;
        uint64_t total, size;
        long pagesize = sysconf(_SC_PAGESIZE);
        char buf[32];
        int r;

        if (access("/sys/block/zram0/disksize", W_OK) < 0)
                return;
        if (meminfo_bytes("MemTotal", &total) < 0)
                return;
        size = total / 2 / (uint64_t) pagesize * (uint64_t) pagesize;
        snprintf(buf, sizeof buf, "%" PRIu64, size);
        r = write_string_file("/sys/block/zram0/disksize", buf);
        if (r < 0) {
                log_debug_errno(r, "Failed to size zram0: %m");
                return;
        }

        /* What mkswap writes: a v1 header in the first page, magic at its end. */
        page = calloc(1, (size_t) pagesize);
        if (!page)
                return;
        uint32_t hdr[3] = { 1, (uint32_t) (size / (uint64_t) pagesize - 1), 0 };
        memcpy(page + 1024, hdr, sizeof hdr);
        memcpy(page + pagesize - 10, "SWAPSPACE2", 10);

        fd = open("/dev/zram0", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || loop_write(fd, page, (size_t) pagesize) < 0 || fsync(fd) < 0) {
                log_debug_errno(errno, "Failed to write the zram0 swap header: %m");
                return;
        }
        fd = safe_close(fd);
        if (swapon("/dev/zram0", 0) < 0)
                log_debug_errno(errno, "Failed to enable swap on zram0: %m");
}

void guest_late_setup(void) {
        (void) bring_up_lo();
        /* Only with a NIC (a networked or port-exposing VM); failures are logged and leave it down. */
        (void) guest_setup_network();
        setup_swap();
}

int guest_open_port(const char *name, uint64_t timeout_usec) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;

        for (;;) {
                _cleanup_closedir_ DIR *d = opendir("/sys/class/virtio-ports");
                struct dirent *de;

                while (d && (de = readdir(d))) {
                        char path[PATH_MAX], buf[256];

                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", de->d_name);
                        if (read_small_file(path, buf, sizeof buf) < 0)
                                continue;
                        buf[strcspn(buf, "\n")] = 0;
                        if (strcmp(buf, name) != 0)
                                continue;

                        snprintf(path, sizeof path, "/dev/%s", de->d_name);
                        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
                        if (fd >= 0)
                                return fd;
                        /* devtmpfs may lag the sysfs entry by a moment. */
                        if (errno != ENOENT)
                                return log_error_errno(errno, "Failed to open %s: %m", path);
                }
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return log_error_errno(ENODEV, "virtio-serial port %s did not appear.", name);
                sleep_usec(2000);
        }
}
