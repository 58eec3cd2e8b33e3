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
        bool have_code = false, have_exec = false, have_timed_out = false, have_reset = false;
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
                } else if (tag == SBX_T_STATE_RESET) {
                        uint8_t t = 0;
                        r = tag_once(&have_reset, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u8(v, len, &t);
                        if (r >= 0 && t > 1) {
                                *ret_reason = "EXIT with a STATE_RESET flag other than 0 or 1";
                                r = -EBADMSG;
                        }
                        e.state_reset = t == 1;
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

int guest_parse_file_result(const uint8_t *p, size_t n, GuestFileResult *ret, const char **ret_reason) {
        _cleanup_free_ char *message = NULL;
        GuestFileResult f = {};
        bool have_status = false, have_size = false, have_message = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret_reason = "malformed FILE_RESULT";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_FILE_STATUS) {
                        uint32_t s = 0;
                        r = tag_once(&have_status, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u32(v, len, &s);
                        if (r >= 0 && s > SBX_FILE_TOO_LARGE) {
                                *ret_reason = "FILE_RESULT with an unknown status";
                                r = -EBADMSG;
                        }
                        f.status = (SbxFileStatus) s;
                } else if (tag == SBX_T_SIZE) {
                        r = tag_once(&have_size, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u64(v, len, &f.size);
                } else if (tag == SBX_T_MESSAGE) {
                        r = tag_once(&have_message, ret_reason);
                        if (r >= 0 && len > SBX_MESSAGE_MAX) {
                                *ret_reason = "FILE_RESULT message longer than 4 KiB";
                                r = -EBADMSG;
                        }
                        if (r >= 0) {
                                message = text_sanitize((const char *) v, len, SBX_MESSAGE_MAX / 2);
                                if (!message)
                                        return -ENOMEM;
                        }
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_status) {
                *ret_reason = "FILE_RESULT without a status";
                return -EBADMSG;
        }
        f.message = TAKE_PTR(message);
        *ret = f;
        return 0;
}

void guest_file_result_done(GuestFileResult *r) {
        free(r->message);
        r->message = NULL;
}

int guest_parse_file_data(const uint8_t *p, size_t n, GuestFileData *ret, const char **ret_reason) {
        GuestFileData d = {};
        bool have_data = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret_reason = "malformed FILE_DATA";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_DATA) {
                        r = tag_once(&have_data, ret_reason);
                        if (r >= 0 && len > SBX_OUTPUT_CHUNK_MAX) {
                                *ret_reason = "FILE_DATA chunk larger than 32 KiB";
                                r = -EBADMSG;
                        }
                        d.data = v;
                        d.len = len;
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_data) {
                *ret_reason = "FILE_DATA without data";
                return -EBADMSG;
        }
        *ret = d;
        return 0;
}

int guest_parse_list_entry(const uint8_t *p, size_t n, GuestListEntry *ret, const char **ret_reason) {
        bool have_name = false, have_dir = false, have_size = false;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        *ret = (GuestListEntry) {};
        *ret_reason = "malformed LIST_ENTRY";
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_T_NAME) {
                        r = tag_once(&have_name, ret_reason);
                        if (r >= 0 && (len == 0 || len > SBX_PATH_COMPONENT_MAX)) {
                                *ret_reason = "LIST_ENTRY name empty or longer than 255 bytes";
                                r = -EBADMSG;
                        } else if (r >= 0 && (memchr(v, 0, len) || memchr(v, '/', len))) {
                                *ret_reason = "LIST_ENTRY name with a NUL byte or a slash";
                                r = -EBADMSG;
                        } else if (r >= 0 && ((len == 1 && v[0] == '.') || (len == 2 && v[0] == '.' && v[1] == '.'))) {
                                *ret_reason = "LIST_ENTRY for . or ..";
                                r = -EBADMSG;
                        }
                        if (r >= 0) {
                                memcpy(ret->name, v, len);
                                ret->name[len] = 0;
                        }
                } else if (tag == SBX_T_IS_DIR) {
                        uint8_t d = 0;
                        r = tag_once(&have_dir, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u8(v, len, &d);
                        if (r >= 0 && d > 1) {
                                *ret_reason = "LIST_ENTRY with an IS_DIR flag other than 0 or 1";
                                r = -EBADMSG;
                        }
                        ret->is_dir = d == 1;
                } else if (tag == SBX_T_SIZE) {
                        r = tag_once(&have_size, ret_reason);
                        if (r >= 0)
                                r = sbx_tlv_u64(v, len, &ret->size);
                }
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (!have_name) {
                *ret_reason = "LIST_ENTRY without a name";
                return -EBADMSG;
        }
        /* Any bytes but NUL and '/' make a valid file name; only some of them may leave the worker. */
        _cleanup_free_ char *clean = text_sanitize(ret->name, strlen(ret->name), SBX_PATH_COMPONENT_MAX * 3);
        if (!clean)
                return -ENOMEM;
        ret->printable = strcmp(clean, ret->name) == 0;
        return 0;
}

/* Session environment entries that the exec does not replace come first, then the exec's own. */
static int build_exec(const RunRequest *req, SbxLanguage language, char *const *under, size_t n_under,
                      bool session, SbxMsg *ret) {
        uint8_t seed[GUEST_SEED_SIZE];
        struct timespec ts;
        size_t n_env = req->n_env;
        SbxMsg m;

        for (size_t i = 0; i < n_under; i++) {
                size_t name_len = strcspn(under[i], "=");
                bool replaced = false;
                for (size_t j = 0; j < req->n_env && !replaced; j++)
                        replaced = strncmp(req->env[j], under[i], name_len + 1) == 0;
                if (!replaced)
                        n_env++;
        }
        if (n_env > SBX_ENV_COUNT_MAX)
                return -E2BIG;

        if (getrandom(seed, sizeof seed, 0) != (ssize_t) sizeof seed)
                return errno > 0 ? -errno : -EIO;
        clock_gettime(CLOCK_REALTIME, &ts);

        sbx_msg_begin(&m, SBX_H_EXEC);
        sbx_msg_put_str(&m, SBX_T_LANGUAGE, sbx_language_to_string(language));
        sbx_msg_put(&m, SBX_T_CODE, req->code, req->code_len);
        sbx_msg_put_u32(&m, SBX_T_TIMEOUT_MS, req->timeout_ms);
        for (size_t i = 0; i < n_under; i++) {
                size_t name_len = strcspn(under[i], "=");
                bool replaced = false;
                for (size_t j = 0; j < req->n_env && !replaced; j++)
                        replaced = strncmp(req->env[j], under[i], name_len + 1) == 0;
                if (!replaced)
                        sbx_msg_put_str(&m, SBX_T_ENV, under[i]);
        }
        for (size_t i = 0; i < req->n_env; i++)
                sbx_msg_put_str(&m, SBX_T_ENV, req->env[i]);
        if (session)
                sbx_msg_put_u8(&m, SBX_T_SESSION, 1);
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

int guest_build_exec(const RunRequest *session, const RunRequest *exec, SbxMsg *ret) {
        return build_exec(exec, session->language, session->env, session->n_env, !session->oneshot, ret);
}

int guest_build_path_request(uint8_t type, const char *path, uint32_t mode, SbxMsg *ret) {
        SbxMsg m;

        sbx_msg_begin(&m, type);
        sbx_msg_put_str(&m, SBX_T_PATH, path);
        if (type == SBX_H_FILE_WRITE)
                sbx_msg_put_u32(&m, SBX_T_MODE, mode);
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
        case SBX_G_FILE_RESULT:
                return "FILE_RESULT";
        case SBX_G_FILE_DATA:
                return "FILE_DATA";
        case SBX_G_LIST_ENTRY:
                return "LIST_ENTRY";
        default:
                return "unknown";
        }
}
