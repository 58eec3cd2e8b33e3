/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Parsing of what a client sends to sbx-cache (untrusted: a worker sits next to a guest).
 * Every length is bounded; fuzzed by tests/fuzz/fuzz-cache-request.c. */

#include <stddef.h>
#include <stdint.h>

#include "cache-proto.h"

typedef struct CacheRequest {
        uint8_t type;
        unsigned n_fds; /* fds that come with this type */
        char settings[SBX_CACHE_SETTINGS_MAX + 1];
        uint32_t memory_mb;
        char key[65];
        char language[16];
        char qemu_version[32];
        uint64_t save_ms, generation;
        char note[SBX_CACHE_NOTE_MAX + 1];
        char prefixes[SBX_CACHE_PREFIX_MAX][65];
        size_t n_prefixes;
} CacheRequest;

/* 0, or -EBADMSG with a reason (a static string) for a bad type, item, or missing field. */
int cache_request_parse(uint8_t type, const uint8_t *p, size_t n, CacheRequest *ret, const char **ret_reason);
