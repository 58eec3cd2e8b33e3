/* SPDX-License-Identifier: Apache-2.0 */
/* sbx-netd's DNS code on untrusted bytes: the input as a guest's query
 * (dns_parse_query, then the replies built from it), and as an upstream
 * response to a fixed question and to the question the input itself asked. */

#include <errno.h>
#include <string.h>

#include "dns-packet.h"
#include "fuzz.h"

static void check_response(const uint8_t *data, size_t size, const DnsQuery *q) {
        DnsAddress addrs[8];
        size_t n = 99;
        uint8_t rcode = 99;
        int r = dns_parse_response(data, size, q, addrs, 8, &n, &rcode);

        if (r == 0)
                FUZZ_CHECK(n <= 8 && rcode <= 15);
        else
                FUZZ_CHECK(r == -EBADMSG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static uint8_t out[DNS_MESSAGE_MAX];
        DnsQuery q = {}, fixed = {.name = "example.com", .qtype = DNS_TYPE_A, .qclass = DNS_CLASS_IN};
        char norm[DOMAIN_NAME_MAX + 1];
        int r;

        if (size >= 2)
                fixed.id = (uint16_t) ((data[0] << 8) | data[1]);
        check_response(data, size, &fixed);

        r = dns_parse_query(data, size, &q);
        if (r == -EBADMSG) {
                if (size >= 2)
                        FUZZ_CHECK(dns_build_formerr(data, size, out, sizeof out) == DNS_HEADER_SIZE);
                return 0;
        }
        if (r < 0) {
                FUZZ_CHECK(r == -EOPNOTSUPP);
                return 0;
        }
        /* An accepted query has a name in normal form. */
        size_t len = strlen(q.name);
        FUZZ_CHECK(len > 0 && len <= DOMAIN_NAME_MAX);
        FUZZ_CHECK(domain_normalize(q.name, len, norm) == (int) len && strcmp(norm, q.name) == 0);
        FUZZ_CHECK(q.question_end >= DNS_HEADER_SIZE + 2 + len + 4 && q.question_end <= size);

        /* Its NXDOMAIN is the header and question, and is a valid response to it. */
        int k = dns_build_empty_reply(&q, data, size, DNS_RCODE_NXDOMAIN, out, sizeof out);
        FUZZ_CHECK(k == (int) q.question_end);
        DnsAddress a[1];
        size_t n;
        uint8_t rcode;
        FUZZ_CHECK(dns_parse_response(out, (size_t) k, &q, a, 1, &n, &rcode) == 0);
        FUZZ_CHECK(n == 0 && rcode == DNS_RCODE_NXDOMAIN);

        check_response(data, size, &q);
        return 0;
}
