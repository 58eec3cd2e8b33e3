/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Framing shared by the guest and worker channels.
 *
 *   header (12 bytes, little endian)
 *     u32 magic   "SBX1"
 *     u8  version SBX_PROTO_VERSION
 *     u8  type    SbxMsgType
 *     u16 flags   0 (reserved)
 *     u32 length  payload bytes, bounded by the reader's max_payload
 *   payload: TLV items
 *     u16 tag, u32 length, value
 *
 * Readers are incremental: feed them whatever a non-blocking read returned,
 * then pop complete frames. A bad magic, version or oversized length is
 * -EBADMSG and the stream is unusable afterwards. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SBX_FRAME_MAGIC 0x31584253u /* "SBX1" */
#define SBX_FRAME_HEADER_SIZE 12u
#define SBX_TLV_HEADER_SIZE 6u

#define SBX_FRAME_READER_FDS_MAX 4u

typedef struct SbxFrameReader {
        uint8_t *buf;
        size_t start, end, alloc;
        size_t max_payload;
        bool broken;
        /* fds received with SCM_RIGHTS by sbx_frame_reader_fill_with_fds(), oldest first */
        int fds[SBX_FRAME_READER_FDS_MAX];
        size_t n_fds;
} SbxFrameReader;

void sbx_frame_reader_init(SbxFrameReader *r, size_t max_payload);
void sbx_frame_reader_done(SbxFrameReader *r);
/* Appends bytes. -ENOMEM, or -EBADMSG once the stream is broken. */
int sbx_frame_reader_feed(SbxFrameReader *r, const void *data, size_t n);
/* One read(2) into the buffer. Returns bytes read (>0), 0 on EOF, -EAGAIN, or -errno. */
int sbx_frame_reader_fill(SbxFrameReader *r, int fd);
/* Like fill, but with recvmsg(): fds passed along (SCM_RIGHTS) are queued in the
 * reader. More than SBX_FRAME_READER_FDS_MAX pending fds is -EMFILE. */
int sbx_frame_reader_fill_with_fds(SbxFrameReader *r, int fd);
/* The oldest received fd (the caller owns it), or -EBADF if there is none. */
int sbx_frame_reader_take_fd(SbxFrameReader *r);
/* 1: a frame is returned (payload valid until the next call on r); 0: need more bytes; -EBADMSG. */
int sbx_frame_reader_next(SbxFrameReader *r, uint8_t *ret_type, const uint8_t **ret_payload, size_t *ret_len);

/* A message under construction. Errors are sticky: check once at sbx_msg_finish(). */
typedef struct SbxMsg {
        uint8_t *data;
        size_t len, alloc;
        int error;
} SbxMsg;

void sbx_msg_begin(SbxMsg *m, uint8_t type);
void sbx_msg_put(SbxMsg *m, uint16_t tag, const void *value, size_t n);
void sbx_msg_put_u8(SbxMsg *m, uint16_t tag, uint8_t v);
void sbx_msg_put_u32(SbxMsg *m, uint16_t tag, uint32_t v);
void sbx_msg_put_i32(SbxMsg *m, uint16_t tag, int32_t v);
void sbx_msg_put_u64(SbxMsg *m, uint16_t tag, uint64_t v);
void sbx_msg_put_str(SbxMsg *m, uint16_t tag, const char *s);
/* Fills in the length. Returns 0 or the first error (-ENOMEM, -E2BIG). */
int sbx_msg_finish(SbxMsg *m);
void sbx_msg_done(SbxMsg *m);
/* finish + write the whole frame to fd (blocking, waits on EAGAIN, no SIGPIPE). */
int sbx_msg_send(SbxMsg *m, int fd);
/* The same over a socket, with pass_fd attached (SCM_RIGHTS) to the frame's first byte. */
int sbx_msg_send_with_fd(SbxMsg *m, int sock, int pass_fd);
/* The same with 1..SBX_FRAME_READER_FDS_MAX fds. */
int sbx_msg_send_with_fds(SbxMsg *m, int sock, const int *fds, size_t n_fds);

typedef struct SbxTlvIter {
        const uint8_t *p;
        size_t left;
} SbxTlvIter;

void sbx_tlv_iter_init(SbxTlvIter *it, const uint8_t *payload, size_t len);
/* 1: an item; 0: end; -EBADMSG: truncated item. */
int sbx_tlv_next(SbxTlvIter *it, uint16_t *ret_tag, const uint8_t **ret_value, uint32_t *ret_len);
/* Typed accessors: -EBADMSG when the length does not match the type. */
int sbx_tlv_u8(const uint8_t *v, uint32_t n, uint8_t *ret);
int sbx_tlv_u32(const uint8_t *v, uint32_t n, uint32_t *ret);
int sbx_tlv_i32(const uint8_t *v, uint32_t n, int32_t *ret);
int sbx_tlv_u64(const uint8_t *v, uint32_t n, uint64_t *ret);
/* Copies a string of at most max bytes without NUL bytes into a new allocation. */
int sbx_tlv_str(const uint8_t *v, uint32_t n, size_t max, char **ret);
