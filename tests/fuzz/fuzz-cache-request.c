/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-cache's request parser (a worker next to a guest is its client): the first byte picks the
 * request type, the rest is the TLV payload. Whatever parses must be bounded and NUL-terminated. */

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "cache-request.h"

static int hex_only(const char *s) {
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return 0;
        return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        CacheRequest q;
        const char *reason = NULL;

        if (size < 1)
                return 0;
        int r = cache_request_parse(data[0], data + 1, size - 1, &q, &reason);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        if (r < 0) {
                FUZZ_CHECK(reason != NULL);
                return 0;
        }
        FUZZ_CHECK(q.n_fds <= 4);
        FUZZ_CHECK(memchr(q.settings, 0, sizeof q.settings) && memchr(q.key, 0, sizeof q.key) &&
                   memchr(q.language, 0, sizeof q.language) && memchr(q.qemu_version, 0, sizeof q.qemu_version) &&
                   memchr(q.note, 0, sizeof q.note));
        /* A key is a file name in the cache directory: 64 hex digits or nothing. */
        FUZZ_CHECK(q.key[0] == 0 || (strlen(q.key) == 64 && hex_only(q.key)));
        FUZZ_CHECK(!strchr(q.language, '/') && !strchr(q.qemu_version, '/'));
        FUZZ_CHECK(q.n_prefixes <= SBX_CACHE_PREFIX_MAX);
        for (size_t i = 0; i < q.n_prefixes; i++)
                FUZZ_CHECK(hex_only(q.prefixes[i]));
        for (const char *p = q.note; *p; p++)
                FUZZ_CHECK(*p >= ' ' && *p <= '~');
        return 0;
}
