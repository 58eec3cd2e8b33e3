/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-netd's domain names and allowlist patterns: the input is
 * "PATTERN\0NAME". Normalising is idempotent, a wildcard never matches its
 * own base name, an exact pattern matches only itself, and a match implies
 * the name ends with the pattern's suffix. */

#include <stdlib.h>
#include <string.h>

#include "domain-match.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char pattern[DOMAIN_NAME_MAX + 3], again[DOMAIN_NAME_MAX + 3], name[DOMAIN_NAME_MAX + 1];
        const uint8_t *nul = memchr(data, 0, size);
        size_t pl = nul ? (size_t) (nul - data) : size;
        const char *rest = nul ? (const char *) nul + 1 : "";
        size_t rl = nul ? size - pl - 1 : 0;
        char *p = strndup((const char *) data, pl);
        int np, nn;

        if (!p)
                return 0;
        np = domain_pattern_normalize(p, pattern);
        nn = domain_normalize(rest, rl, name);
        if (nn >= 0) {
                char norm2[DOMAIN_NAME_MAX + 1];
                FUZZ_CHECK((size_t) nn == strlen(name) && nn <= DOMAIN_NAME_MAX);
                FUZZ_CHECK(domain_normalize(name, (size_t) nn, norm2) == nn && strcmp(norm2, name) == 0);
        }
        if (np == 0) {
                FUZZ_CHECK(domain_pattern_normalize(pattern, again) == 0 && strcmp(again, pattern) == 0);
                bool wild = pattern[0] == '*';
                const char *base = wild ? pattern + 2 : pattern;
                FUZZ_CHECK(domain_pattern_match(pattern, base) == !wild);
                if (nn >= 0 && domain_pattern_match(pattern, name)) {
                        size_t bl = strlen(base);
                        FUZZ_CHECK((size_t) nn >= bl && strcmp(name + nn - bl, base) == 0);
                        if (wild)
                                FUZZ_CHECK((size_t) nn > bl + 1 && name[nn - bl - 1] == '.');
                        else
                                FUZZ_CHECK(strcmp(name, pattern) == 0);
                }
        }
        free(p);
        return 0;
}
