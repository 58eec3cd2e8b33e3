/* SPDX-License-Identifier: Apache-2.0 */
/* File paths from a session caller: the broker's check (sbx_validate_path)
 * and the guest's lexical check and normaliser (path_check). Whatever both
 * accept must be relative, free of "..", and within the length limits. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "path-check.h"
#include "proto.h"
#include "validate.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char out[PATH_CHECK_MAX + 1];
        const char *reason = NULL;

        int g = path_check((const char *) data, size, out, sizeof out);
        if (g == 0) {
                size_t n = strlen(out);
                FUZZ_CHECK(n <= size && n <= PATH_CHECK_MAX);
                FUZZ_CHECK(out[0] != '/');
                FUZZ_CHECK(strcmp(out, "..") != 0 && strncmp(out, "../", 3) != 0 && !strstr(out, "/../"));
                FUZZ_CHECK(n < 3 || strcmp(out + n - 3, "/..") != 0);
                /* Normalising is idempotent. */
                static char again[PATH_CHECK_MAX + 1];
                FUZZ_CHECK(path_check(out, n, again, sizeof again) == 0 && strcmp(out, again) == 0);
        } else
                FUZZ_CHECK(g == -EINVAL || g == -ENAMETOOLONG);

        char *s = strndup((const char *) data, size);
        if (!s)
                return 0;
        int h = sbx_validate_path(s, true, &reason);
        FUZZ_CHECK(h == 0 || reason);
        /* What the broker lets through, the guest must not find escaping. */
        if (h == 0 && strlen(s) == size)
                FUZZ_CHECK(path_check(s, size, out, sizeof out) == 0);
        free(s);
        return 0;
}
