/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "log.h"

static int max_level = LOG_INFO;
static const char *ident = NULL;

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_ident(const char *i) {
        ident = i;
}

void log_parse_environment(void) {
        static const struct {
                const char *name;
                int level;
        } table[] = {
                { "debug", LOG_DEBUG }, { "info", LOG_INFO },   { "notice", LOG_NOTICE },
                { "warning", LOG_WARNING }, { "err", LOG_ERR }, { "error", LOG_ERR },
        };
        const char *e = getenv("SBX_LOG_LEVEL");

        if (!e)
                return;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(e, table[i].name) == 0)
                        max_level = table[i].level;
}

int log_internal(int level, int error, const char *file, int line, const char *fmt, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        if (error < 0)
                error = -error;
        if (level > max_level)
                return -error;

        /* %m in the format refers to `error`, as in systemd. */
        errno = error;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);

        if (max_level >= LOG_DEBUG)
                fprintf(stderr, "<%d>%s%s%s:%d: %s\n", level, ident ?: "", ident ? ": " : "", file, line, buf);
        else
                fprintf(stderr, "<%d>%s%s%s\n", level, ident ?: "", ident ? ": " : "", buf);

        errno = saved;
        return -error;
}
