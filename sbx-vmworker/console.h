/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A bounded record of a text stream we only keep for diagnostics: the
 * guest's serial console and QEMU's own stderr. Complete lines are logged
 * (sanitized) as they arrive; the last CONSOLE_RING_SIZE bytes are kept so
 * boot failures can quote the tail. The stream may be hostile and endless;
 * memory use is fixed. */

#include <stddef.h>
#include <stdint.h>

#define CONSOLE_RING_SIZE 16384u
#define CONSOLE_LINE_MAX 512u

typedef struct Console {
        const char *name; /* log prefix, e.g. "console" */
        int log_level;
        char ring[CONSOLE_RING_SIZE];
        uint64_t total; /* bytes ever fed */
        char line[CONSOLE_LINE_MAX];
        size_t line_len;
} Console;

void console_init(Console *c, const char *name, int log_level);
void console_feed(Console *c, const void *data, size_t n);
/* Reads what is available from a non-blocking fd into the console. Returns bytes read, 0 on EOF, -EAGAIN, -errno. */
int console_read_fd(Console *c, int fd);
/* The last at most max bytes, starting at a line start when possible, sanitized. New string or NULL. */
char *console_tail(const Console *c, size_t max);
