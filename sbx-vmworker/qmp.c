/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "macro.h"
#include "qmp.h"

/* ---- the parser ---- */

typedef struct Parser {
        const char *p, *end;
        unsigned depth;
        /* the keys leading to the current value (at most 4 levels are tracked) */
        const char *path[4];
        char keys[4][24];
        QmpReply *r;
        bool top_seen;
} Parser;

static void skip_ws(Parser *ps) {
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n'))
                ps->p++;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* A JSON string; its decoded text goes to out (truncated to size - 1, non-ASCII as '?') if out. */
static int parse_string(Parser *ps, char *out, size_t size) {
        size_t o = 0;

        if (ps->p >= ps->end || *ps->p != '"')
                return -EBADMSG;
        ps->p++;
        while (ps->p < ps->end) {
                unsigned char c = (unsigned char) *ps->p++;
                if (c == '"') {
                        if (out && size > 0)
                                out[o] = 0;
                        return 0;
                }
                if (c < 0x20)
                        return -EBADMSG;
                if (c == '\\') {
                        if (ps->p >= ps->end)
                                return -EBADMSG;
                        char e = *ps->p++;
                        switch (e) {
                        case '"':
                        case '\\':
                        case '/':
                                c = (unsigned char) e;
                                break;
                        case 'b':
                                c = '\b';
                                break;
                        case 'f':
                                c = '\f';
                                break;
                        case 'n':
                                c = '\n';
                                break;
                        case 'r':
                                c = '\r';
                                break;
                        case 't':
                                c = '\t';
                                break;
                        case 'u': {
                                unsigned v = 0;
                                if (ps->end - ps->p < 4)
                                        return -EBADMSG;
                                for (int i = 0; i < 4; i++) {
                                        int h = hexval(ps->p[i]);
                                        if (h < 0)
                                                return -EBADMSG;
                                        v = v * 16u + (unsigned) h;
                                }
                                ps->p += 4;
                                c = v >= 0x20 && v < 0x7f ? (unsigned char) v : '?';
                                break;
                        }
                        default:
                                return -EBADMSG;
                        }
                } else if (c >= 0x80)
                        c = '?';
                if (out && o + 1 < size)
                        out[o++] = (char) c;
        }
        return -EBADMSG;
}

static bool path_is(Parser *ps, unsigned depth, const char *a, const char *b, const char *c, const char *d) {
        const char *want[4] = {a, b, c, d};
        unsigned n = 0;
        while (n < 4 && want[n])
                n++;
        if (depth != n)
                return false;
        for (unsigned i = 0; i < n; i++)
                if (!ps->path[i] || strcmp(ps->path[i], want[i]) != 0)
                        return false;
        return true;
}

static int parse_value(Parser *ps);

static int parse_number(Parser *ps, long long *ret) {
        const char *s = ps->p;
        bool digits = false;
        long long v = 0;
        bool neg = false, integral = true;

        if (ps->p < ps->end && *ps->p == '-') {
                neg = true;
                ps->p++;
        }
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
                if (v < 100000000000000LL)
                        v = v * 10 + (*ps->p - '0');
                ps->p++;
                digits = true;
        }
        if (!digits)
                return -EBADMSG;
        if (ps->p < ps->end && *ps->p == '.') {
                integral = false;
                ps->p++;
                digits = false;
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++, digits = true;
                if (!digits)
                        return -EBADMSG;
        }
        if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
                integral = false;
                ps->p++;
                if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
                        ps->p++;
                digits = false;
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++, digits = true;
                if (!digits)
                        return -EBADMSG;
        }
        (void) s;
        *ret = integral ? (neg ? -v : v) : -1;
        return 0;
}

static int parse_literal(Parser *ps, const char *lit) {
        size_t n = strlen(lit);
        if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0)
                return -EBADMSG;
        ps->p += n;
        return 0;
}

/* What follows a member of an object or an element of an array: 1 after ',' (another one comes),
 * 0 after the closing bracket, -EBADMSG otherwise. */
static int after_member(Parser *ps, char close) {
        skip_ws(ps);
        if (ps->p >= ps->end)
                return -EBADMSG;
        if (*ps->p == ',') {
                ps->p++;
                return 1;
        }
        if (*ps->p == close) {
                ps->p++;
                return 0;
        }
        return -EBADMSG;
}

static int parse_object(Parser *ps) {
        unsigned depth = ps->depth; /* keys of this object are path[depth] */
        bool first = true;
        int r;

        ps->p++; /* { */
        for (;;) {
                char key[24];

                skip_ws(ps);
                if (ps->p >= ps->end)
                        return -EBADMSG;
                if (*ps->p == '}' && first) {
                        ps->p++;
                        return 0;
                }
                r = parse_string(ps, key, sizeof key);
                if (r < 0)
                        return r;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':')
                        return -EBADMSG;
                ps->p++;
                skip_ws(ps);
                if (depth < ELEMENTSOF(ps->path)) {
                        memcpy(ps->keys[depth], key, sizeof key);
                        ps->path[depth] = ps->keys[depth];
                }
                if (depth == 0) {
                        int kind = strcmp(key, "QMP") == 0      ? QMP_KIND_GREETING
                                   : strcmp(key, "return") == 0 ? QMP_KIND_RETURN
                                   : strcmp(key, "error") == 0  ? QMP_KIND_ERROR
                                   : strcmp(key, "event") == 0  ? QMP_KIND_EVENT
                                                                : -1;
                        if (kind >= 0) {
                                if (ps->top_seen)
                                        return -EBADMSG; /* two of them */
                                ps->top_seen = true;
                                ps->r->kind = (QmpKind) kind;
                        }
                }

                unsigned d = depth + 1;
                ps->depth = d;
                if (ps->p < ps->end && *ps->p == '"') {
                        char *out = NULL;
                        size_t size = 0;
                        if (path_is(ps, d, "return", "status", NULL, NULL))
                                out = ps->r->status, size = sizeof ps->r->status;
                        else if (path_is(ps, d, "error", "desc", NULL, NULL) ||
                                 path_is(ps, d, "return", "error-desc", NULL, NULL))
                                out = ps->r->desc, size = sizeof ps->r->desc;
                        else if (path_is(ps, d, "event", NULL, NULL, NULL))
                                out = ps->r->event, size = sizeof ps->r->event;
                        r = parse_string(ps, out, size);
                } else if (ps->p < ps->end && (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))) {
                        long long v;
                        r = parse_number(ps, &v);
                        if (r >= 0 && d == 4 && path_is(ps, 3, "QMP", "version", "qemu", NULL)) {
                                int idx = strcmp(key, "major") == 0   ? 0
                                          : strcmp(key, "minor") == 0 ? 1
                                          : strcmp(key, "micro") == 0 ? 2
                                                                      : -1;
                                if (idx >= 0 && v >= 0 && v < 100000)
                                        ps->r->version[idx] = (int) v;
                        }
                } else
                        r = parse_value(ps);
                ps->depth = depth;
                if (depth < ELEMENTSOF(ps->path))
                        ps->path[depth] = NULL;
                if (r < 0)
                        return r;
                first = false;
                r = after_member(ps, '}');
                if (r <= 0)
                        return r;
        }
}

static int parse_array(Parser *ps) {
        unsigned depth = ps->depth;
        bool first = true;

        ps->p++; /* [ */
        for (;;) {
                skip_ws(ps);
                if (ps->p >= ps->end)
                        return -EBADMSG;
                if (*ps->p == ']' && first) {
                        ps->p++;
                        return 0;
                }
                if (depth < ELEMENTSOF(ps->path))
                        ps->path[depth] = ""; /* array elements match no path */
                ps->depth = depth + 1;
                int r = parse_value(ps);
                ps->depth = depth;
                if (depth < ELEMENTSOF(ps->path))
                        ps->path[depth] = NULL;
                if (r < 0)
                        return r;
                first = false;
                r = after_member(ps, ']');
                if (r <= 0)
                        return r;
        }
}

static int parse_value(Parser *ps) {
        long long v;

        skip_ws(ps);
        if (ps->p >= ps->end || ps->depth > QMP_DEPTH_MAX)
                return -EBADMSG;
        switch (*ps->p) {
        case '{':
                return parse_object(ps);
        case '[':
                return parse_array(ps);
        case '"':
                return parse_string(ps, NULL, 0);
        case 't':
                return parse_literal(ps, "true");
        case 'f':
                return parse_literal(ps, "false");
        case 'n':
                return parse_literal(ps, "null");
        default:
                return parse_number(ps, &v);
        }
}

int qmp_parse(const char *line, size_t n, QmpReply *ret) {
        QmpReply r = {.version = {-1, -1, -1}};
        Parser ps = {.p = line, .end = line + n, .r = &r};
        int k;

        if (n > QMP_LINE_MAX)
                return -EBADMSG;
        skip_ws(&ps);
        if (ps.p >= ps.end || *ps.p != '{')
                return -EBADMSG;
        k = parse_object(&ps);
        if (k < 0)
                return k;
        skip_ws(&ps);
        if (ps.p != ps.end || !ps.top_seen)
                return -EBADMSG;
        *ret = r;
        return 0;
}

/* ---- the client ---- */

void qmp_init(Qmp *q, int fd) {
        q->fd = fd;
        q->len = 0;
}

/* One complete line from the buffer, or 0 if there is none yet. */
static int take_line(Qmp *q, QmpReply *ret) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (!nl)
                return q->len >= sizeof q->buf ? -EMSGSIZE : 0;
        size_t n = (size_t) (nl - q->buf), used = n + 1;
        if (n > 0 && q->buf[n - 1] == '\r')
                n--;
        int r = n == 0 ? -EBADMSG : qmp_parse(q->buf, n, ret);
        memmove(q->buf, q->buf + used, q->len - used);
        q->len -= used;
        return r < 0 ? r : 1;
}

int qmp_read_reply(Qmp *q, uint64_t deadline, QmpReply *ret) {
        for (;;) {
                int r = take_line(q, ret);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (ret->kind == QMP_KIND_EVENT)
                                continue;
                        return 0;
                }
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = q->fd, .events = POLLIN};
                int timeout = (int) MIN((deadline - now + 999u) / 1000u, (uint64_t) 60000);
                r = poll(&p, 1, timeout);
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r <= 0)
                        continue;
                ssize_t k = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                q->len += (size_t) k;
        }
}

int qmp_handshake(Qmp *q, uint64_t deadline, QmpReply *ret_greeting) {
        QmpReply r;
        int k = qmp_read_reply(q, deadline, ret_greeting);
        if (k < 0)
                return k;
        if (ret_greeting->kind != QMP_KIND_GREETING)
                return -EBADMSG;
        return qmp_execute(q, "{\"execute\":\"qmp_capabilities\"}", deadline, &r);
}

int qmp_execute(Qmp *q, const char *command, uint64_t deadline, QmpReply *ret) {
        int r = loop_write(q->fd, command, strlen(command));
        if (r < 0)
                return r;
        r = qmp_read_reply(q, deadline, ret);
        if (r < 0)
                return r;
        if (ret->kind == QMP_KIND_ERROR)
                return -EPROTO;
        if (ret->kind != QMP_KIND_RETURN)
                return -EBADMSG;
        return 0;
}
