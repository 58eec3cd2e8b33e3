/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cache-client.h"
#include "fdio.h"
#include "macro.h"

int sbx_cache_socket_path(const char *cache_socket, const char *runtime_dir, char *buf, size_t size) {
        int n;
        if (cache_socket && *cache_socket)
                n = snprintf(buf, size, "%s", cache_socket);
        else
                n = snprintf(buf, size, "%s/" SBX_CACHE_SOCKET_NAME, runtime_dir ?: "/run/sbx");
        return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

int sbx_cache_connect(const char *path, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct ucred cred;
        socklen_t len = sizeof cred;

        int r = unix_connect(path, &fd);
        if (r < 0)
                return r;
        /* Snapshots become guest memory: only root's (systemd's) socket or a daemon of ours. */
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return -errno;
        if (cred.uid != 0 && cred.uid != geteuid())
                return -EPERM;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

void sbx_cache_copy_str(const uint8_t *v, uint32_t n, char *buf, size_t size) {
        size_t k = MIN((size_t) n, size - 1);
        memcpy(buf, v, k);
        buf[k] = 0;
        /* Replies are printed: no control characters. */
        for (size_t i = 0; i < k; i++)
                if ((unsigned char) buf[i] < ' ' || buf[i] == 0x7f)
                        buf[i] = '?';
}

int sbx_cache_read_reply(int fd, SbxFrameReader *r, int timeout_ms, uint8_t *ret_type, const uint8_t **ret_payload,
                         size_t *ret_len) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t) timeout_ms * 1000u;
        int k;

        for (;;) {
                k = sbx_frame_reader_next(r, ret_type, ret_payload, ret_len);
                if (k != 0)
                        return k;
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = fd, .events = POLLIN};
                k = poll(&p, 1, (int) ((deadline - now + 999) / 1000));
                if (k < 0 && errno != EINTR)
                        return -errno;
                if (k <= 0)
                        continue;
                k = sbx_frame_reader_fill_with_fds(r, fd);
                if (k == 0)
                        return -ECONNRESET;
                if (k < 0 && k != -EAGAIN && k != -EINTR)
                        return k;
        }
}

static void close_reader_fds(SbxFrameReader *r) {
        for (int f; (f = sbx_frame_reader_take_fd(r)) >= 0;)
                safe_close(f);
}

int sbx_cache_lookup(int fd, const char *settings, uint32_t memory_mb, const int image_fds[4], SbxCacheLookup *ret) {
        SbxFrameReader rd;
        SbxMsg m;
        uint8_t type;
        const uint8_t *p;
        size_t n;
        int r;

        *ret = (SbxCacheLookup){.ram_fd = -EBADF, .state_fd = -EBADF};
        sbx_msg_begin(&m, SBX_C_LOOKUP);
        sbx_msg_put_str(&m, SBX_CT_SETTINGS, settings);
        sbx_msg_put_u32(&m, SBX_CT_MEMORY_MB, memory_mb);
        r = sbx_msg_send_with_fds(&m, fd, image_fds, 4);
        sbx_msg_done(&m);
        if (r < 0)
                return r;

        sbx_frame_reader_init(&rd, SBX_CACHE_FRAME_MAX);
        r = sbx_cache_read_reply(fd, &rd, SBX_CACHE_TIMEOUT_MS, &type, &p, &n);
        if (r < 0)
                goto out;
        if (type != SBX_K_HIT && type != SBX_K_BUILD && type != SBX_K_MISS && type != SBX_K_ERROR) {
                r = -EBADMSG;
                goto out;
        }
        SbxTlvIter it;
        uint16_t tag;
        const uint8_t *v;
        uint32_t len;
        sbx_tlv_iter_init(&it, p, n);
        while ((r = sbx_tlv_next(&it, &tag, &v, &len)) > 0) {
                if (tag == SBX_CT_KEY && len == 64)
                        sbx_cache_copy_str(v, len, ret->key, sizeof ret->key);
                else if (tag == SBX_CT_GENERATION)
                        (void) sbx_tlv_u64(v, len, &ret->generation);
                else if (tag == SBX_CT_LANGUAGE)
                        sbx_cache_copy_str(v, len, ret->language, sizeof ret->language);
                else if (tag == SBX_CT_QEMU_VERSION)
                        sbx_cache_copy_str(v, len, ret->qemu_version, sizeof ret->qemu_version);
                else if (tag == SBX_CT_NOTE)
                        sbx_cache_copy_str(v, len, ret->note, sizeof ret->note);
        }
        if (r < 0)
                goto out;
        if (type == SBX_K_ERROR) {
                r = -EPROTO;
                goto out;
        }
        if (type != SBX_K_MISS && strlen(ret->key) != 64) {
                r = -EBADMSG;
                goto out;
        }
        if (type == SBX_K_HIT) {
                ret->ram_fd = sbx_frame_reader_take_fd(&rd);
                ret->state_fd = sbx_frame_reader_take_fd(&rd);
                if (ret->ram_fd < 0 || ret->state_fd < 0) {
                        ret->ram_fd = safe_close(ret->ram_fd);
                        ret->state_fd = safe_close(ret->state_fd);
                        r = -EBADMSG;
                        goto out;
                }
        }
        ret->kind = type;
        r = 0;
out:
        close_reader_fds(&rd);
        sbx_frame_reader_done(&rd);
        return r;
}

int sbx_cache_insert(int fd, const char *key, const char *language, const char *qemu_version, uint64_t save_ms,
                     int ram_fd, int state_fd) {
        SbxMsg m;
        int fds[2] = {ram_fd, state_fd};

        sbx_msg_begin(&m, SBX_C_INSERT);
        sbx_msg_put_str(&m, SBX_CT_KEY, key);
        sbx_msg_put_str(&m, SBX_CT_LANGUAGE, language);
        sbx_msg_put_str(&m, SBX_CT_QEMU_VERSION, qemu_version);
        sbx_msg_put_u64(&m, SBX_CT_SAVE_MS, save_ms);
        int r = sbx_msg_send_with_fds(&m, fd, fds, 2);
        sbx_msg_done(&m);
        return r;
}

int sbx_cache_report_bad(int fd, const char *key, uint64_t generation, const char *note) {
        SbxMsg m;

        sbx_msg_begin(&m, SBX_C_BAD);
        sbx_msg_put_str(&m, SBX_CT_KEY, key);
        sbx_msg_put_u64(&m, SBX_CT_GENERATION, generation);
        char buf[SBX_CACHE_NOTE_MAX + 1];
        snprintf(buf, sizeof buf, "%s", note);
        sbx_msg_put_str(&m, SBX_CT_NOTE, buf);
        int r = sbx_msg_send(&m, fd);
        sbx_msg_done(&m);
        return r;
}
