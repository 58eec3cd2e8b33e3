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
