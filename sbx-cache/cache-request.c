/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "frame.h"
#include "cache-request.h"

static bool chars_ok(const uint8_t *v, uint32_t n, const char *extra, bool lower_hex_only) {
        for (uint32_t i = 0; i < n; i++) {
                char c = (char) v[i];
                if (lower_hex_only) {
                        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                                return false;
                } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             (c && strchr(extra, c))))
                        return false;
        }
        return true;
}

static int put_str(char *dst, size_t size, const uint8_t *v, uint32_t n, uint32_t min) {
        if (n < min || n >= size)
                return -EBADMSG;
        memcpy(dst, v, n);
        dst[n] = 0;
        return 0;
}

int cache_request_parse(uint8_t type, const uint8_t *p, size_t n, CacheRequest *ret, const char **ret_reason) {
        CacheRequest *q = ret;
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        int r;

        memset(q, 0, sizeof *q);
        q->type = type;
        *ret_reason = "malformed item";
        switch (type) {
        case SBX_C_LOOKUP:
                q->n_fds = 4;
                break;
        case SBX_C_INSERT:
                q->n_fds = 2;
                break;
        case SBX_C_BAD:
        case SBX_C_LIST:
        case SBX_C_PURGE:
        case SBX_C_VERIFY:
                break;
        default:
                *ret_reason = "unknown request type";
                return -EBADMSG;
        }

        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                switch (tag) {
                case SBX_CT_SETTINGS:
                        /* "name=value" lines of printable ASCII */
                        for (uint32_t i = 0; i < len; i++)
                                if ((v[i] < ' ' || v[i] > '~') && v[i] != '\n')
                                        return -EBADMSG;
                        if (put_str(q->settings, sizeof q->settings, v, len, 1) < 0)
                                return -EBADMSG;
                        break;
                case SBX_CT_MEMORY_MB:
                        if (sbx_tlv_u32(v, len, &q->memory_mb) < 0 || q->memory_mb == 0 || q->memory_mb > (1u << 20))
                                return -EBADMSG;
                        break;
                case SBX_CT_KEY:
                        if (len != 64 || !chars_ok(v, len, "", true) || put_str(q->key, sizeof q->key, v, len, 64) < 0)
                                return -EBADMSG;
                        break;
                case SBX_CT_LANGUAGE:
                        if (!chars_ok(v, len, "", false) || put_str(q->language, sizeof q->language, v, len, 1) < 0)
                                return -EBADMSG;
                        break;
                case SBX_CT_QEMU_VERSION:
                        if (!chars_ok(v, len, ".-+_", false) ||
                            put_str(q->qemu_version, sizeof q->qemu_version, v, len, 1) < 0)
                                return -EBADMSG;
                        break;
                case SBX_CT_SAVE_MS:
                        if (sbx_tlv_u64(v, len, &q->save_ms) < 0)
                                return -EBADMSG;
                        break;
                case SBX_CT_GENERATION:
                        if (sbx_tlv_u64(v, len, &q->generation) < 0)
                                return -EBADMSG;
                        break;
                case SBX_CT_NOTE: {
                        /* Logged: keep it to one line of printable bytes. */
                        uint32_t k = len < SBX_CACHE_NOTE_MAX ? len : SBX_CACHE_NOTE_MAX;
                        for (uint32_t i = 0; i < k; i++)
                                q->note[i] = v[i] >= ' ' && v[i] <= '~' ? (char) v[i] : '?';
                        q->note[k] = 0;
                        break;
                }
                case SBX_CT_PREFIX:
                        if (q->n_prefixes >= SBX_CACHE_PREFIX_MAX || !chars_ok(v, len, "", true) ||
                            put_str(q->prefixes[q->n_prefixes], sizeof q->prefixes[0], v, len, 1) < 0)
                                return -EBADMSG;
                        q->n_prefixes++;
                        break;
                default:
                        break; /* unknown items: ignored (newer clients) */
                }
        }
        if (r < 0) {
                *ret_reason = "truncated item";
                return -EBADMSG;
        }

        *ret_reason = "a required item is missing";
        switch (type) {
        case SBX_C_LOOKUP:
                if (!q->settings[0] || q->memory_mb == 0)
                        return -EBADMSG;
                break;
        case SBX_C_INSERT:
                if (!q->key[0] || !q->language[0])
                        return -EBADMSG;
                if (!q->qemu_version[0])
                        strcpy(q->qemu_version, "unknown");
                break;
        case SBX_C_BAD:
                if (!q->key[0])
                        return -EBADMSG;
                break;
        }
        return 0;
}
