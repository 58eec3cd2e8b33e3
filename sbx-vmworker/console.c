/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "console.h"
#include "log.h"
#include "macro.h"
#include "text-util.h"

void console_init(Console *c, const char *name, int log_level) {
        *c = (Console) { .name = name, .log_level = log_level };
}

static void console_log_line(Console *c) {
        if (c->line_len > 0 && log_get_max_level() >= c->log_level) {
                _cleanup_free_ char *s = text_sanitize(c->line, c->line_len, CONSOLE_LINE_MAX);
                if (s)
                        log_full_errno(c->log_level, 0, "%s: %s", c->name, s);
        }
        c->line_len = 0;
}

void console_feed(Console *c, const void *data, size_t n) {
        const char *p = data;

        for (size_t i = 0; i < n; i++) {
                /* Serial consoles end lines with CRLF: keep plain newlines. */
                if (p[i] == '\r')
                        continue;
                c->ring[c->total++ % CONSOLE_RING_SIZE] = p[i];

                if (p[i] == '\n')
                        console_log_line(c);
                else {
                        if (c->line_len == sizeof c->line)
                                console_log_line(c);
                        c->line[c->line_len++] = p[i];
                }
        }
}

int console_read_fd(Console *c, int fd) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);

        if (n < 0)
                return -errno;
        console_feed(c, buf, (size_t) n);
        return (int) n;
}

char *console_tail(const Console *c, size_t max) {
        size_t have = (size_t) MIN(c->total, (uint64_t) CONSOLE_RING_SIZE);
        size_t n = MIN(have, max);
        char buf[CONSOLE_RING_SIZE];

        for (size_t i = 0; i < n; i++)
                buf[i] = c->ring[(c->total - n + i) % CONSOLE_RING_SIZE];

        /* Start at a line boundary if one is near, so the tail reads well. */
        size_t skip = 0;
        if (n == max) {
                const char *nl = memchr(buf, '\n', n);
                if (nl && (size_t) (nl - buf) < n / 2)
                        skip = (size_t) (nl - buf) + 1;
        }
        /* Drop trailing blank lines. */
        while (n > skip && buf[n - 1] == '\n')
                n--;
        return text_sanitize(buf + skip, n - skip, max);
}
