/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "domain-match.h"

/* DNS messages (RFC 1035) from untrusted guests and from the upstream
 * resolver: a bounded parser for queries, an A-record extractor for
 * responses and a builder for the replies sbx-netd makes itself. */

#define DNS_HEADER_SIZE 12
#define DNS_MESSAGE_MAX 4096
#define DNS_TYPE_A 1
#define DNS_TYPE_CNAME 5
#define DNS_TYPE_OPT 41
#define DNS_CLASS_IN 1
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_FORMERR 1
#define DNS_RCODE_SERVFAIL 2
#define DNS_RCODE_NXDOMAIN 3
#define DNS_RCODE_REFUSED 5

typedef struct DnsQuery {
        uint16_t id;
        uint16_t flags;
        char name[DOMAIN_NAME_MAX + 1]; /* normal form, see domain_normalize() */
        uint16_t qtype;
        uint16_t qclass;
        size_t question_end; /* offset just past the question */
} DnsQuery;

typedef struct DnsAddress {
        uint32_t addr; /* network byte order */
        uint32_t ttl;
} DnsAddress;

/* A standard query with exactly one question (QR=0, OPCODE=0, no answer or
 * authority records, at most one additional record for EDNS). The name must
 * be a valid host name without compression. Returns 0, -EBADMSG (malformed:
 * answer FORMERR if an id could be read, i.e. n >= 2) or -EOPNOTSUPP (a
 * well-formed message that is not such a query: answer REFUSED). */
int dns_parse_query(const uint8_t *p, size_t n, DnsQuery *q);

/* An upstream response to q: checks QR, the id and that the question is the
 * same, then collects up to max A records of class IN from the answer section
 * (their owner names may be CNAME targets). Returns 0 with *ret_n and
 * *ret_rcode set, or -EBADMSG. */
int dns_parse_response(const uint8_t *p, size_t n, const DnsQuery *q, DnsAddress *addrs, size_t max, size_t *ret_n,
                       uint8_t *ret_rcode);

/* A reply to q with no records (QR=1, RD copied, RA=1, the question echoed):
 * NXDOMAIN, REFUSED, or NOERROR with no data. query/n is the message q was
 * parsed from. Returns the length written or -ENOBUFS. */
int dns_build_empty_reply(const DnsQuery *q, const uint8_t *query, size_t n, uint8_t rcode, uint8_t *out, size_t outsz);

/* FORMERR for a message of which only the id is known (n >= 2). */
int dns_build_formerr(const uint8_t *query, size_t n, uint8_t *out, size_t outsz);
