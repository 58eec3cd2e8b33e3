/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "frame.h"
#include "macro.h"
#include "proto.h"

static uint32_t get_le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint16_t get_le16(const uint8_t *p) {
        return (uint16_t) (p[0] | p[1] << 8);
}

static void put_le32(uint8_t *p, uint32_t v) {
        p[0] = v & 0xff;
        p[1] = (v >> 8) & 0xff;
        p[2] = (v >> 16) & 0xff;
        p[3] = (v >> 24) & 0xff;
}

static void put_le16(uint8_t *p, uint16_t v) {
        p[0] = v & 0xff;
        p[1] = (v >> 8) & 0xff;
}

void sbx_frame_reader_init(SbxFrameReader *r, size_t max_payload) {
        *r = (SbxFrameReader) { .max_payload = max_payload };
}

static int reader_reserve(SbxFrameReader *r, size_t n);

void sbx_frame_reader_done(SbxFrameReader *r) {
        free(r->buf);
        for (size_t i = 0; i < r->n_fds; i++)
                safe_close(r->fds[i]);
        *r = (SbxFrameReader) {};
}

int sbx_frame_reader_take_fd(SbxFrameReader *r) {
        if (r->n_fds == 0)
                return -EBADF;
        int fd = r->fds[0];
        memmove(r->fds, r->fds + 1, (r->n_fds - 1) * sizeof(int));
        r->n_fds--;
        return fd;
}

int sbx_frame_reader_fill_with_fds(SbxFrameReader *r, int fd) {
        size_t chunk = 64 * 1024;
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int) * SBX_FRAME_READER_FDS_MAX)];
        } control;
        struct iovec iov;
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof control,
        };
        int k;

        if (r->broken)
                return -EBADMSG;
        k = reader_reserve(r, chunk);
        if (k < 0)
                return k;
        iov = (struct iovec) { .iov_base = r->buf + r->end, .iov_len = chunk };
        ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0)
                return -errno;
        int overflow = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t nf = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *fds = (int *) CMSG_DATA(c);
                for (size_t i = 0; i < nf; i++) {
                        if (r->n_fds < SBX_FRAME_READER_FDS_MAX)
                                r->fds[r->n_fds++] = fds[i];
                        else {
                                safe_close(fds[i]);
                                overflow = 1;
                        }
                }
        }
        if (mh.msg_flags & MSG_CTRUNC)
                overflow = 1;
        r->end += (size_t) n;
        if (overflow) {
                r->broken = true;
                return -EMFILE;
        }
        return (int) n;
}

/* Makes room for n more bytes, compacting consumed bytes first. */
static int reader_reserve(SbxFrameReader *r, size_t n) {
        size_t limit = SBX_FRAME_HEADER_SIZE + r->max_payload;

        if (r->start > 0) {
                memmove(r->buf, r->buf + r->start, r->end - r->start);
                r->end -= r->start;
                r->start = 0;
        }
        if (r->alloc - r->end >= n)
                return 0;

        size_t want = MAX(r->end + n, MIN(MAX(r->alloc * 2, (size_t) 4096), limit + 4096));
        uint8_t *b = realloc(r->buf, want);
        if (!b)
                return -ENOMEM;
        r->buf = b;
        r->alloc = want;
        return 0;
}

int sbx_frame_reader_feed(SbxFrameReader *r, const void *data, size_t n) {
        if (r->broken)
                return -EBADMSG;
        if (n == 0)
                return 0;
        int k = reader_reserve(r, n);
        if (k < 0)
                return k;
        memcpy(r->buf + r->end, data, n);
        r->end += n;
        return 0;
}

int sbx_frame_reader_fill(SbxFrameReader *r, int fd) {
        /* Never buffer more than one maximal frame plus a read's worth. */
        size_t chunk = 64 * 1024;

        if (r->broken)
                return -EBADMSG;
        int k = reader_reserve(r, chunk);
        if (k < 0)
                return k;
        ssize_t n = read(fd, r->buf + r->end, chunk);
        if (n < 0)
                return -errno;
        r->end += (size_t) n;
        return (int) n;
}

int sbx_frame_reader_next(SbxFrameReader *r, uint8_t *ret_type, const uint8_t **ret_payload, size_t *ret_len) {
        if (r->broken)
                return -EBADMSG;

        size_t avail = r->end - r->start;
        if (avail < SBX_FRAME_HEADER_SIZE)
                return 0;

        const uint8_t *h = r->buf + r->start;
        uint32_t len = get_le32(h + 8);
        if (get_le32(h) != SBX_FRAME_MAGIC || h[4] != SBX_PROTO_VERSION || get_le16(h + 6) != 0 ||
            len > r->max_payload) {
                r->broken = true;
                return -EBADMSG;
        }
        if (avail - SBX_FRAME_HEADER_SIZE < len)
                return 0;

        *ret_type = h[5];
        *ret_payload = h + SBX_FRAME_HEADER_SIZE;
        *ret_len = len;
        r->start += SBX_FRAME_HEADER_SIZE + len;
        return 1;
}

static void msg_reserve(SbxMsg *m, size_t n) {
        if (m->error)
                return;
        if (m->alloc - m->len >= n)
                return;
        if (m->len + n > SBX_FRAME_HEADER_SIZE + SBX_HOST_FRAME_MAX) {
                m->error = -E2BIG;
                return;
        }
        size_t want = MAX(m->len + n, MAX(m->alloc * 2, (size_t) 256));
        uint8_t *d = realloc(m->data, want);
        if (!d) {
                m->error = -ENOMEM;
                return;
        }
        m->data = d;
        m->alloc = want;
}

void sbx_msg_begin(SbxMsg *m, uint8_t type) {
        *m = (SbxMsg) {};
        msg_reserve(m, SBX_FRAME_HEADER_SIZE);
        if (m->error)
                return;
        put_le32(m->data, SBX_FRAME_MAGIC);
        m->data[4] = SBX_PROTO_VERSION;
        m->data[5] = type;
        put_le16(m->data + 6, 0);
        put_le32(m->data + 8, 0);
        m->len = SBX_FRAME_HEADER_SIZE;
}

void sbx_msg_put(SbxMsg *m, uint16_t tag, const void *value, size_t n) {
        if (n > UINT32_MAX) {
                m->error = m->error ?: -E2BIG;
                return;
        }
        msg_reserve(m, SBX_TLV_HEADER_SIZE + n);
        if (m->error)
                return;
        put_le16(m->data + m->len, tag);
        put_le32(m->data + m->len + 2, (uint32_t) n);
        if (n > 0)
                memcpy(m->data + m->len + SBX_TLV_HEADER_SIZE, value, n);
        m->len += SBX_TLV_HEADER_SIZE + n;
}

void sbx_msg_put_u8(SbxMsg *m, uint16_t tag, uint8_t v) {
        sbx_msg_put(m, tag, &v, 1);
}

void sbx_msg_put_u32(SbxMsg *m, uint16_t tag, uint32_t v) {
        uint8_t b[4];
        put_le32(b, v);
        sbx_msg_put(m, tag, b, sizeof b);
}

void sbx_msg_put_i32(SbxMsg *m, uint16_t tag, int32_t v) {
        sbx_msg_put_u32(m, tag, (uint32_t) v);
}

void sbx_msg_put_u64(SbxMsg *m, uint16_t tag, uint64_t v) {
        uint8_t b[8];
        put_le32(b, (uint32_t) v);
        put_le32(b + 4, (uint32_t) (v >> 32));
        sbx_msg_put(m, tag, b, sizeof b);
}

void sbx_msg_put_str(SbxMsg *m, uint16_t tag, const char *s) {
        sbx_msg_put(m, tag, s, strlen(s));
}

int sbx_msg_finish(SbxMsg *m) {
        if (m->error)
                return m->error;
        put_le32(m->data + 8, (uint32_t) (m->len - SBX_FRAME_HEADER_SIZE));
        return 0;
}

void sbx_msg_done(SbxMsg *m) {
        free(m->data);
        *m = (SbxMsg) {};
}

int sbx_msg_send(SbxMsg *m, int fd) {
        int r = sbx_msg_finish(m);
        if (r < 0)
                return r;
        return loop_write(fd, m->data, m->len);
}

int sbx_msg_send_with_fds(SbxMsg *m, int sock, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int) * SBX_FRAME_READER_FDS_MAX)];
        } control = {};
        struct iovec iov;
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = CMSG_SPACE(sizeof(int) * n_fds),
        };
        if (n_fds == 0 || n_fds > SBX_FRAME_READER_FDS_MAX)
                return -EINVAL;
        int r = sbx_msg_finish(m);
        if (r < 0)
                return r;

        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);

        /* The fds ride on the first byte; the rest goes out as a plain write. */
        iov = (struct iovec) { .iov_base = m->data, .iov_len = 1 };
        for (;;) {
                ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
                if (n >= 0)
                        break;
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN) {
                        struct pollfd p = { .fd = sock, .events = POLLOUT };
                        (void) poll(&p, 1, -1);
                        continue;
                }
                return -errno;
        }
        return loop_write(sock, m->data + 1, m->len - 1);
}

int sbx_msg_send_with_fd(SbxMsg *m, int sock, int pass_fd) {
        return sbx_msg_send_with_fds(m, sock, &pass_fd, 1);
}

void sbx_tlv_iter_init(SbxTlvIter *it, const uint8_t *payload, size_t len) {
        *it = (SbxTlvIter) { .p = payload, .left = len };
}

int sbx_tlv_next(SbxTlvIter *it, uint16_t *ret_tag, const uint8_t **ret_value, uint32_t *ret_len) {
        if (it->left == 0)
                return 0;
        if (it->left < SBX_TLV_HEADER_SIZE)
                return -EBADMSG;
        uint32_t n = get_le32(it->p + 2);
        if (it->left - SBX_TLV_HEADER_SIZE < n)
                return -EBADMSG;
        *ret_tag = get_le16(it->p);
        *ret_value = it->p + SBX_TLV_HEADER_SIZE;
        *ret_len = n;
        it->p += SBX_TLV_HEADER_SIZE + n;
        it->left -= SBX_TLV_HEADER_SIZE + n;
        return 1;
}

int sbx_tlv_u8(const uint8_t *v, uint32_t n, uint8_t *ret) {
        if (n != 1)
                return -EBADMSG;
        *ret = v[0];
        return 0;
}

int sbx_tlv_u32(const uint8_t *v, uint32_t n, uint32_t *ret) {
        if (n != 4)
                return -EBADMSG;
        *ret = get_le32(v);
        return 0;
}

int sbx_tlv_i32(const uint8_t *v, uint32_t n, int32_t *ret) {
        uint32_t u;
        int r = sbx_tlv_u32(v, n, &u);
        if (r < 0)
                return r;
        *ret = (int32_t) u;
        return 0;
}

int sbx_tlv_u64(const uint8_t *v, uint32_t n, uint64_t *ret) {
        if (n != 8)
                return -EBADMSG;
        *ret = (uint64_t) get_le32(v) | (uint64_t) get_le32(v + 4) << 32;
        return 0;
}

int sbx_tlv_str(const uint8_t *v, uint32_t n, size_t max, char **ret) {
        if (n > max || memchr(v, 0, n))
                return -EBADMSG;
        char *s = malloc((size_t) n + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, v, n);
        s[n] = 0;
        *ret = s;
        return 0;
}
