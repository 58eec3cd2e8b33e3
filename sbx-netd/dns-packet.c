/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "dns-packet.h"

#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_RD 0x0100u
#define DNS_FLAG_RA 0x0080u
#define DNS_OPCODE(f) (((f) >> 11) & 0xfu)
/* Enough for any chain of compression pointers in a 4 KiB message. */
#define DNS_MAX_POINTERS 32

static uint16_t rd16(const uint8_t *p) {
        return (uint16_t) ((p[0] << 8) | p[1]);
}

static uint32_t rd32(const uint8_t *p) {
        return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
}

static void wr16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
}

/* Reads an uncompressed name at *off into text (not validated). */
static int read_plain_name(const uint8_t *p, size_t n, size_t *off, char *text, size_t *ret_len) {
        size_t o = *off, len = 0;

        for (;;) {
                if (o >= n)
                        return -EBADMSG;
                uint8_t l = p[o++];
                if (l == 0)
                        break;
                if (l > DOMAIN_LABEL_MAX) /* compression or a reserved label type */
                        return -EBADMSG;
                if (o + l > n || len + l + 1 > DOMAIN_NAME_MAX + 1)
                        return -EBADMSG;
                if (len > 0)
                        text[len++] = '.';
                if (memchr(p + o, '.', l)) /* "a.b" as one label: not the name it would read as */
                        return -EOPNOTSUPP;
                memcpy(text + len, p + o, l);
                len += l;
                o += l;
        }
        text[len] = 0;
        *off = o;
        *ret_len = len;
        return 0;
}

/* Skips a possibly compressed name. Only the position after it matters. */
static int skip_name(const uint8_t *p, size_t n, size_t *off) {
        size_t o = *off;

        for (;;) {
                if (o >= n)
                        return -EBADMSG;
                uint8_t l = p[o];
                if (l == 0) {
                        *off = o + 1;
                        return 0;
                }
                if ((l & 0xc0) == 0xc0) {
                        if (o + 2 > n)
                                return -EBADMSG;
                        *off = o + 2;
                        return 0;
                }
                if (l > DOMAIN_LABEL_MAX)
                        return -EBADMSG;
                o += 1 + (size_t) l;
        }
}

/* Compares the (possibly compressed) name at *off with text, case-insensitively. */
static int name_equals(const uint8_t *p, size_t n, size_t *off, const char *text, int *ret_equal) {
        size_t o = *off, t = 0, tl = strlen(text);
        bool equal = true;
        unsigned pointers = 0;
        int r;

        r = skip_name(p, n, off);
        if (r < 0)
                return r;

        for (;;) {
                if (o >= n)
                        return -EBADMSG;
                uint8_t l = p[o];
                if (l == 0)
                        break;
                if ((l & 0xc0) == 0xc0) {
                        if (o + 2 > n || ++pointers > DNS_MAX_POINTERS)
                                return -EBADMSG;
                        o = ((size_t) (l & 0x3f) << 8) | p[o + 1];
                        continue;
                }
                if (l > DOMAIN_LABEL_MAX || o + 1 + l > n)
                        return -EBADMSG;
                if (memchr(p + o + 1, '.', l))
                        equal = false;
                if (t > 0) {
                        if (t >= tl || text[t] != '.')
                                equal = false;
                        t++;
                }
                for (size_t i = 0; i < l && equal; i++) {
                        char c = (char) p[o + 1 + i];
                        if (c >= 'A' && c <= 'Z')
                                c = (char) (c - 'A' + 'a');
                        if (t + i >= tl || text[t + i] != c)
                                equal = false;
                }
                t += l;
                o += 1 + (size_t) l;
        }
        *ret_equal = equal && t == tl;
        return 0;
}

int dns_parse_query(const uint8_t *p, size_t n, DnsQuery *q) {
        char raw[DOMAIN_NAME_MAX + 2];
        size_t off = DNS_HEADER_SIZE, len;
        int r;

        if (n < DNS_HEADER_SIZE || n > DNS_MESSAGE_MAX)
                return -EBADMSG;

        *q = (DnsQuery){
                .id = rd16(p),
                .flags = rd16(p + 2),
        };
        if (q->flags & DNS_FLAG_QR)
                return -EBADMSG;
        if (DNS_OPCODE(q->flags) != 0)
                return -EOPNOTSUPP;
        if (rd16(p + 4) != 1 || rd16(p + 6) != 0 || rd16(p + 8) != 0 || rd16(p + 10) > 1)
                return -EBADMSG;

        r = read_plain_name(p, n, &off, raw, &len);
        if (r == -EOPNOTSUPP) {
                /* Skip the rest of the name so the question can still be echoed. */
                while (off < n && p[off] != 0 && p[off] <= DOMAIN_LABEL_MAX)
                        off += 1 + (size_t) p[off];
                if (off >= n || p[off] != 0 || off + 5 > n)
                        return -EBADMSG;
                q->question_end = off + 5;
                return -EOPNOTSUPP;
        }
        if (r < 0)
                return r;
        if (off + 4 > n)
                return -EBADMSG;
        q->qtype = rd16(p + off);
        q->qclass = rd16(p + off + 2);
        q->question_end = off + 4;

        /* The root name or one that is not a host name: not something to resolve. */
        if (len == 0 || memchr(raw, 0, len) || domain_normalize(raw, len, q->name) < 0)
                return -EOPNOTSUPP;
        if (q->qclass != DNS_CLASS_IN)
                return -EOPNOTSUPP;
        return 0;
}

int dns_parse_response(const uint8_t *p, size_t n, const DnsQuery *q, DnsAddress *addrs, size_t max, size_t *ret_n,
                       uint8_t *ret_rcode) {
        size_t off = DNS_HEADER_SIZE, found = 0;
        int r, equal;

        if (n < DNS_HEADER_SIZE || n > DNS_MESSAGE_MAX)
                return -EBADMSG;
        uint16_t flags = rd16(p + 2);
        if (rd16(p) != q->id || !(flags & DNS_FLAG_QR) || DNS_OPCODE(flags) != 0 || rd16(p + 4) != 1)
                return -EBADMSG;
        uint16_t ancount = rd16(p + 6);

        r = name_equals(p, n, &off, q->name, &equal);
        if (r < 0)
                return r;
        if (!equal || off + 4 > n || rd16(p + off) != q->qtype || rd16(p + off + 2) != q->qclass)
                return -EBADMSG;
        off += 4;

        for (unsigned i = 0; i < ancount; i++) {
                r = skip_name(p, n, &off);
                if (r < 0)
                        return r;
                if (off + 10 > n)
                        return -EBADMSG;
                uint16_t type = rd16(p + off), class = rd16(p + off + 2);
                uint32_t ttl = rd32(p + off + 4);
                uint16_t rdlen = rd16(p + off + 8);
                off += 10;
                if (off + rdlen > n)
                        return -EBADMSG;
                if (type == DNS_TYPE_A && class == DNS_CLASS_IN) {
                        if (rdlen != 4)
                                return -EBADMSG;
                        if (found < max) {
                                memcpy(&addrs[found].addr, p + off, 4);
                                addrs[found].ttl = ttl > INT32_MAX ? 0 : ttl; /* RFC 2181 8 */
                                found++;
                        }
                }
                off += rdlen;
        }

        *ret_n = found;
        *ret_rcode = (uint8_t) (flags & 0xf);
        return 0;
}

int dns_build_empty_reply(const DnsQuery *q, const uint8_t *query, size_t n, uint8_t rcode, uint8_t *out,
                          size_t outsz) {
        if (q->question_end > n || q->question_end < DNS_HEADER_SIZE || q->question_end > outsz)
                return -ENOBUFS;

        memcpy(out, query, q->question_end);
        wr16(out + 2, (uint16_t) (DNS_FLAG_QR | (q->flags & DNS_FLAG_RD) | DNS_FLAG_RA | (rcode & 0xf)));
        wr16(out + 4, 1);
        wr16(out + 6, 0);
        wr16(out + 8, 0);
        wr16(out + 10, 0);
        return (int) q->question_end;
}

int dns_build_formerr(const uint8_t *query, size_t n, uint8_t *out, size_t outsz) {
        if (n < 2 || outsz < DNS_HEADER_SIZE)
                return -ENOBUFS;
        memset(out, 0, DNS_HEADER_SIZE);
        memcpy(out, query, 2);
        wr16(out + 2, DNS_FLAG_QR | DNS_FLAG_RA | DNS_RCODE_FORMERR);
        return DNS_HEADER_SIZE;
}
