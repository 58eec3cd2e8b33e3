/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "console.h"
#include "fdio.h"
#include "guest-channel.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "qemu.h"

static bool kvm_usable(void) {
        _cleanup_close_ int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                log_debug_errno(errno, "Cannot open /dev/kvm: %m");
                return false;
        }
        int version = ioctl(fd, KVM_GET_API_VERSION, 0);
        if (version != KVM_API_VERSION) {
                log_debug("/dev/kvm reports API version %d, not %d.", version, KVM_API_VERSION);
                return false;
        }
        return true;
}

/* Waits for HELLO on agent_fd until deadline, draining the console meanwhile. */
static bool wait_for_hello(int agent_fd, int console_fd, int stderr_fd, Console *console, Console *qemu_stderr,
                           uint64_t deadline) {
        SbxFrameReader reader;
        bool hello = false;

        sbx_frame_reader_init(&reader, SBX_GUEST_FRAME_MAX);
        for (;;) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        break;

                struct pollfd p[] = {
                        { .fd = agent_fd, .events = POLLIN },
                        { .fd = console_fd, .events = POLLIN },
                        { .fd = stderr_fd, .events = POLLIN },
                };
                int n = poll(p, ELEMENTSOF(p), (int) ((deadline - now + 999) / 1000));
                if (n < 0 && errno != EINTR)
                        break;
                if (n <= 0)
                        continue;
                if (p[1].revents)
                        (void) console_read_fd(console, console_fd);
                if (p[2].revents)
                        (void) console_read_fd(qemu_stderr, stderr_fd);
                if (!p[0].revents)
                        continue;

                int r = sbx_frame_reader_fill(&reader, agent_fd);
                if (r == -EAGAIN || r == -EINTR)
                        continue;
                if (r <= 0)
                        break; /* QEMU is gone */
                uint8_t type;
                const uint8_t *payload;
                size_t len;
                r = sbx_frame_reader_next(&reader, &type, &payload, &len);
                if (r == 0)
                        continue;
                if (r > 0 && type == SBX_G_HELLO) {
                        GuestHello h;
                        const char *reason;
                        hello = guest_parse_hello(payload, len, &h, &reason) >= 0;
                        if (!hello)
                                log_debug("Probe: bad HELLO: %s", reason);
                }
                break;
        }
        sbx_frame_reader_done(&reader);
        return hello;
}

SbxAccel accel_probe(const SbxConfig *config) {
        _cleanup_close_pair_ int agent[2] = { -EBADF, -EBADF }, console[2] = { -EBADF, -EBADF },
                                 err[2] = { -EBADF, -EBADF };
        _cleanup_strv_free_ char **argv = NULL;
        Console console_log, qemu_stderr;
        pid_t pid = 0;
        int r;

        if (!kvm_usable())
                return SBX_ACCEL_TCG;

        QemuOptions o = {
                .binary = config->qemu,
                .kernel = config->kernel,
                .initrd = config->initrd,
                .rootfs = config->rootfs,
                .accel = SBX_ACCEL_KVM,
                .memory_mb = SBX_MEMORY_DEFAULT_MB,
                .vcpus = 1,
                .cmdline_extra = "sbx.probe=1",
                .sandbox = true,
                .image_fds = true,
        };
        /* Probe as the user the VMs run as (qemu_resolve_creds()): /dev/kvm must open for that user. */
        QemuCreds creds;
        QemuImages images = QEMU_IMAGES_NULL;
        QemuChild child = QEMU_CHILD_NULL;
        const char *failed = NULL;
        (void) qemu_resolve_creds(&creds);
        r = qemu_images_open(config->kernel, config->initrd, config->rootfs, &images, &failed);
        if (r < 0) {
                log_error_errno(r, "KVM probe: cannot open %s: %m", failed ?: "the guest images");
                return SBX_ACCEL_TCG;
        }
        r = qemu_build_argv(&o, &argv);
        if (r < 0) {
                log_error_errno(r, "Failed to build the QEMU command line: %m");
                return SBX_ACCEL_TCG;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, agent) < 0 ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, console) < 0 ||
            pipe2(err, O_CLOEXEC | O_NONBLOCK) < 0) {
                log_error_errno(errno, "Failed to create the probe's channels: %m");
                qemu_images_close(&images);
                return SBX_ACCEL_TCG;
        }
        console_init(&console_log, "probe console", LOG_DEBUG);
        console_init(&qemu_stderr, "probe qemu", LOG_DEBUG);

        uint64_t start = now_usec(CLOCK_MONOTONIC);
        r = qemu_prepare(argv, agent[1], console[1], err[1], &images, NULL, &creds, &child);
        qemu_images_close(&images);
        if (r >= 0)
                r = qemu_release(&child, NULL, NULL, &pid);
        if (r < 0) {
                log_error_errno(r, "Failed to start QEMU for the KVM probe: %m");
                return SBX_ACCEL_TCG;
        }
        agent[1] = safe_close(agent[1]);
        console[1] = safe_close(console[1]);
        err[1] = safe_close(err[1]);

        bool hello = wait_for_hello(agent[0], console[0], err[0], &console_log, &qemu_stderr,
                                    start + ACCEL_PROBE_TIMEOUT_USEC);
        qemu_kill_and_reap(&pid, NULL);
        (void) console_read_fd(&qemu_stderr, err[0]);

        uint64_t ms = (now_usec(CLOCK_MONOTONIC) - start) / 1000u;
        if (hello) {
                log_info("KVM probe: the guest booted under KVM in %" PRIu64 " ms.", ms);
                return SBX_ACCEL_KVM;
        }
        _cleanup_free_ char *tail = console_tail(&qemu_stderr, 512);
        log_info("KVM probe: /dev/kvm opens but no guest HELLO within %" PRIu64 " ms; using TCG.%s%s", ms,
                 tail && *tail ? " QEMU said: " : "", tail && *tail ? tail : "");
        return SBX_ACCEL_TCG;
}

SbxAccel accel_resolve(SbxAccel requested, const SbxConfig *config) {
        if (requested != SBX_ACCEL_AUTO)
                return requested;
        return accel_probe(config);
}
