/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Bringing the VM up: the boot plan's attempts one after the other, each with its deadline
 * (boot_timeout_ms, shorter for a restore), G_HELLO (or G_RESUMED after a restore), the warm-up
 * of the interpreter, a snapshot build's save, the fallback to a cold boot when a build or restore
 * fails, and W_SESSION_READY. Also the diagnosis when QEMU exits or the guest channel closes, in
 * any state. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "qmp.h"

typedef struct Worker Worker;

typedef struct Boot {
        unsigned attempt; /* 1-based: the one running */
        bool resuming;    /* a restore waits for G_RESUMED */
        bool fell_back;   /* the cold fallback was used */
        /* For W_SESSION_READY. */
        bool l1, saved, warm;
        uint64_t boot_ms, restore_ms;
        char note[256];
        uint64_t t_warm;
        sd_event_source *defer; /* the next attempt, started outside the guest channel's callbacks */
        unsigned next;          /* its index */
        Qmp qmp;
} Boot;

/* After setup: starts attempt 1. */
void boot_start(Worker *w);
/* Guest frames while BOOTING or WARMING. Returns as FramedConnFrameHandler. */
int boot_on_guest_frame(Worker *w, uint8_t type, const uint8_t *p, size_t n);
void boot_done(Boot *b);
