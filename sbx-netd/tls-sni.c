/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "tls-sni.h"

#define TLS_CONTENT_HANDSHAKE 22
#define TLS_HANDSHAKE_CLIENT_HELLO 1
#define TLS_EXT_SERVER_NAME 0
#define TLS_EXT_ECH 0xfe0d
#define TLS_SNI_HOST_NAME 0

typedef struct Cursor {
        const uint8_t *p;
        size_t n, off;
} Cursor;

static bool take(Cursor *c, size_t k, const uint8_t **ret) {
        if (k > c->n - c->off)
                return false;
        *ret = c->p + c->off;
        c->off += k;
        return true;
}

static bool take_u8(Cursor *c, size_t *v) {
        const uint8_t *b;
        if (!take(c, 1, &b))
                return false;
        *v = b[0];
        return true;
}

static bool take_u16(Cursor *c, size_t *v) {
        const uint8_t *b;
        if (!take(c, 2, &b))
                return false;
        *v = ((size_t) b[0] << 8) | b[1];
        return true;
}

static bool take_u24(Cursor *c, size_t *v) {
        const uint8_t *b;
        if (!take(c, 3, &b))
                return false;
        *v = ((size_t) b[0] << 16) | ((size_t) b[1] << 8) | b[2];
        return true;
}

/* A sub-cursor over the next len bytes. */
static bool take_sub(Cursor *c, size_t len, Cursor *sub) {
        const uint8_t *b;
        if (!take(c, len, &b))
                return false;
        *sub = (Cursor){.p = b, .n = len};
        return true;
}

static int parse_server_name(Cursor *ext, char out[static DOMAIN_NAME_MAX + 1]) {
        Cursor list;
        size_t len;

        if (!take_u16(ext, &len) || !take_sub(ext, len, &list) || ext->off != ext->n)
                return -EBADMSG;
        while (list.off < list.n) {
                const uint8_t *name;
                size_t type, nlen;

                if (!take_u8(&list, &type) || !take_u16(&list, &nlen) || !take(&list, nlen, &name))
                        return -EBADMSG;
                if (type != TLS_SNI_HOST_NAME)
                        continue;
                if (nlen == 0 || memchr(name, 0, nlen))
                        return -EBADMSG;
                int r = domain_normalize((const char *) name, nlen, out);
                return r < 0 ? -EBADMSG : r;
        }
        return -ENOENT;
}

int tls_client_hello_sni(const uint8_t *p, size_t n, char out[static DOMAIN_NAME_MAX + 1]) {
        Cursor rec = {.p = p, .n = n}, body, hello, exts;
        const uint8_t *b;
        size_t type, major, minor, len, hlen;
        int sni = -ENOENT;
        bool seen_sni = false;

        if (n < 5)
                return n > 0 && p[0] != TLS_CONTENT_HANDSHAKE ? -EBADMSG : -EAGAIN;
        if (!take_u8(&rec, &type) || !take_u8(&rec, &major) || !take_u8(&rec, &minor) || !take_u16(&rec, &len))
                return -EBADMSG;
        if (type != TLS_CONTENT_HANDSHAKE || major != 3 || minor > 4 || len == 0 || len > 16384)
                return -EBADMSG;
        if (!take_sub(&rec, len, &body))
                return -EAGAIN;

        if (!take_u8(&body, &type) || type != TLS_HANDSHAKE_CLIENT_HELLO || !take_u24(&body, &hlen))
                return -EBADMSG;
        if (!take_sub(&body, hlen, &hello)) /* split across records: refused */
                return -EBADMSG;

        /* legacy_version, random, session id, cipher suites, compression methods */
        if (!take(&hello, 2 + 32, &b))
                return -EBADMSG;
        if (!take_u8(&hello, &len) || len > 32 || !take(&hello, len, &b))
                return -EBADMSG;
        if (!take_u16(&hello, &len) || len < 2 || len % 2 != 0 || !take(&hello, len, &b))
                return -EBADMSG;
        if (!take_u8(&hello, &len) || len < 1 || !take(&hello, len, &b))
                return -EBADMSG;
        if (hello.off == hello.n)
                return -ENOENT; /* no extensions at all */
        if (!take_u16(&hello, &len) || !take_sub(&hello, len, &exts) || hello.off != hello.n)
                return -EBADMSG;

        while (exts.off < exts.n) {
                size_t etype, elen;
                Cursor ext;

                if (!take_u16(&exts, &etype) || !take_u16(&exts, &elen) || !take_sub(&exts, elen, &ext))
                        return -EBADMSG;
                if (etype == TLS_EXT_ECH)
                        return -EPROTO;
                if (etype == TLS_EXT_SERVER_NAME) {
                        if (seen_sni) /* duplicate extensions are illegal (RFC 8446 4.2) */
                                return -EBADMSG;
                        seen_sni = true;
                        sni = parse_server_name(&ext, out);
                        if (sni < 0 && sni != -ENOENT)
                                return sni;
                }
        }
        return sni;
}
