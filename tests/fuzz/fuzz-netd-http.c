/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-netd's HTTP/1 Host extractor on the first bytes a guest sends to port
 * 80: a returned name is a valid host name in normal form, and nothing past
 * HTTP_HEADER_MAX is needed for a decision. */

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "http-host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char name[DOMAIN_NAME_MAX + 1], norm[DOMAIN_NAME_MAX + 1];
        int r = http_request_host(data, size, name);

        FUZZ_CHECK(r > 0 || r == -EAGAIN || r == -EMSGSIZE || r == -ENOENT || r == -EBADMSG);
        if (r > 0) {
                FUZZ_CHECK((size_t) r == strlen(name) && r <= DOMAIN_NAME_MAX);
                FUZZ_CHECK(domain_normalize(name, (size_t) r, norm) == r && strcmp(norm, name) == 0);
        }
        if (r == -EAGAIN)
                FUZZ_CHECK(size < HTTP_HEADER_MAX);
        return 0;
}
