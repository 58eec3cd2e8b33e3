/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Shared body of the frame fuzz targets: decode the input as a byte stream
 * from a hostile peer, the way sbx-vmworker (guest channel) and sbx-broker
 * (worker channel) do, and check properties the decoder must have:
 *
 *   - every frame's TLVs can be walked, and every typed accessor applied to
 *     every item, without touching memory outside the payload;
 *   - decoding does not depend on how the stream was split into reads:
 *     feeding it all at once and in small uneven chunks yields the same
 *     frames and the same verdict (ok / -EBADMSG);
 *   - with frames popped as they complete, the reader never holds more than
 *     one maximal frame plus its 4 KiB slack. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "fuzz.h"
#include "proto.h"
#include "utf8.h"
#include "validate.h"


/* What the host does with a string item: copy it within a limit and look
 * at it. */
static void fuzz_string_item(uint16_t tag, const uint8_t *v, uint32_t n) {
        size_t max;
        char *s = NULL;

        switch (tag) {
        case SBX_T_LANGUAGE:
        case SBX_T_ACCEL:
                max = 64;
                break;
        case SBX_T_ENV:
                max = SBX_ENV_NAME_MAX + 1 + SBX_ENV_VALUE_MAX;
                break;
        default:
                max = SBX_MESSAGE_MAX;
        }
        if (sbx_tlv_str(v, n, max, &s) < 0)
                return;
        FUZZ_CHECK(strlen(s) == n);

        const char *reason = NULL;
        SbxAccel accel;
        switch (tag) {
        case SBX_T_LANGUAGE: {
                SbxLanguage l = sbx_language_from_string(s);
                FUZZ_CHECK(l == SBX_LANG_INVALID || strcmp(sbx_language_to_string(l), s) == 0);
                break;
        }
        case SBX_T_ACCEL:
                if (sbx_accel_from_string(s, &accel) == 0)
                        FUZZ_CHECK(strcmp(sbx_accel_to_string(accel), s) == 0);
                break;
        case SBX_T_ENV: {
                char *eq = strchr(s, '=');
                if (eq) {
                        *eq = 0;
                        (void) sbx_validate_env_name(s, &reason);
                        (void) sbx_validate_env_value(eq + 1, &reason);
                }
                break;
        }
        default:
                break;
        }
        free(s);
}

/* Program output becomes a D-Bus string: sanitizing must give valid UTF-8
 * without NULs, and be idempotent. */
static void fuzz_data_item(const uint8_t *v, uint32_t n) {
        char *a = utf8_sanitize((const char *) v, n);
        if (!a)
                return;
        size_t la = strlen(a);
        FUZZ_CHECK(la <= 3 * (size_t) n);
        char *b = utf8_sanitize(a, la);
        if (b) {
                FUZZ_CHECK(strcmp(a, b) == 0);
                free(b);
        }
        free(a);
}

static void fuzz_walk_payload(uint8_t type, const uint8_t *payload, size_t len) {
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t n;
        size_t consumed = 0;
        int r;

        (void) type;
        sbx_tlv_iter_init(&it, payload, len);
        while ((r = sbx_tlv_next(&it, &tag, &v, &n)) > 0) {
                uint8_t u8;
                uint32_t u32;
                int32_t i32;
                uint64_t u64;

                /* The item lies inside the payload. */
                FUZZ_CHECK(v >= payload && (size_t) (v - payload) + n <= len);
                consumed += SBX_TLV_HEADER_SIZE + n;

                /* A hostile peer picks the length: every accessor must cope
                 * with every item, whatever its tag. */
                FUZZ_CHECK((sbx_tlv_u8(v, n, &u8) == 0) == (n == 1));
                FUZZ_CHECK((sbx_tlv_u32(v, n, &u32) == 0) == (n == 4));
                FUZZ_CHECK((sbx_tlv_i32(v, n, &i32) == 0) == (n == 4));
                FUZZ_CHECK((sbx_tlv_u64(v, n, &u64) == 0) == (n == 8));

                switch (tag) {
                case SBX_T_MESSAGE:
                case SBX_T_LANGUAGE:
                case SBX_T_ENV:
                case SBX_T_ACCEL:
                        fuzz_string_item(tag, v, n);
                        break;
                case SBX_T_DATA:
                        fuzz_data_item(v, n);
                        break;
                case SBX_T_CODE: {
                        const char *reason = NULL;
                        (void) sbx_validate_code((const char *) v, n, &reason);
                        break;
                }
                default: {
                        /* Unknown or numeric: also try it as a string. */
                        char *s = NULL;
                        if (sbx_tlv_str(v, n, SBX_MESSAGE_MAX, &s) == 0)
                                free(s);
                }
                }
        }
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        FUZZ_CHECK(r < 0 || consumed == len);
}

typedef struct FuzzDigest {
        unsigned frames;
        uint64_t hash;
        int verdict; /* 0, or -EBADMSG once the stream broke */
} FuzzDigest;

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
        const uint8_t *b = p;
        for (size_t i = 0; i < n; i++) {
                h ^= b[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

static void fuzz_digest_frame(FuzzDigest *d, uint8_t type, const uint8_t *payload, size_t len, bool walk) {
        d->frames++;
        d->hash = fnv1a(d->hash, &type, 1);
        d->hash = fnv1a(d->hash, &len, sizeof len);
        d->hash = fnv1a(d->hash, payload, len);
        if (walk)
                fuzz_walk_payload(type, payload, len);
}

/* Pops every complete frame. */
static int fuzz_drain(SbxFrameReader *r, FuzzDigest *d, bool walk) {
        uint8_t type;
        const uint8_t *payload;
        size_t len;
        int k;

        while ((k = sbx_frame_reader_next(r, &type, &payload, &len)) > 0) {
                FUZZ_CHECK(len <= r->max_payload);
                fuzz_digest_frame(d, type, payload, len, walk);
        }
        FUZZ_CHECK(k == 0 || k == -EBADMSG);
        return k;
}

static void fuzz_frames(const uint8_t *data, size_t size, size_t max_payload) {
        SbxFrameReader r;
        FuzzDigest whole = {.hash = UINT64_C(0xcbf29ce484222325)}, chunked = whole;
        const size_t bound = SBX_FRAME_HEADER_SIZE + max_payload + 4096;

        /* Everything in one feed, as after one big read. */
        sbx_frame_reader_init(&r, max_payload);
        if (sbx_frame_reader_feed(&r, data, size) < 0) {
                sbx_frame_reader_done(&r);
                return; /* -ENOMEM */
        }
        whole.verdict = fuzz_drain(&r, &whole, true);
        sbx_frame_reader_done(&r);

        /* Uneven chunks of 1..67 bytes, popping after each. */
        uint32_t x = (uint32_t) size * 2654435761u | 1;
        sbx_frame_reader_init(&r, max_payload);
        for (size_t off = 0; off < size;) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                size_t c = 1 + x % 67;
                if (c > size - off)
                        c = size - off;
                int k = sbx_frame_reader_feed(&r, data + off, c);
                if (k == -EBADMSG) {
                        chunked.verdict = k;
                        break;
                }
                FUZZ_CHECK(k == 0);
                off += c;
                k = fuzz_drain(&r, &chunked, false);
                FUZZ_CHECK(r.alloc <= bound);
                if (k < 0) {
                        chunked.verdict = k;
                        break;
                }
                /* Less than one complete frame stays buffered. */
                FUZZ_CHECK(r.end - r.start < SBX_FRAME_HEADER_SIZE + max_payload);
        }
        sbx_frame_reader_done(&r);

        FUZZ_CHECK(whole.frames == chunked.frames);
        FUZZ_CHECK(whole.hash == chunked.hash);
        FUZZ_CHECK(whole.verdict == chunked.verdict);
}
