/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text-util.h"
#include "utf8.h"

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static void utf8_truncate(char *s, size_t max) {
        size_t n = strlen(s);

        if (n <= max)
                return;
        n = max;
        /* Step back over continuation bytes to the start of the cut character. */
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
                n--;
        s[n] = 0;
}

char *text_sanitize(const char *data, size_t n, size_t max) {
        char *s = utf8_sanitize(data, n);
        if (!s)
                return NULL;
        for (char *p = s; *p; p++) {
                unsigned char c = (unsigned char) *p;
                if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
                        *p = '?';
        }
        utf8_truncate(s, max);
        return s;
}

char *text_printf_bounded(size_t max, const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return NULL;
        utf8_truncate(s, max);
        return s;
}
