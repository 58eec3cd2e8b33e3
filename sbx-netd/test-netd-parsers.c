/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of sbx-netd's untrusted-input parsers: domain patterns, DNS
 * messages, the TLS ClientHello SNI and the HTTP Host header. */

#include <arpa/inet.h>
#include <string.h>

#include "dns-packet.h"
#include "domain-match.h"
#include "http-host.h"
#include "tests.h"
#include "tls-sni.h"

static void test_domain_normalize(void) {
        char out[DOMAIN_NAME_MAX + 1];
        char big[300];

        ASSERT_EQ(domain_normalize("Example.COM.", 12, out), 11);
        ASSERT_STREQ(out, "example.com");
        ASSERT_EQ(domain_normalize("a_b-c.d", 7, out), 7);
        ASSERT_ERROR(domain_normalize("", 0, out), EINVAL);
        ASSERT_ERROR(domain_normalize(".", 1, out), EINVAL);
        ASSERT_ERROR(domain_normalize("a..b", 4, out), EINVAL);
        ASSERT_ERROR(domain_normalize(".a", 2, out), EINVAL);
        ASSERT_ERROR(domain_normalize("a b", 3, out), EINVAL);
        ASSERT_ERROR(domain_normalize("a\0b", 3, out), EINVAL);
        ASSERT_ERROR(domain_normalize("[::1]", 5, out), EINVAL);
        ASSERT_ERROR(domain_normalize("a:80", 4, out), EINVAL);
        memset(big, 'a', 64);
        ASSERT_ERROR(domain_normalize(big, 64, out), EINVAL); /* label of 64 */
        ASSERT_EQ(domain_normalize(big, 63, out), 63);
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = i % 2 ? '.' : 'a';
        ASSERT_EQ(domain_normalize(big, 253, out), 253);
        ASSERT_ERROR(domain_normalize(big, 255, out), EINVAL);
}

static void test_domain_pattern(void) {
        char p[DOMAIN_NAME_MAX + 3];

        ASSERT_OK(domain_pattern_normalize("*.Example.com", p));
        ASSERT_STREQ(p, "*.example.com");
        ASSERT_TRUE(domain_pattern_match(p, "a.example.com"));
        ASSERT_TRUE(domain_pattern_match(p, "x.y.example.com"));
        ASSERT_FALSE(domain_pattern_match(p, "example.com"));
        ASSERT_FALSE(domain_pattern_match(p, "badexample.com"));
        ASSERT_FALSE(domain_pattern_match(p, "example.com.evil.net"));
        ASSERT_OK(domain_pattern_normalize("example.com.", p));
        ASSERT_TRUE(domain_pattern_match(p, "example.com"));
        ASSERT_FALSE(domain_pattern_match(p, "a.example.com"));
        ASSERT_FALSE(domain_pattern_match(p, "example.co"));
        ASSERT_ERROR(domain_pattern_normalize("*", p), EINVAL);
        ASSERT_ERROR(domain_pattern_normalize("*.com", p), EINVAL);
        ASSERT_ERROR(domain_pattern_normalize("a.*.com", p), EINVAL);
        ASSERT_ERROR(domain_pattern_normalize("*example.com", p), EINVAL);
        ASSERT_ERROR(domain_pattern_normalize("**.example.com", p), EINVAL);
        ASSERT_ERROR(domain_pattern_normalize("", p), EINVAL);
}

/* A query for name/type, as a stub resolver sends it. */
static size_t make_query(uint8_t *b, uint16_t id, const char *name, uint16_t type) {
        size_t o = 12;
        memset(b, 0, 12);
        b[0] = (uint8_t) (id >> 8);
        b[1] = (uint8_t) id;
        b[2] = 0x01; /* RD */
        b[5] = 1;
        for (const char *s = name; *s;) {
                const char *dot = strchr(s, '.');
                size_t l = dot ? (size_t) (dot - s) : strlen(s);
                b[o++] = (uint8_t) l;
                memcpy(b + o, s, l);
                o += l;
                s += l + (dot ? 1 : 0);
        }
        b[o++] = 0;
        b[o++] = (uint8_t) (type >> 8);
        b[o++] = (uint8_t) type;
        b[o++] = 0;
        b[o++] = 1;
        return o;
}

static void test_dns(void) {
        uint8_t q[512], r[512], out[512];
        DnsQuery dq;
        DnsAddress addrs[4];
        size_t n, na;
        uint8_t rcode;

        n = make_query(q, 0x1234, "WWW.Example.com", DNS_TYPE_A);
        ASSERT_OK(dns_parse_query(q, n, &dq));
        ASSERT_EQ(dq.id, 0x1234);
        ASSERT_STREQ(dq.name, "www.example.com");
        ASSERT_EQ(dq.qtype, DNS_TYPE_A);
        ASSERT_EQ(dq.question_end, n);

        /* NXDOMAIN reply echoes id and question */
        int l = dns_build_empty_reply(&dq, q, n, DNS_RCODE_NXDOMAIN, out, sizeof out);
        ASSERT_EQ(l, (int) n);
        ASSERT_EQ(out[0], 0x12);
        ASSERT_EQ(out[3] & 0xf, DNS_RCODE_NXDOMAIN);
        ASSERT_TRUE(out[2] & 0x80);
        ASSERT_EQ(out[7], 0);
        ASSERT_ERROR(dns_build_empty_reply(&dq, q, n, 3, out, 5), ENOBUFS);

        /* response: question, CNAME (compressed owner), two A records */
        memcpy(r, q, n);
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 3;
        size_t o = n;
        const uint8_t cname[] = {0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, 'c', 'd', 'n', 0xc0, 16};
        memcpy(r + o, cname, sizeof cname);
        o += sizeof cname;
        for (int i = 0; i < 2; i++) {
                const uint8_t a[] = {0xc0, (uint8_t) (n + 12), 0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 192, 0,
                                     2,    (uint8_t) (10 + i)};
                memcpy(r + o, a, sizeof a);
                o += sizeof a;
        }
        ASSERT_OK(dns_parse_response(r, o, &dq, addrs, 4, &na, &rcode));
        ASSERT_EQ(na, 2);
        ASSERT_EQ(rcode, 0);
        ASSERT_EQ(addrs[0].addr, inet_addr("192.0.2.10"));
        ASSERT_EQ(addrs[1].addr, inet_addr("192.0.2.11"));
        ASSERT_EQ(addrs[0].ttl, 256);
        /* max bounds what is collected */
        ASSERT_OK(dns_parse_response(r, o, &dq, addrs, 1, &na, &rcode));
        ASSERT_EQ(na, 1);
        /* truncated, wrong id, wrong question */
        ASSERT_ERROR(dns_parse_response(r, o - 1, &dq, addrs, 4, &na, &rcode), EBADMSG);
        r[1] ^= 1;
        ASSERT_ERROR(dns_parse_response(r, o, &dq, addrs, 4, &na, &rcode), EBADMSG);
        r[1] ^= 1;
        r[13] = 'x';
        ASSERT_ERROR(dns_parse_response(r, o, &dq, addrs, 4, &na, &rcode), EBADMSG);
        r[13] = 'W';
        ASSERT_OK(dns_parse_response(r, o, &dq, addrs, 4, &na, &rcode)); /* case-insensitive */
        /* a pointer loop is refused, not followed forever */
        uint8_t loop[64];
        n = make_query(loop, 7, "a", DNS_TYPE_A);
        ASSERT_OK(dns_parse_query(loop, n, &dq));
        loop[2] = 0x81;
        loop[12] = 0xc0;
        loop[13] = 12;
        ASSERT_ERROR(dns_parse_response(loop, n, &dq, addrs, 4, &na, &rcode), EBADMSG);

        /* malformed and unsupported queries */
        n = make_query(q, 1, "example.com", DNS_TYPE_A);
        ASSERT_ERROR(dns_parse_query(q, 11, &dq), EBADMSG);
        ASSERT_ERROR(dns_parse_query(q, n - 1, &dq), EBADMSG);
        q[2] |= 0x80;
        ASSERT_ERROR(dns_parse_query(q, n, &dq), EBADMSG); /* a response */
        q[2] = 0x01 | (2 << 3);
        ASSERT_ERROR(dns_parse_query(q, n, &dq), EOPNOTSUPP); /* opcode 2 */
        q[2] = 0x01;
        q[5] = 2;
        ASSERT_ERROR(dns_parse_query(q, n, &dq), EBADMSG); /* two questions */
        q[5] = 1;
        q[12] = 0xc0;
        ASSERT_ERROR(dns_parse_query(q, n, &dq), EBADMSG); /* compression in a query */
        n = make_query(q, 1, "bad name.com", DNS_TYPE_A);
        ASSERT_ERROR(dns_parse_query(q, n, &dq), EOPNOTSUPP);
        /* one label "allowed.test" must not pass for the two-label name allowed.test */
        n = make_query(q, 1, "xallowed.test", DNS_TYPE_A);
        q[12] = 12;
        q[13] = 'a';
        memcpy(q + 14, "llowed.test", 11);
        q[25] = 0;
        ASSERT_ERROR(dns_parse_query(q, 30, &dq), EOPNOTSUPP);
        ASSERT_EQ(dq.question_end, 30);
        ASSERT_EQ(dns_build_formerr(q, n, out, sizeof out), 12);
        ASSERT_EQ(out[3] & 0xf, DNS_RCODE_FORMERR);
}

/* A ClientHello record with the given extensions block. */
static size_t make_hello(uint8_t *b, const uint8_t *ext, size_t extlen) {
        size_t o = 0, hs, hello;
        b[o++] = 22;
        b[o++] = 3;
        b[o++] = 1;
        o += 2; /* record length */
        hs = o;
        b[o++] = 1;
        o += 3; /* handshake length */
        hello = o;
        b[o++] = 3;
        b[o++] = 3;
        memset(b + o, 0xab, 32);
        o += 32;
        b[o++] = 0; /* session id */
        b[o++] = 0;
        b[o++] = 2;
        b[o++] = 0x13;
        b[o++] = 0x01;
        b[o++] = 1;
        b[o++] = 0; /* null compression */
        b[o++] = (uint8_t) (extlen >> 8);
        b[o++] = (uint8_t) extlen;
        memcpy(b + o, ext, extlen);
        o += extlen;
        size_t rl = o - hs, hl = o - hello;
        b[3] = (uint8_t) (rl >> 8);
        b[4] = (uint8_t) rl;
        b[hs + 1] = 0;
        b[hs + 2] = (uint8_t) (hl >> 8);
        b[hs + 3] = (uint8_t) hl;
        return o;
}

static void test_tls_sni(void) {
        char out[DOMAIN_NAME_MAX + 1];
        uint8_t b[512];
        const uint8_t sni[] = {0,   0,   0,   16,  0,   14,  0,   0, 11, 'E', 'x', 'a', 'm',
                               'p', 'l', 'e', '.', 'c', 'o', 'm', 0, 10, 0,   2,   0,   29};
        size_t n = make_hello(b, sni, sizeof sni);

        ASSERT_EQ(tls_client_hello_sni(b, n, out), 11);
        ASSERT_STREQ(out, "example.com");
        for (size_t k = 0; k < n; k++)
                ASSERT_ERROR(tls_client_hello_sni(b, k, out), EAGAIN);
        b[0] = 'G';
        ASSERT_ERROR(tls_client_hello_sni(b, n, out), EBADMSG);
        ASSERT_ERROR(tls_client_hello_sni(b, 1, out), EBADMSG);

        const uint8_t none[] = {0, 10, 0, 2, 0, 29};
        n = make_hello(b, none, sizeof none);
        ASSERT_ERROR(tls_client_hello_sni(b, n, out), ENOENT);

        const uint8_t ech[] = {0,   0,   0,   16,  0,   14,  0,   0,    11,   'e', 'x', 'a', 'm',
                               'p', 'l', 'e', '.', 'c', 'o', 'm', 0xfe, 0x0d, 0,   1,   0};
        n = make_hello(b, ech, sizeof ech);
        ASSERT_ERROR(tls_client_hello_sni(b, n, out), EPROTO);

        const uint8_t ip[] = {0, 0, 0, 14, 0, 12, 0, 0, 9, '1', '.', '2', '.', '3', '.', '4', ':', '5'};
        n = make_hello(b, ip, sizeof ip);
        ASSERT_ERROR(tls_client_hello_sni(b, n, out), EBADMSG);

        const uint8_t dup[] = {0, 0, 0, 6, 0, 4, 0, 0, 1, 'a', 0, 0, 0, 6, 0, 4, 0, 0, 1, 'b'};
        n = make_hello(b, dup, sizeof dup);
        ASSERT_ERROR(tls_client_hello_sni(b, n, out), EBADMSG);

        const uint8_t overrun[] = {0, 0, 0, 40, 0, 14};
        n = make_hello(b, overrun, sizeof overrun);
        ASSERT_ERROR(tls_client_hello_sni(b, n, out), EBADMSG);
}

static int host(const char *req, char *out) {
        return http_request_host((const uint8_t *) req, strlen(req), out);
}

static void test_http_host(void) {
        char out[DOMAIN_NAME_MAX + 1];
        uint8_t big[HTTP_HEADER_MAX + 10];

        ASSERT_EQ(host("GET / HTTP/1.1\r\nHost: Example.com:8080\r\nAccept: */*\r\n\r\n", out), 11);
        ASSERT_STREQ(out, "example.com");
        ASSERT_EQ(host("GET /x HTTP/1.0\r\nUser-Agent: a\r\nhost:\ta.b \r\n\r\nbody", out), 3);
        ASSERT_STREQ(out, "a.b");
        ASSERT_EQ(host("GET http://a.b/x HTTP/1.1\r\nHost: a.b\r\n\r\n", out), 3);
        ASSERT_ERROR(host("GET http://c.d/x HTTP/1.1\r\nHost: a.b\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\nHost: a.b\r\n", out), EAGAIN);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\n\r\n", out), ENOENT);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\nHost: a.b\r\nHost: c.d\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("CONNECT a.b:443 HTTP/1.1\r\nHost: a.b\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("GET / HTTP/2.0\r\nHost: a.b\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\n Host: a.b\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("GET / HTTP/1.1\r\nHost: a.b:\r\n\r\n", out), EBADMSG);
        ASSERT_ERROR(host("\x16\x03\x01", out), EAGAIN);
        memset(big, 'a', sizeof big);
        ASSERT_ERROR(http_request_host(big, sizeof big, out), EMSGSIZE);
}

int main(void) {
        TEST(test_domain_normalize);
        TEST(test_domain_pattern);
        TEST(test_dns);
        TEST(test_tls_sni);
        TEST(test_http_host);
        return 0;
}
