/* SPDX-License-Identifier: Apache-2.0 */
/* sbx_config_parse_line() on every line of the input, as sbx_config_load()
 * feeds them, into one SbxConfig (so replacing values is exercised too). */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        SbxConfig c = {};
        const uint8_t *p = data, *end = data + size;

        while (p < end) {
                const uint8_t *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = (size_t) ((nl ?: end) - p);
                char *line = malloc(n + 1);
                if (!line)
                        break;
                memcpy(line, p, n);
                line[n] = 0;

                int r = sbx_config_parse_line(&c, line);
                FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
                FUZZ_CHECK(c.accel <= SBX_ACCEL_TCG);
                FUZZ_CHECK(c.vcpus == 0 || (c.vcpus >= 1 && c.vcpus <= 64));
                FUZZ_CHECK(c.max_vms <= 4096);
                FUZZ_CHECK(c.max_vms_per_uid <= 4096 && c.max_sessions_per_uid <= 4096);
                FUZZ_CHECK(c.default_memory_mb == 0 || c.default_memory_mb >= 128);
                FUZZ_CHECK(!c.kernel || strlen(c.kernel) < 4096);

                free(line);
                p += n + 1;
        }
        sbx_config_done(&c);
        return 0;
}
