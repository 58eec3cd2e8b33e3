/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Client side of sbx-cache's socket (cache-proto.h, docs/protocols.md), for the worker and
 * sbxctl. Blocking calls with a deadline; the worker makes the lookup before its seccomp filter
 * and keeps the connection for INSERT and BAD, which are plain sends. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache-proto.h"
#include "frame.h"

#define SBX_CACHE_TIMEOUT_MS 10000

/* The socket: cache_socket from the config, else runtime_dir/cache.sock (the broker's own
 * sbx-cache). -ENAMETOOLONG if it does not fit. */
int sbx_cache_socket_path(const char *cache_socket, const char *runtime_dir, char *buf, size_t size);

/* Connects and checks that the peer is root or our own uid (systemd's listening socket, or a
 * daemon of ours). -ENOENT / -ECONNREFUSED when sbx-cache is not running, -EPERM for another peer. */
int sbx_cache_connect(const char *path, int *ret_fd);

typedef struct SbxCacheLookup {
        uint8_t kind; /* SBX_K_HIT, SBX_K_BUILD or SBX_K_MISS */
        char key[65];
        uint64_t generation;
        char language[16];
        char qemu_version[32];
        char note[SBX_CACHE_NOTE_MAX + 1];
        int ram_fd, state_fd; /* SBX_K_HIT: read-only; the caller owns them */
} SbxCacheLookup;

/* LOOKUP: settings text plus the four image fds (kernel, initrd, rootfs, QEMU binary).
 * 0 with *ret filled, or -errno (-EPROTO: a K_ERROR, its note in ret->note). */
int sbx_cache_lookup(int fd, const char *settings, uint32_t memory_mb, const int image_fds[4], SbxCacheLookup *ret);

/* INSERT (after K_BUILD on this connection) and BAD: sends only. */
int sbx_cache_insert(int fd, const char *key, const char *language, const char *qemu_version, uint64_t save_ms,
                     int ram_fd, int state_fd);
int sbx_cache_report_bad(int fd, const char *key, uint64_t generation, const char *note);

/* Reads one reply frame into r (blocking, until the deadline). 1 with the frame, -ECONNRESET on
 * EOF, -ETIMEDOUT, -EBADMSG. The payload is valid until the next call on r. */
int sbx_cache_read_reply(int fd, SbxFrameReader *r, int timeout_ms, uint8_t *ret_type, const uint8_t **ret_payload,
                         size_t *ret_len);

/* Copies a string item into buf (truncating), for replies. */
void sbx_cache_copy_str(const uint8_t *v, uint32_t n, char *buf, size_t size);
