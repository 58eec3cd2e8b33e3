/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "log.h"
#include "macro.h"
#include "proto.h"
#include "sbx-error.h"
#include "vm.h"

void vm_init(Vm *vm) {
        *vm = (Vm) { .console_fd = -EBADF, .stderr_fd = -EBADF };
        vm->guest.fd = -EBADF;
        for (size_t i = 0; i < ELEMENTSOF(vm->attempts); i++)
                vm->attempts[i] = (VmAttempt) {
                        .child = QEMU_CHILD_NULL, .agent_fd = -EBADF, .console_fd = -EBADF, .stderr_fd = -EBADF };
}

int vm_prepare(Vm *vm, const SbxConfig *config, const BootPlan *plan, char **cold_argv, const QemuCreds *creds,
               SbxError *error) {
        QemuImages images = QEMU_IMAGES_NULL;
        const char *failed = NULL;
        int r;

        r = qemu_images_open(config->kernel, config->initrd, config->rootfs, &images, &failed);
        if (r < 0)
                return sbx_error_set(error, r, "The guest image %s is not readable: %s", failed ?: "?", strerror(-r));
        for (unsigned i = 0; i < boot_plan_n_attempts(plan); i++) {
                _cleanup_close_pair_ int agent[2] = { -EBADF, -EBADF }, console[2] = { -EBADF, -EBADF },
                                         err[2] = { -EBADF, -EBADF };
                QemuExtraFds extra;

                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agent) < 0 ||
                    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                        r = -errno;
                        qemu_images_close(&images);
                        return sbx_error_set(error, r, "Failed to create the VM's channels: %s", strerror(-r));
                }
                char **argv = boot_plan_argv(plan, i);
                bool have_extra = boot_plan_fds(plan, i, &extra);
                r = qemu_prepare(argv ?: cold_argv, agent[1], console[1], err[1], &images, have_extra ? &extra : NULL,
                                 creds, &vm->attempts[i].child);
                if (r < 0) {
                        qemu_images_close(&images);
                        return sbx_error_set(error, r, "Failed to start QEMU: %s", strerror(-r));
                }
                vm->attempts[i].agent_fd = TAKE_FD(agent[0]);
                vm->attempts[i].console_fd = TAKE_FD(console[0]);
                vm->attempts[i].stderr_fd = TAKE_FD(err[0]);
        }
        /* The children hold them now. */
        qemu_images_close(&images);
        return 0;
}

static int on_console_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Vm *vm = userdata;
        (void) revents;

        int r = console_read_fd(s == vm->console_io ? &vm->console : &vm->stderr_log, fd);
        if (r == 0 || (r < 0 && r != -EAGAIN && r != -EINTR))
                /* EOF: QEMU is gone; its exit is handled elsewhere. */
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return 0;
}

int vm_release(Vm *vm, sd_event *event, unsigned i, const VmCallbacks *cb, SbxError *error) {
        VmAttempt *a = &vm->attempts[i];
        int r;

        /* A previous attempt's channel is closed by now; free it before reusing the struct. */
        vm_done(vm);
        console_init(&vm->console, "console", LOG_DEBUG);
        console_init(&vm->stderr_log, "qemu", LOG_INFO);

        r = qemu_release(&a->child, cb->attach, cb->userdata, &vm->pid);
        if (r < 0)
                return sbx_error_set(error, r, "Failed to start QEMU: %s", strerror(-r));
        vm->t_spawn = now_usec(CLOCK_MONOTONIC);
        log_debug("Started QEMU %d (attempt %u).", (int) vm->pid, i + 1);

        r = sd_event_add_child(event, &vm->exit_source, vm->pid, WEXITED, cb->on_exit, cb->userdata);
        if (r < 0)
                return sbx_error_set(error, r, "Failed to watch QEMU: %s", strerror(-r));
        r = framed_conn_open(&vm->guest, event, "guest channel", TAKE_FD(a->agent_fd), SBX_GUEST_FRAME_MAX,
                             SBX_HOST_FRAME_MAX + 4096u, cb->on_guest_frame, cb->on_guest_close, cb->userdata);
        if (r < 0)
                return sbx_error_set(error, r, "Failed to watch the guest channel: %s", strerror(-r));
        vm->guest.on_drain = cb->on_guest_drain; /* file writes wait for room in the channel */

        vm->console_fd = TAKE_FD(a->console_fd);
        vm->stderr_fd = TAKE_FD(a->stderr_fd);
        if (fd_set_nonblock(vm->console_fd, 1) < 0 || fd_set_nonblock(vm->stderr_fd, 1) < 0 ||
            sd_event_add_io(event, &vm->console_io, vm->console_fd, EPOLLIN, on_console_io, vm) < 0 ||
            sd_event_add_io(event, &vm->stderr_io, vm->stderr_fd, EPOLLIN, on_console_io, vm) < 0)
                return sbx_error_set(error, -EIO, "Failed to watch the QEMU console.");
        return 0;
}

void vm_drain_diagnostics(Vm *vm) {
        for (int i = 0; i < 64 && vm->console_fd >= 0 && console_read_fd(&vm->console, vm->console_fd) > 0; i++)
                ;
        for (int i = 0; i < 64 && vm->stderr_fd >= 0 && console_read_fd(&vm->stderr_log, vm->stderr_fd) > 0; i++)
                ;
}

static void vm_close_channels(Vm *vm) {
        vm->console_io = sd_event_source_disable_unref(vm->console_io);
        vm->stderr_io = sd_event_source_disable_unref(vm->stderr_io);
        vm->console_fd = safe_close(vm->console_fd);
        vm->stderr_fd = safe_close(vm->stderr_fd);
        /* Not freed here: we may be inside one of its callbacks. vm_release() and vm_done() do. */
        if (framed_conn_is_open(&vm->guest))
                framed_conn_stop(&vm->guest);
}

void vm_stop(Vm *vm, uint64_t wait_usec, int *ret_status) {
        int status = -1;

        vm->exit_source = sd_event_source_disable_unref(vm->exit_source);
        if (vm->pid > 0) {
                /* Give QEMU a moment to finish dying by itself, so we can tell what happened. */
                uint64_t deadline = now_usec(CLOCK_MONOTONIC) + wait_usec;
                for (;;) {
                        int s;
                        pid_t p = waitpid(vm->pid, &s, WNOHANG);
                        if (p == vm->pid) {
                                status = s;
                                vm->pid = 0;
                                break;
                        }
                        if (p < 0 && errno != EINTR)
                                break;
                        if (now_usec(CLOCK_MONOTONIC) >= deadline)
                                break;
                        (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000 * 1000 }, NULL);
                }
                if (vm->pid > 0) {
                        log_debug("Killing QEMU %d.", (int) vm->pid);
                        qemu_kill_and_reap(&vm->pid, NULL);
                }
        }
        vm_drain_diagnostics(vm);
        vm_close_channels(vm);
        if (ret_status)
                *ret_status = status;
}

void vm_discard_attempts(Vm *vm) {
        for (size_t i = 0; i < ELEMENTSOF(vm->attempts); i++) {
                VmAttempt *a = &vm->attempts[i];
                qemu_discard(&a->child);
                a->agent_fd = safe_close(a->agent_fd);
                a->console_fd = safe_close(a->console_fd);
                a->stderr_fd = safe_close(a->stderr_fd);
        }
}

void vm_done(Vm *vm) {
        if (vm->guest.fd >= 0 || vm->guest.out)
                framed_conn_close(&vm->guest);
}
