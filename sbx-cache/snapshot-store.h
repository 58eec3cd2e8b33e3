/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The L1 snapshot cache on disk (docs/snapshots.md), owned by sbx-cache: only the daemon opens it
 * by path, clients get fds.
 *
 *   CACHE_DIR/                     0700, owned by sbx-cache's user
 *     .lock                        flock(): held by the running daemon
 *     KEY/{ram,state,meta}         a committed snapshot (KEY: 64 hex digits, snapshot_key()); 0644
 *     KEY.tmp-N/                   an insert in progress (renamed to KEY when complete)
 *     KEY.drop-PID-N/              an entry being removed
 *     inputs                       content hashes of the images, by device, inode, size and mtime
 *
 * meta is a small text file: see snapshot_meta_format(). A snapshot is valid when meta parses, has
 * this format version and the expected key, the ram file's size is the guest memory size, and the
 * state file has the recorded size and SHA-256. Anything else is dropped (renamed away, removed)
 * and rebuilt, never restored. The RAM file's hash (ram_sha256) is checked by `sbxctl cache
 * verify`: 256 MiB per lookup would be too slow. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sha256.h"

#define SNAPSHOT_FORMAT_VERSION 4u /* 2 had a virtio-balloon device, 3 none; 4 adds ram_sha256 (sbx-cache) */
#define SNAPSHOT_META_MAX 4096u
#define SNAPSHOT_KEY_SIZE SHA256_HEX_SIZE

typedef struct SnapshotMeta {
        unsigned version;
        char key[SNAPSHOT_KEY_SIZE];
        char language[16];
        uint32_t memory_mb;
        uint64_t ram_size;
        uint64_t state_size;
        char state_sha256[SHA256_HEX_SIZE];
        char ram_sha256[SHA256_HEX_SIZE]; /* ram_content_hash() */
        char qemu_version[32];
        uint64_t created_usec; /* CLOCK_REALTIME */
        uint64_t save_ms;      /* how long the migration took */
} SnapshotMeta;

/* Parses meta (untrusted: it is a file on disk). 0 or -EBADMSG with a reason. */
int snapshot_meta_parse(const char *text, size_t n, SnapshotMeta *ret, const char **ret_reason);
/* The text of meta; -ENOBUFS if size is too small. Returns the length. */
int snapshot_meta_format(const SnapshotMeta *m, char *buf, size_t size);

/* The cache directory (created 0700 with its parents if missing) as an open fd and its path. */
#define SNAPSHOT_INPUTS_MEMO 16u

typedef struct SnapshotStore {
        int dir_fd;
        char path[512];
        /* The last image hashes looked up, so that a lookup reads no file for them (the daemon is
         * long-lived; "inputs" keeps them across restarts). Oldest replaced first. */
        struct {
                char ident[96]; /* device:inode size mtime */
                char hex[SHA256_HEX_SIZE];
        } memo[SNAPSHOT_INPUTS_MEMO];
        size_t n_memo, next_memo;
} SnapshotStore;
#define SNAPSHOT_STORE_NULL ((SnapshotStore){.dir_fd = -EBADF})
int snapshot_store_open(const char *path, bool create, SnapshotStore *ret);
void snapshot_store_close(SnapshotStore *s);

/* The cache key: SHA-256 over the format version, the content hashes of the four images (kernel,
 * initrd, rootfs, QEMU binary; fds from the client, hashes cached in "inputs"), and the settings
 * text (every other VM setting, see docs/snapshots.md). */
int snapshot_key(SnapshotStore *s, const int image_fds[4], const char *settings, char key[SNAPSHOT_KEY_SIZE]);

/* Checks KEY/ (see above; memory_mb 0: any size). 1 valid (meta in *ret_meta), 0 absent, -EBADMSG invalid (reason set).
 */
int snapshot_validate(SnapshotStore *s, const char *key, uint32_t memory_mb, SnapshotMeta *ret_meta,
                      const char **ret_reason);
/* Renames KEY/ (or any entry name) away and removes it. */
int snapshot_drop(SnapshotStore *s, const char *name);

/* One entry, for eviction and `sbxctl cache ls`. */
typedef struct SnapshotEntry {
        char name[80];
        bool valid_meta;
        SnapshotMeta meta;
        uint64_t disk_bytes;     /* allocated blocks of ram + state + meta */
        uint64_t apparent_bytes; /* their sizes */
        int64_t last_used_sec;   /* meta's mtime: touched at every restore */
} SnapshotEntry;
/* Committed entries (KEY/ directories), oldest use first. *ret is malloc()ed. */
int snapshot_list(SnapshotStore *s, SnapshotEntry **ret, size_t *ret_n);
/* Drops least recently used entries until their disk use plus need_bytes fits max_bytes. Entries
 * for which busy() says so are skipped. Returns the number dropped. */
int snapshot_evict(SnapshotStore *s, uint64_t max_bytes, uint64_t need_bytes,
                   bool (*busy)(const char *key, void *userdata), void *userdata);
/* Removes what an earlier daemon left: KEY.tmp-* and KEY.drop-* directories (call with .lock held). */
void snapshot_remove_leftovers(SnapshotStore *s);
