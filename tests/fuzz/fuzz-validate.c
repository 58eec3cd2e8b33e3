/* SPDX-License-Identifier: Apache-2.0 */
/* The request validators on caller-controlled bytes, and the output
 * sanitizer that turns program output into D-Bus strings. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "proto.h"
#include "utf8.h"
#include "validate.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *reason = NULL;
        int r;

        /* Code: exact bytes, NULs included. */
        r = sbx_validate_code((const char *) data, size, &reason);
        FUZZ_CHECK(r == 0 || ((r == -EINVAL || r == -E2BIG) && reason));
        FUZZ_CHECK(r != 0 || (size > 0 && size <= SBX_CODE_MAX && !memchr(data, 0, size)));

        /* The string validators get what D-Bus would deliver: NUL-terminated. */
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = 0;

        SbxLanguage l = sbx_language_from_string(s);
        FUZZ_CHECK(l == SBX_LANG_INVALID || strcmp(sbx_language_to_string(l), s) == 0);
        SbxAccel a;
        if (sbx_accel_from_string(s, &a) == 0)
                FUZZ_CHECK(strcmp(sbx_accel_to_string(a), s) == 0);

        r = sbx_validate_env_name(s, &reason);
        FUZZ_CHECK(r == 0 || reason);
        r = sbx_validate_env_value(s, &reason);
        FUZZ_CHECK(r == 0 || reason);

        /* Domain patterns: accepted ones are canonical and accepted again unchanged. */
        char dom[SBX_DOMAIN_MAX + 1], dom2[SBX_DOMAIN_MAX + 1];
        if (sbx_validate_domain_pattern(s, dom, &reason) == 0) {
                FUZZ_CHECK(strlen(dom) <= SBX_DOMAIN_MAX);
                FUZZ_CHECK(sbx_validate_domain_pattern(dom, dom2, &reason) == 0 && strcmp(dom, dom2) == 0);
        } else
                FUZZ_CHECK(reason != NULL);
        /* Port mappings: the canonical form parses back to the same mapping. */
        SbxExpose ex, ex2;
        if (sbx_parse_expose(s, &ex, &reason) == 0) {
                char buf[32];
                FUZZ_CHECK(ex.internal > 0);
                sbx_expose_format(&ex, buf, sizeof buf);
                if (ex.external > 0)
                        FUZZ_CHECK(sbx_parse_expose(buf, &ex2, &reason) == 0 && ex2.internal == ex.internal &&
                                   ex2.external == ex.external && ex2.udp == ex.udp);
        }

        /* As an env entry "NAME=VALUE". */
        char *eq = strchr(s, '=');
        if (eq) {
                *eq = 0;
                (void) sbx_validate_env_name(s, &reason);
                (void) sbx_validate_env_value(eq + 1, &reason);
        }
        free(s);

        /* Sanitized output is NUL-free, at most 3x longer, and a fixed point. */
        char *u = utf8_sanitize((const char *) data, size);
        if (u) {
                size_t n = strlen(u);
                FUZZ_CHECK(n >= size && n <= 3 * size);
                /* Each replacement turns one byte into three, so an output
                 * as long as the input had nothing replaced. */
                FUZZ_CHECK(n != size || memcmp(u, data, size) == 0);
                char *v = utf8_sanitize(u, n);
                if (v) {
                        FUZZ_CHECK(strcmp(u, v) == 0);
                        free(v);
                }
                free(u);
        }
        return 0;
}
