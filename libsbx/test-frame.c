/* SPDX-License-Identifier: Apache-2.0 */
/* Frame encoder/decoder: round trips, incremental feeding, every rejection
 * path of the header and TLV parsers, and the reader's memory bound. */

#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdio.h"
#include "frame.h"
#include "macro.h"
#include "proto.h"
#include "tests.h"

static void put_le32(uint8_t *p, uint32_t v) {
        p[0] = v & 0xff;
        p[1] = (v >> 8) & 0xff;
        p[2] = (v >> 16) & 0xff;
        p[3] = (v >> 24) & 0xff;
}

/* A raw 12-byte header, for building frames the encoder would never make. */
static void make_header(uint8_t h[static SBX_FRAME_HEADER_SIZE], uint32_t magic, uint8_t version, uint8_t type,
                        uint16_t flags, uint32_t len) {
        put_le32(h, magic);
        h[4] = version;
        h[5] = type;
        h[6] = flags & 0xff;
        h[7] = flags >> 8;
        put_le32(h + 8, len);
}

/* Builds a B_EXEC frame with one item of every value type. */
static void build_run(SbxMsg *m, uint64_t run_id, const char *code) {
        sbx_msg_begin(m, SBX_B_EXEC);
        sbx_msg_put_u64(m, SBX_T_RUN_ID, run_id);
        sbx_msg_put_str(m, SBX_T_LANGUAGE, "python");
        sbx_msg_put(m, SBX_T_CODE, code, strlen(code));
        sbx_msg_put_u32(m, SBX_T_TIMEOUT_MS, 30000);
        sbx_msg_put_str(m, SBX_T_ENV, "A=1");
        sbx_msg_put_str(m, SBX_T_ENV, "B=two words");
        sbx_msg_put_i32(m, SBX_T_EXIT_CODE, -5);
        sbx_msg_put_u8(m, SBX_T_STREAM, SBX_STREAM_STDERR);
        sbx_msg_put(m, SBX_T_DATA, NULL, 0);
        sbx_msg_put_u32(m, 0xfff0, 7); /* unknown tag: must be skippable */
        ASSERT_OK(sbx_msg_finish(m));
}

static void check_run_payload(const uint8_t *payload, size_t len, uint64_t run_id, const char *code) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        unsigned n_env = 0, n_items = 0;

        sbx_tlv_iter_init(&it, payload, len);
        for (;;) {
                int r = sbx_tlv_next(&it, &tag, &v, &n);
                ASSERT_OK(r);
                if (r == 0)
                        break;
                n_items++;
                switch (tag) {
                case SBX_T_RUN_ID: {
                        uint64_t x;
                        ASSERT_OK(sbx_tlv_u64(v, n, &x));
                        ASSERT_TRUE(x == run_id);
                        break;
                }
                case SBX_T_LANGUAGE: {
                        _cleanup_free_ char *s = NULL;
                        ASSERT_OK(sbx_tlv_str(v, n, 64, &s));
                        ASSERT_STREQ(s, "python");
                        break;
                }
                case SBX_T_CODE:
                        ASSERT_EQ(n, strlen(code));
                        ASSERT_TRUE(memcmp(v, code, n) == 0);
                        break;
                case SBX_T_TIMEOUT_MS: {
                        uint32_t x;
                        ASSERT_OK(sbx_tlv_u32(v, n, &x));
                        ASSERT_EQ(x, 30000);
                        break;
                }
                case SBX_T_ENV: {
                        _cleanup_free_ char *s = NULL;
                        ASSERT_OK(sbx_tlv_str(v, n, SBX_ENV_NAME_MAX + 1 + SBX_ENV_VALUE_MAX, &s));
                        ASSERT_STREQ(s, n_env == 0 ? "A=1" : "B=two words");
                        n_env++;
                        break;
                }
                case SBX_T_EXIT_CODE: {
                        int32_t x;
                        ASSERT_OK(sbx_tlv_i32(v, n, &x));
                        ASSERT_EQ(x, -5);
                        break;
                }
                case SBX_T_STREAM: {
                        uint8_t x;
                        ASSERT_OK(sbx_tlv_u8(v, n, &x));
                        ASSERT_EQ(x, SBX_STREAM_STDERR);
                        break;
                }
                case SBX_T_DATA:
                        ASSERT_EQ(n, 0);
                        break;
                case 0xfff0:
                        ASSERT_EQ(n, 4);
                        break;
                default:
                        TEST_FAIL("unexpected tag %u", tag);
                }
        }
        ASSERT_EQ(n_env, 2);
        ASSERT_EQ(n_items, 10);
}

static void test_roundtrip(void) {
        SbxMsg m;
        SbxFrameReader r;
        uint8_t type;
        const uint8_t *payload;
        size_t len;

        build_run(&m, UINT64_C(0x1122334455667788), "print('hi')\n");
        /* Header layout: "SBX1", version, type, flags 0, little-endian length. */
        ASSERT_TRUE(memcmp(m.data, "SBX1", 4) == 0);
        ASSERT_EQ(m.data[4], SBX_PROTO_VERSION);
        ASSERT_EQ(m.data[5], SBX_B_EXEC);
        ASSERT_EQ(m.data[6] | m.data[7], 0);
        ASSERT_EQ(m.data[8] | m.data[9] << 8 | m.data[10] << 16 | (uint32_t) m.data[11] << 24,
                  m.len - SBX_FRAME_HEADER_SIZE);

        sbx_frame_reader_init(&r, SBX_HOST_FRAME_MAX);
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0); /* empty */
        ASSERT_OK(sbx_frame_reader_feed(&r, m.data, m.len));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
        ASSERT_EQ(type, SBX_B_EXEC);
        ASSERT_EQ(len, m.len - SBX_FRAME_HEADER_SIZE);
        check_run_payload(payload, len, UINT64_C(0x1122334455667788), "print('hi')\n");
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0);

        /* A frame with an empty payload. */
        sbx_msg_done(&m);
        sbx_msg_begin(&m, SBX_H_CANCEL);
        ASSERT_OK(sbx_msg_finish(&m));
        ASSERT_EQ(m.len, SBX_FRAME_HEADER_SIZE);
        ASSERT_OK(sbx_frame_reader_feed(&r, m.data, m.len));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
        ASSERT_EQ(type, SBX_H_CANCEL);
        ASSERT_EQ(len, 0);
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        sbx_tlv_iter_init(&it, payload, len);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 0);

        /* Extreme integer values survive. */
        sbx_msg_done(&m);
        sbx_msg_begin(&m, SBX_W_RESULT);
        sbx_msg_put_u64(&m, SBX_T_EXEC_MS, UINT64_MAX);
        sbx_msg_put_i32(&m, SBX_T_EXIT_CODE, INT32_MIN);
        sbx_msg_put_u32(&m, SBX_T_VERSION, UINT32_MAX);
        ASSERT_OK(sbx_msg_finish(&m));
        ASSERT_OK(sbx_frame_reader_feed(&r, m.data, m.len));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
        sbx_tlv_iter_init(&it, payload, len);
        uint64_t u64;
        int32_t i32;
        uint32_t u32;
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 1);
        ASSERT_OK(sbx_tlv_u64(v, n, &u64));
        ASSERT_TRUE(u64 == UINT64_MAX);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 1);
        ASSERT_OK(sbx_tlv_i32(v, n, &i32));
        ASSERT_EQ(i32, INT32_MIN);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 1);
        ASSERT_OK(sbx_tlv_u32(v, n, &u32));
        ASSERT_EQ(u32, UINT32_MAX);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 0);

        sbx_msg_done(&m);
        sbx_frame_reader_done(&r);
        ASSERT_NULL(r.buf);
}

/* Three frames back to back, fed one byte at a time: each pops exactly when
 * its last byte arrives, never earlier. */
static void test_byte_by_byte(void) {
        SbxMsg m[3];
        SbxFrameReader r;
        const char *codes[3] = {"a", "print(2)", "x = 1\ny = 2\n"};

        for (int i = 0; i < 3; i++)
                build_run(&m[i], (uint64_t) i + 1, codes[i]);

        sbx_frame_reader_init(&r, SBX_GUEST_FRAME_MAX);
        for (int i = 0; i < 3; i++)
                for (size_t k = 0; k < m[i].len; k++) {
                        uint8_t type;
                        const uint8_t *payload;
                        size_t len;

                        ASSERT_OK(sbx_frame_reader_feed(&r, m[i].data + k, 1));
                        int q = sbx_frame_reader_next(&r, &type, &payload, &len);
                        if (k + 1 < m[i].len) {
                                ASSERT_EQ(q, 0);
                                continue;
                        }
                        ASSERT_EQ(q, 1);
                        ASSERT_EQ(type, SBX_B_EXEC);
                        check_run_payload(payload, len, (uint64_t) i + 1, codes[i]);
                        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0);
                        ASSERT_LE(r.alloc, SBX_FRAME_HEADER_SIZE + SBX_GUEST_FRAME_MAX + 4096);
                }

        /* The same three in one feed. */
        for (int i = 0; i < 3; i++)
                ASSERT_OK(sbx_frame_reader_feed(&r, m[i].data, m[i].len));
        for (int i = 0; i < 3; i++) {
                uint8_t type;
                const uint8_t *payload;
                size_t len;

                ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
                check_run_payload(payload, len, (uint64_t) i + 1, codes[i]);
        }

        for (int i = 0; i < 3; i++)
                sbx_msg_done(&m[i]);
        sbx_frame_reader_done(&r);
}

/* Feeds a header and expects the stream to break for good. */
static void expect_broken(const uint8_t h[static SBX_FRAME_HEADER_SIZE], size_t max_payload) {
        SbxFrameReader r;
        uint8_t type;
        const uint8_t *payload;
        size_t len;

        sbx_frame_reader_init(&r, max_payload);
        /* Eleven bytes are not a header yet. */
        ASSERT_OK(sbx_frame_reader_feed(&r, h, SBX_FRAME_HEADER_SIZE - 1));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0);
        ASSERT_OK(sbx_frame_reader_feed(&r, h + SBX_FRAME_HEADER_SIZE - 1, 1));
        ASSERT_ERROR(sbx_frame_reader_next(&r, &type, &payload, &len), EBADMSG);
        /* Sticky: nothing more is accepted or returned. */
        ASSERT_TRUE(r.broken);
        ASSERT_ERROR(sbx_frame_reader_next(&r, &type, &payload, &len), EBADMSG);
        ASSERT_ERROR(sbx_frame_reader_feed(&r, "x", 1), EBADMSG);
        ASSERT_ERROR(sbx_frame_reader_fill(&r, -1), EBADMSG);
        sbx_frame_reader_done(&r);
}

static void test_bad_headers(void) {
        uint8_t h[SBX_FRAME_HEADER_SIZE];

        /* Oversized length, for each reader limit. */
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_OUTPUT, 0, SBX_GUEST_FRAME_MAX + 1);
        expect_broken(h, SBX_GUEST_FRAME_MAX);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_W_OUTPUT, 0, SBX_WORKER_FRAME_MAX + 1);
        expect_broken(h, SBX_WORKER_FRAME_MAX);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_B_EXEC, 0, SBX_HOST_FRAME_MAX + 1);
        expect_broken(h, SBX_HOST_FRAME_MAX);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_OUTPUT, 0, UINT32_MAX);
        expect_broken(h, SBX_GUEST_FRAME_MAX);

        /* Bad magic: wrong byte order, one bit off, zero. */
        make_header(h, 0x53425831u, SBX_PROTO_VERSION, SBX_G_HELLO, 0, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);
        make_header(h, SBX_FRAME_MAGIC ^ 1, SBX_PROTO_VERSION, SBX_G_HELLO, 0, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);
        make_header(h, 0, SBX_PROTO_VERSION, SBX_G_HELLO, 0, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);

        /* Bad version. */
        make_header(h, SBX_FRAME_MAGIC, 0, SBX_G_HELLO, 0, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION + 1, SBX_G_HELLO, 0, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);

        /* Reserved flags must be zero. */
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_HELLO, 1, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_HELLO, 0x8000, 0);
        expect_broken(h, SBX_GUEST_FRAME_MAX);
}

/* Exactly max_payload is fine; the bad header of a later frame breaks the
 * stream only after the good frames before it were returned. */
static void test_limits(void) {
        SbxFrameReader r;
        uint8_t h[SBX_FRAME_HEADER_SIZE], body[64] = {}, type;
        const uint8_t *payload;
        size_t len;

        sbx_frame_reader_init(&r, sizeof body);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, 200, 0, sizeof body);
        ASSERT_OK(sbx_frame_reader_feed(&r, h, sizeof h));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0);
        ASSERT_OK(sbx_frame_reader_feed(&r, body, sizeof body - 1));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0);
        ASSERT_OK(sbx_frame_reader_feed(&r, body, 1));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
        ASSERT_EQ(type, 200); /* unknown types are the caller's business */
        ASSERT_EQ(len, sizeof body);

        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_HELLO, 0, 0);
        ASSERT_OK(sbx_frame_reader_feed(&r, h, sizeof h));
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_HELLO, 0, sizeof body + 1);
        ASSERT_OK(sbx_frame_reader_feed(&r, h, sizeof h));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
        ASSERT_EQ(len, 0);
        ASSERT_ERROR(sbx_frame_reader_next(&r, &type, &payload, &len), EBADMSG);
        sbx_frame_reader_done(&r);

        /* After done, the reader can be initialized and used again. */
        sbx_frame_reader_init(&r, 0);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_HELLO, 0, 0);
        ASSERT_OK(sbx_frame_reader_feed(&r, h, sizeof h));
        ASSERT_OK(sbx_frame_reader_feed(&r, h, 0));
        ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 1);
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_HELLO, 0, 1);
        ASSERT_OK(sbx_frame_reader_feed(&r, h, sizeof h));
        ASSERT_ERROR(sbx_frame_reader_next(&r, &type, &payload, &len), EBADMSG);
        sbx_frame_reader_done(&r);
}

static void test_truncated_tlv(void) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        uint8_t p[32] = {};

        /* Fewer bytes than a TLV header. */
        for (size_t k = 1; k < SBX_TLV_HEADER_SIZE; k++) {
                sbx_tlv_iter_init(&it, p, k);
                ASSERT_ERROR(sbx_tlv_next(&it, &tag, &v, &n), EBADMSG);
        }

        /* Length past the end: by one, by a lot, and 0xffffffff (no wrap). */
        p[0] = SBX_T_DATA;
        put_le32(p + 2, 11);
        sbx_tlv_iter_init(&it, p, SBX_TLV_HEADER_SIZE + 10);
        ASSERT_ERROR(sbx_tlv_next(&it, &tag, &v, &n), EBADMSG);
        put_le32(p + 2, 1000);
        sbx_tlv_iter_init(&it, p, sizeof p);
        ASSERT_ERROR(sbx_tlv_next(&it, &tag, &v, &n), EBADMSG);
        put_le32(p + 2, UINT32_MAX);
        sbx_tlv_iter_init(&it, p, sizeof p);
        ASSERT_ERROR(sbx_tlv_next(&it, &tag, &v, &n), EBADMSG);
        put_le32(p + 2, UINT32_MAX - SBX_TLV_HEADER_SIZE + 1);
        sbx_tlv_iter_init(&it, p, sizeof p);
        ASSERT_ERROR(sbx_tlv_next(&it, &tag, &v, &n), EBADMSG);

        /* A good item followed by a truncated one. */
        put_le32(p + 2, 2);
        p[8] = SBX_T_STREAM;
        put_le32(p + 10, 5);
        sbx_tlv_iter_init(&it, p, 8 + SBX_TLV_HEADER_SIZE + 4);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 1);
        ASSERT_EQ(tag, SBX_T_DATA);
        ASSERT_EQ(n, 2);
        ASSERT_ERROR(sbx_tlv_next(&it, &tag, &v, &n), EBADMSG);

        /* An item that ends exactly at the end of the payload is fine. */
        sbx_tlv_iter_init(&it, p, 8 + SBX_TLV_HEADER_SIZE + 5);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 1);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 1);
        ASSERT_EQ(tag, SBX_T_STREAM);
        ASSERT_EQ(n, 5);
        ASSERT_EQ(sbx_tlv_next(&it, &tag, &v, &n), 0);
}

static void test_typed_accessors(void) {
        const uint8_t b[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
        uint8_t u8;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        char *s = NULL;

        for (uint32_t n = 0; n <= sizeof b; n++) {
                if (n != 1)
                        ASSERT_ERROR(sbx_tlv_u8(b, n, &u8), EBADMSG);
                if (n != 4) {
                        ASSERT_ERROR(sbx_tlv_u32(b, n, &u32), EBADMSG);
                        ASSERT_ERROR(sbx_tlv_i32(b, n, &i32), EBADMSG);
                }
                if (n != 8)
                        ASSERT_ERROR(sbx_tlv_u64(b, n, &u64), EBADMSG);
        }
        ASSERT_OK(sbx_tlv_u8(b, 1, &u8));
        ASSERT_EQ(u8, 1);
        ASSERT_OK(sbx_tlv_u32(b, 4, &u32));
        ASSERT_EQ(u32, 0x04030201);
        ASSERT_OK(sbx_tlv_u64(b, 8, &u64));
        ASSERT_TRUE(u64 == UINT64_C(0x0807060504030201));
        const uint8_t neg[4] = {0xfe, 0xff, 0xff, 0xff};
        ASSERT_OK(sbx_tlv_i32(neg, 4, &i32));
        ASSERT_EQ(i32, -2);

        /* Strings: at most max bytes, no NUL, always NUL-terminated. */
        ASSERT_OK(sbx_tlv_str((const uint8_t *) "hello", 5, 5, &s));
        ASSERT_STREQ(s, "hello");
        free(s);
        s = NULL;
        ASSERT_ERROR(sbx_tlv_str((const uint8_t *) "hello", 5, 4, &s), EBADMSG);
        ASSERT_NULL(s);
        ASSERT_ERROR(sbx_tlv_str((const uint8_t *) "he\0lo", 5, 64, &s), EBADMSG);
        ASSERT_ERROR(sbx_tlv_str((const uint8_t *) "hello\0", 6, 64, &s), EBADMSG);
        ASSERT_NULL(s);
        ASSERT_OK(sbx_tlv_str((const uint8_t *) "", 0, 0, &s));
        ASSERT_STREQ(s, "");
        free(s);
}

/* The builder refuses frames the peer would refuse, and errors are sticky. */
static void test_msg_limits(void) {
        SbxMsg m;
        _cleanup_free_ uint8_t *big = calloc(1, SBX_HOST_FRAME_MAX);

        ASSERT_NOT_NULL(big);
        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put(&m, SBX_T_CODE, big, SBX_HOST_FRAME_MAX - SBX_TLV_HEADER_SIZE);
        ASSERT_OK(sbx_msg_finish(&m));
        ASSERT_EQ(m.len, SBX_FRAME_HEADER_SIZE + SBX_HOST_FRAME_MAX);
        sbx_msg_put_u8(&m, SBX_T_STREAM, 1);
        ASSERT_ERROR(sbx_msg_finish(&m), E2BIG);
        size_t len = m.len;
        sbx_msg_put_u8(&m, SBX_T_STREAM, 1);
        ASSERT_EQ(m.len, len);
        ASSERT_ERROR(sbx_msg_finish(&m), E2BIG);
        sbx_msg_done(&m);
        ASSERT_NULL(m.data);

        sbx_msg_begin(&m, SBX_B_EXEC);
        sbx_msg_put(&m, SBX_T_CODE, big, (size_t) UINT32_MAX + 1);
        ASSERT_ERROR(sbx_msg_finish(&m), E2BIG);
        sbx_msg_done(&m);
}

/* A hostile peer streaming maximal frames (or one endless frame) cannot make
 * the reader buffer more than one frame plus one read's worth. */
static void test_bounded(void) {
        SbxFrameReader r;
        SbxMsg m;
        const size_t limit = SBX_FRAME_HEADER_SIZE + SBX_GUEST_FRAME_MAX;
        _cleanup_free_ uint8_t *data = malloc(SBX_GUEST_FRAME_MAX);
        _cleanup_close_pair_ int sv[2] = {-EBADF, -EBADF};
        size_t chunks[] = {1, 7, 1000, 4096, 4097, 12, 13};
        unsigned popped = 0;

        ASSERT_NOT_NULL(data);
        memset(data, 'x', SBX_GUEST_FRAME_MAX);
        sbx_msg_begin(&m, SBX_G_OUTPUT);
        sbx_msg_put_u8(&m, SBX_T_STREAM, SBX_STREAM_STDOUT);
        sbx_msg_put(&m, SBX_T_DATA, data, SBX_GUEST_FRAME_MAX - 2 * SBX_TLV_HEADER_SIZE - 1);
        ASSERT_OK(sbx_msg_finish(&m));
        ASSERT_EQ(m.len, limit);

        /* feed(): in chunks of awkward sizes, popping as we go. */
        sbx_frame_reader_init(&r, SBX_GUEST_FRAME_MAX);
        for (unsigned i = 0; i < 40; i++)
                for (size_t off = 0; off < m.len;) {
                        size_t c = MIN(chunks[(i + off) % ELEMENTSOF(chunks)], m.len - off);
                        uint8_t type;
                        const uint8_t *payload;
                        size_t len;

                        ASSERT_OK(sbx_frame_reader_feed(&r, m.data + off, c));
                        off += c;
                        while (sbx_frame_reader_next(&r, &type, &payload, &len) == 1) {
                                ASSERT_EQ(len, SBX_GUEST_FRAME_MAX);
                                popped++;
                        }
                        ASSERT_LE(r.alloc, limit + 4096);
                        ASSERT_LE(r.end - r.start, limit);
                }
        ASSERT_EQ(popped, 40);
        sbx_frame_reader_done(&r);

        /* fill(): through a socket, one maximal frame at a time. */
        ASSERT_OK(RET_NERRNO(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)));
        ASSERT_OK(fd_set_nonblock(sv[1], 1));
        sbx_frame_reader_init(&r, SBX_GUEST_FRAME_MAX);
        popped = 0;
        for (unsigned i = 0; i < 40; i++) {
                ASSERT_OK(sbx_msg_send(&m, sv[0]));
                for (bool got = false; !got;) {
                        uint8_t type;
                        const uint8_t *payload;
                        size_t len;

                        int k = sbx_frame_reader_fill(&r, sv[1]);
                        ASSERT_TRUE(k > 0 || k == -EAGAIN);
                        ASSERT_LE(r.alloc, limit + 64 * 1024);
                        while (sbx_frame_reader_next(&r, &type, &payload, &len) == 1) {
                                ASSERT_EQ(type, SBX_G_OUTPUT);
                                ASSERT_EQ(len, SBX_GUEST_FRAME_MAX);
                                ASSERT_TRUE(memcmp(payload + 2 * SBX_TLV_HEADER_SIZE + 1, data,
                                                   SBX_GUEST_FRAME_MAX - 2 * SBX_TLV_HEADER_SIZE - 1) == 0);
                                popped++;
                                got = true;
                        }
                }
        }
        ASSERT_EQ(popped, 40);

        /* EOF reads as 0. */
        sv[0] = safe_close(sv[0]);
        ASSERT_EQ(sbx_frame_reader_fill(&r, sv[1]), 0);
        sbx_frame_reader_done(&r);

        /* A frame that never ends: the buffer stops growing at one frame. */
        uint8_t h[SBX_FRAME_HEADER_SIZE];
        make_header(h, SBX_FRAME_MAGIC, SBX_PROTO_VERSION, SBX_G_OUTPUT, 0, SBX_GUEST_FRAME_MAX);
        sbx_frame_reader_init(&r, SBX_GUEST_FRAME_MAX);
        ASSERT_OK(sbx_frame_reader_feed(&r, h, sizeof h));
        for (size_t off = 0; off + 1000 < SBX_GUEST_FRAME_MAX; off += 1000) {
                uint8_t type;
                const uint8_t *payload;
                size_t len;

                ASSERT_OK(sbx_frame_reader_feed(&r, data, 1000));
                ASSERT_EQ(sbx_frame_reader_next(&r, &type, &payload, &len), 0);
                ASSERT_LE(r.alloc, limit + 4096);
        }
        sbx_frame_reader_done(&r);
        sbx_msg_done(&m);
}

int main(void) {
        TEST(test_roundtrip);
        TEST(test_byte_by_byte);
        TEST(test_bad_headers);
        TEST(test_limits);
        TEST(test_truncated_tlv);
        TEST(test_typed_accessors);
        TEST(test_msg_limits);
        TEST(test_bounded);
        return 0;
}
