/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "domain-match.h"

static bool label_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int domain_normalize(const char *in, size_t n, char out[static DOMAIN_NAME_MAX + 1]) {
        size_t label = 0;

        if (n > 0 && in[n - 1] == '.')
                n--;
        if (n == 0 || n > DOMAIN_NAME_MAX)
                return -EINVAL;

        for (size_t i = 0; i < n; i++) {
                char c = in[i];

                if (c >= 'A' && c <= 'Z')
                        c = (char) (c - 'A' + 'a');
                if (c == '.') {
                        if (label == 0)
                                return -EINVAL;
                        label = 0;
                } else {
                        if (!label_char_ok(c) || ++label > DOMAIN_LABEL_MAX)
                                return -EINVAL;
                }
                out[i] = c;
        }
        if (label == 0)
                return -EINVAL;
        /* An all-numeric last label: an IPv4 literal, not a name (RFC 3696 2). */
        bool numeric = true;
        for (size_t i = n - label; i < n && numeric; i++)
                numeric = out[i] >= '0' && out[i] <= '9';
        if (numeric)
                return -EINVAL;
        out[n] = 0;
        return (int) n;
}

int domain_pattern_normalize(const char *in, char out[static DOMAIN_NAME_MAX + 3]) {
        size_t n = strlen(in);
        int r;

        if (n >= 2 && in[0] == '*' && in[1] == '.') {
                r = domain_normalize(in + 2, n - 2, out + 2);
                if (r < 0)
                        return r;
                if (!strchr(out + 2, '.'))
                        return -EINVAL; /* "*.com" */
                out[0] = '*';
                out[1] = '.';
                return 0;
        }
        r = domain_normalize(in, n, out);
        return r < 0 ? r : 0;
}

bool domain_pattern_match(const char *pattern, const char *name) {
        if (pattern[0] == '*' && pattern[1] == '.') {
                const char *suffix = pattern + 1; /* ".example.com" */
                size_t ls = strlen(suffix), ln = strlen(name);

                return ln > ls && strcmp(name + ln - ls, suffix) == 0;
        }
        return strcmp(pattern, name) == 0;
}
