/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-guest: init and agent of the sbx microVM. Runs as PID 1 from the
 * initramfs, switches to the overlay root, then serves the host over the
 * virtio-serial port until the VM is torn down. */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fdio.h"
#include "exec.h"
#include "init.h"
#include "log.h"
#include "proto.h"

#define PORT_TIMEOUT_USEC (10 * 1000000u)

/* PID 1 must never exit (that panics the kernel): log and power off. */
_noreturn_ static void fatal(int r, const char *what) {
        log_error_errno(r, "%s: %m. Powering off.", what);
        guest_poweroff();
}

int main(int argc, char *argv[]) {
        GuestOptions opts;
        int port_fd, r;

        (void) argc;
        (void) argv;
        if (getpid() != 1) {
                fprintf(stderr, "sbx-guest: this is the init of the sbx VM, it only runs as PID 1.\n");
                return 1;
        }
        log_set_ident("sbx-guest");
        /* Every byte on the serial console costs boot time under TCG. */
        log_set_max_level(LOG_WARNING);
        (void) signal(SIGPIPE, SIG_IGN);

        r = guest_early_setup(&opts);
        if (r < 0)
                fatal(r, "Early setup failed");
        if (opts.debug)
                log_set_max_level(LOG_DEBUG);
        exec_set_emulated(opts.tcg);
        log_debug("init started at %llu ms after boot", (unsigned long long) (now_usec(CLOCK_BOOTTIME) / 1000u));
        r = guest_setup_root();
        if (r < 0)
                fatal(r, "Setting up the root file system failed");
        log_debug("root ready at %llu ms", (unsigned long long) (now_usec(CLOCK_BOOTTIME) / 1000u));

        port_fd = guest_open_port(SBX_AGENT_PORT_NAME, PORT_TIMEOUT_USEC);
        if (port_fd < 0)
                fatal(port_fd, "No agent port");
        /* Blocks until the host side of the port is connected. */
        r = agent_send_hello(port_fd);
        if (r < 0)
                fatal(r, "Sending HELLO failed");
        log_debug("HELLO sent at %llu ms after boot", (unsigned long long) (now_usec(CLOCK_BOOTTIME) / 1000u));

        if (opts.probe)
                guest_poweroff();

        /* Runs before the first frame is read, so no exec can see it missing. */
        guest_late_setup();

        r = agent_run(port_fd);
        fatal(r, "Agent failed");
}
