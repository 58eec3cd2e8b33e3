/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "guest-channel.h"
#include "macro.h"
#include "text-util.h"
#include "validate.h"

#define GUEST_SEED_SIZE 32u

/* Marks a tag as seen; a second occurrence is a violation. */
static int tag_once(bool *seen, const char **ret_reason) {
        if (*seen) {
                *ret_reason = "a field appears twice";
                return -EBADMSG;
        }
        *seen = true;
        return 0;
}

int guest_parse_hello(const uint8_t *p, size_t n, GuestHello *ret, const char **ret_reason) {
        GuestHello h = {};
        bool have_version = false, have_uptime = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret_reason = "malformed HELLO";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_VERSION) {
                        r = tag_once(&have_version, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u32(v, len, &h.version);
                } else if (tag == SBX_T_UPTIME_MS) {
                        r = tag_once(&have_uptime, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u64(v, len, &h.uptime_ms);
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_version) {
                *ret_reason = "HELLO without a protocol version";
                return -EBADMSG;
        }
        if (h.version != SBX_PROTO_VERSION) {
                *ret_reason = "the agent speaks another protocol version";
                return -EPROTONOSUPPORT;
        }
        *ret = h;
        return 0;
}

int guest_parse_output(const uint8_t *p, size_t n, GuestOutput *ret, const char **ret_reason) {
        GuestOutput o = {};
        bool have_stream = false, have_data = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret_reason = "malformed OUTPUT";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_STREAM) {
                        uint8_t s = 0;
                        r = tag_once(&have_stream, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u8(v, len, &s);
                        if (r >= 0 && s != SBX_STREAM_STDOUT && s != SBX_STREAM_STDERR) {
                                *ret_reason = "OUTPUT for an unknown stream";
                                r = -EBADMSG;
                        }
                        o.stream = (SbxStream) s;
                } else if (tag == SBX_T_DATA) {
                        r = tag_once(&have_data, ret_reason);
                        if (r >= 0 && len > SBX_OUTPUT_CHUNK_MAX) {
                                *ret_reason = "OUTPUT chunk larger than 32 KiB";
                                r = -EBADMSG;
                        }
                        o.data = v;
                        o.len = len;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_stream || !have_data) {
                *ret_reason = "OUTPUT without stream or data";
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

int guest_parse_exit(const uint8_t *p, size_t n, GuestExit *ret, const char **ret_reason) {
        GuestExit e = {};
        bool have_code = false, have_exec = false, have_timed_out = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret_reason = "malformed EXIT";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_EXIT_CODE) {
                        r = tag_once(&have_code, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_i32(v, len, &e.exit_code);
                } else if (tag == SBX_T_EXEC_MS) {
                        r = tag_once(&have_exec, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u64(v, len, &e.exec_ms);
                } else if (tag == SBX_T_TIMED_OUT) {
                        uint8_t t = 0;
                        r = tag_once(&have_timed_out, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u8(v, len, &t);
                        if (r >= 0 && t > 1) {
                                *ret_reason = "EXIT with a TIMED_OUT flag other than 0 or 1";
                                r = -EBADMSG;
                        }
                        e.timed_out = t == 1;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_code) {
                *ret_reason = "EXIT without an exit code";
                return -EBADMSG;
        }
        *ret = e;
        return 0;
}

int guest_parse_error(const uint8_t *p, size_t n, char **ret_message, const char **ret_reason) {
        _cleanup_free_ char *message = NULL;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret_reason = "malformed ERROR";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag != SBX_T_MESSAGE)
                        continue;
                if (message) {
                        *ret_reason = "a field appears twice";
                        return -EBADMSG;
                }
                if (len > SBX_MESSAGE_MAX) {
                        *ret_reason = "ERROR message longer than 4 KiB";
                        return -EBADMSG;
                }
                message = text_sanitize((const char *) v, len, SBX_MESSAGE_MAX / 2);
                if (!message)
                        return -ENOMEM;
        }
        if (r < 0)
                return r;
        *ret_message = TAKE_PTR(message);
        return 0;
}

int guest_build_exec(const RunRequest *req, SbxMsg *ret) {
        uint8_t seed[GUEST_SEED_SIZE];
        struct timespec ts;
        SbxMsg m;

        if (getrandom(seed, sizeof seed, 0) != (ssize_t) sizeof seed)
                return errno > 0 ? -errno : -EIO;
        clock_gettime(CLOCK_REALTIME, &ts);

        sbx_msg_begin(&m, SBX_H_EXEC);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, sbx_language_to_string(req->language));
        sbx_msg_put(&m, SBX_T_CODE, req->code, req->code_len);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, req->timeout_ms);
        for (size_t i = 0; i < req->n_env; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, req->env[i]);
        sbx_msg_put_u64(&m, SBX_T_CLOCK_NS, (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec);
        sbx_msg_put(&m, SBX_T_SEED, seed, sizeof seed);
        explicit_bzero(seed, sizeof seed);

        int r = sbx_msg_finish(&m);
        if (r < 0) {
                sbx_msg_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}

const char *guest_msg_type_to_string(uint8_t type) {
        switch (type) {
        case SBX_G_HELLO:
                return "HELLO";
        case SBX_G_OUTPUT:
                return "OUTPUT";
        case SBX_G_EXIT:
                return "EXIT";
        case SBX_G_ERROR:
                return "ERROR";
        case SBX_G_PONG:
                return "PONG";
        default:
                return "unknown";
        }
}
