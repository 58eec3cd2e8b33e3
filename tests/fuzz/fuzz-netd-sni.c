/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-netd's TLS ClientHello SNI extractor on the first bytes a guest sends
 * to port 443: whatever it returns as a name is a valid host name in normal
 * form, and feeding the record in two parts gives the same answer. */

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "tls-sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char name[DOMAIN_NAME_MAX + 1], norm[DOMAIN_NAME_MAX + 1], again[DOMAIN_NAME_MAX + 1];
        int r = tls_client_hello_sni(data, size, name);

        FUZZ_CHECK(r > 0 || r == -EAGAIN || r == -ENOENT || r == -EPROTO || r == -EBADMSG);
        if (r > 0) {
                FUZZ_CHECK((size_t) r == strlen(name) && r <= DOMAIN_NAME_MAX);
                FUZZ_CHECK(domain_normalize(name, (size_t) r, norm) == r && strcmp(norm, name) == 0);
        }
        /* A decision made on a prefix (not EAGAIN) must not change with more data: the proxy acts on it. */
        if (size > 0) {
                int p = tls_client_hello_sni(data, size / 2, again);
                if (p != -EAGAIN && p != -EBADMSG) {
                        FUZZ_CHECK(p == r);
                        if (p > 0)
                                FUZZ_CHECK(strcmp(again, name) == 0);
                }
        }
        return 0;
}
