/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "http-host.h"

static bool is_tchar(uint8_t c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "host[:port]" -> normal form of host. */
static int parse_authority(const uint8_t *v, size_t n, char out[static DOMAIN_NAME_MAX + 1]) {
        size_t hl = n;

        for (size_t i = 0; i < n; i++)
                if (v[i] == ':') {
                        hl = i;
                        if (i + 1 == n || n - i - 1 > 5)
                                return -EBADMSG;
                        for (size_t j = i + 1; j < n; j++)
                                if (v[j] < '0' || v[j] > '9')
                                        return -EBADMSG;
                        break;
                }
        if (hl == 0 || memchr(v, 0, hl))
                return -EBADMSG;
        int r = domain_normalize((const char *) v, hl, out);
        return r < 0 ? -EBADMSG : r;
}

int http_request_host(const uint8_t *p, size_t n, char out[static DOMAIN_NAME_MAX + 1]) {
        char target_host[DOMAIN_NAME_MAX + 1] = "";
        const uint8_t *end = NULL;
        size_t line_end, off;
        bool found = false;
        int r, len = -ENOENT;

        for (size_t i = 0; i + 3 < n && i + 4 <= HTTP_HEADER_MAX; i++)
                if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
                        end = p + i + 2; /* keep the last header line's CRLF */
                        break;
                }
        if (!end)
                return n >= HTTP_HEADER_MAX ? -EMSGSIZE : -EAGAIN;
        n = (size_t) (end - p);

        /* request line: method SP target SP HTTP/1.x CRLF */
        const uint8_t *crlf = memmem(p, n, "\r\n", 2);
        if (!crlf)
                return -EBADMSG;
        line_end = (size_t) (crlf - p);
        size_t m = 0;
        while (m < line_end && is_tchar(p[m]))
                m++;
        if (m == 0 || m >= line_end || p[m] != ' ')
                return -EBADMSG;
        if (m == 7 && memcmp(p, "CONNECT", 7) == 0)
                return -EBADMSG;
        const uint8_t *target = p + m + 1;
        const uint8_t *sp = memchr(target, ' ', line_end - m - 1);
        if (!sp || sp == target)
                return -EBADMSG;
        size_t tlen = (size_t) (sp - target);
        size_t vlen = line_end - (size_t) (sp + 1 - p);
        if (vlen != 8 || memcmp(sp + 1, "HTTP/1.", 7) != 0 || (sp[8] != '0' && sp[8] != '1'))
                return -EBADMSG;
        if (tlen > 7 && strncasecmp((const char *) target, "http://", 7) == 0) {
                const uint8_t *a = target + 7, *slash = memchr(a, '/', tlen - 7);
                size_t alen = slash ? (size_t) (slash - a) : tlen - 7;
                if (memchr(a, '@', alen))
                        return -EBADMSG;
                r = parse_authority(a, alen, target_host);
                if (r < 0)
                        return r;
        } else if (target[0] != '/' && !(tlen == 1 && target[0] == '*'))
                return -EBADMSG;

        /* header lines */
        off = line_end + 2;
        while (off < n) {
                crlf = memmem(p + off, n - off, "\r\n", 2);
                if (!crlf)
                        return -EBADMSG;
                size_t le = (size_t) (crlf - p), k = off;
                while (k < le && is_tchar(p[k]))
                        k++;
                if (k == off || k >= le || p[k] != ':') /* also refuses obsolete line folding */
                        return -EBADMSG;
                if (k - off == 4 && strncasecmp((const char *) p + off, "host", 4) == 0) {
                        size_t vs = k + 1, ve = le;
                        while (vs < ve && (p[vs] == ' ' || p[vs] == '\t'))
                                vs++;
                        while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
                                ve--;
                        if (found)
                                return -EBADMSG;
                        found = true;
                        len = parse_authority(p + vs, ve - vs, out);
                        if (len < 0)
                                return len;
                }
                off = le + 2;
        }

        if (found && target_host[0] && strcmp(target_host, out) != 0)
                return -EBADMSG;
        return len;
}
