/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The protocol of sbx-cache's unix socket (docs/protocols.md, "Cache protocol"): libsbx frames
 * (frame.h) over SOCK_STREAM, one request at a time per connection, fds passed with SCM_RIGHTS
 * on the frame that needs them. Clients: sbx-vmworker (lookup, insert, bad) and sbxctl (list,
 * purge, verify). The daemon checks every client with SO_PEERCRED. */

#define SBX_CACHE_SOCKET_NAME "cache.sock" /* in runtime_dir, when the broker runs sbx-cache itself */
#define SBX_CACHE_FRAME_MAX (64u * 1024u)
#define SBX_CACHE_SETTINGS_MAX 1024u
#define SBX_CACHE_NOTE_MAX 200u
#define SBX_CACHE_PREFIX_MAX 16u /* prefixes per PURGE */

enum {
        /* client -> sbx-cache */
        SBX_C_LOOKUP = 1, /* SETTINGS, MEMORY_MB; fds: kernel, initrd, rootfs, QEMU binary
                           * -> K_HIT (fds: RAM read-only, state read-only) | K_BUILD | K_MISS */
        SBX_C_INSERT = 2, /* KEY, LANGUAGE, QEMU_VERSION, SAVE_MS; fds: RAM, state. Only after
                           * K_BUILD on this connection -> K_DONE | K_ERROR when committed */
        SBX_C_BAD = 3,    /* KEY, GENERATION, NOTE: the entry failed to restore; drop it. No reply. */
        SBX_C_LIST = 4,   /* -> K_ENTRY*, K_DONE */
        SBX_C_PURGE = 5,  /* PREFIX* (none: everything) -> K_DONE (COUNT); admin only */
        SBX_C_VERIFY = 6, /* re-hash every entry's RAM and state, drop bad ones -> K_DONE (COUNT); admin only */

        /* sbx-cache -> client */
        SBX_K_HIT = 33,   /* KEY, GENERATION, LANGUAGE, QEMU_VERSION; fds: RAM, state */
        SBX_K_BUILD = 34, /* KEY, NOTE: no valid snapshot; this connection may INSERT one */
        SBX_K_MISS = 35,  /* KEY, NOTE: no snapshot and no build (another client builds it, ...) */
        SBX_K_DONE = 36,  /* COUNT, NOTE */
        SBX_K_ERROR = 37, /* ERRNO, NOTE */
        SBX_K_ENTRY = 38, /* KEY, LANGUAGE, MEMORY_MB, QEMU_VERSION, DISK_BYTES, APPARENT_BYTES,
                           * STATE_SIZE, LAST_USED, CREATED_USEC, VALID */
};

enum {
        SBX_CT_SETTINGS = 1,  /* str: "name=value\n" lines, everything but the images (SETTINGS_MAX) */
        SBX_CT_MEMORY_MB = 2, /* u32 */
        SBX_CT_KEY = 3,       /* str: 64 lower-case hex digits */
        SBX_CT_LANGUAGE = 4,  /* str */
        SBX_CT_QEMU_VERSION = 5,
        SBX_CT_SAVE_MS = 6,     /* u64 */
        SBX_CT_GENERATION = 7,  /* u64: the entry's creation time, so a late BAD spares a rebuilt entry */
        SBX_CT_NOTE = 8,        /* str (NOTE_MAX) */
        SBX_CT_PREFIX = 9,      /* str: hex key prefix */
        SBX_CT_COUNT = 10,      /* u32 */
        SBX_CT_ERRNO = 11,      /* i32, positive */
        SBX_CT_DISK_BYTES = 12, /* u64 */
        SBX_CT_APPARENT_BYTES = 13,
        SBX_CT_STATE_SIZE = 14,
        SBX_CT_LAST_USED = 15,    /* u64, seconds since the epoch */
        SBX_CT_CREATED_USEC = 16, /* u64 */
        SBX_CT_VALID = 17,        /* u8 */
        SBX_CT_MAX_BYTES = 18,    /* u64: the cache's limit (in K_DONE after LIST) */
        SBX_CT_PATH = 19,         /* str: the cache directory (in K_DONE after LIST) */
};
