/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The PID 1 half of sbx-guest: turns the initramfs into the sandbox's root
 * file system. Nothing here talks to the host. */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

#define SBX_GUEST_UID 1000
#define SBX_GUEST_GID 1000
#define SBX_GUEST_HOME "/home/user"
#define SBX_GUEST_RUNDIR "/run/sbx"

typedef struct GuestOptions {
        bool probe; /* sbx.probe=1: say HELLO, then power off */
        bool debug; /* sbx.debug=1: log at debug level on the console */
        bool tcg;   /* sbx.tcg=1: the VM is emulated (TCG), not accelerated */
} GuestOptions;

/* Mounts the early API file systems and reads the kernel command line. */
int guest_early_setup(GuestOptions *ret);
/* erofs + tmpfs overlay, switch root, then the final mounts and hostname. */
int guest_setup_root(void);
/* What user code needs but HELLO need not wait for (together ~45 ms under
 * TCG): lo up, eth0 when the VM has a NIC (net.c), and zram swap (best effort, silent when zram0 is
 * missing). */
void guest_late_setup(void);

/* Finds the virtio-serial port named `name` and opens it, waiting up to timeout_usec for it to appear. */
int guest_open_port(const char *name, uint64_t timeout_usec);

/* Reads a "Key:   N kB" line of /proc/meminfo, in bytes. */
int meminfo_bytes(const char *key, uint64_t *ret);
/* /proc/meminfo once into buf (NUL-terminated), then any number of lookups in it. */
int meminfo_read(char *buf, size_t size);
int meminfo_lookup(const char *buf, const char *key, uint64_t *ret);

_noreturn_ void guest_poweroff(void);
