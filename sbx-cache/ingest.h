/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Turning a worker's freshly saved snapshot into a cache entry, and checking an entry's RAM file.
 * Both run in a child process of sbx-cache (they read and write up to the guest memory size). */

#include <stdint.h>

#include "sha256.h"
#include "snapshot-store.h"

#define SNAPSHOT_STATE_MAX (64u << 20) /* the device state is ~100 KB; anything near this is bogus */

/* The RAM file's content hash: SHA-256 over (chunk index, chunk) of every 64 KiB chunk that is not
 * all zeros. It depends on the content only, not on which parts are holes, and reads only the data
 * extents. With dst_fd >= 0 the non-zero chunks are also written there (holes stay holes). */
int ram_content_hash(int src_fd, uint64_t size, int dst_fd, char hex[SHA256_HEX_SIZE]);

/* Copies the worker's ram and state fds into KEY.tmp-PID/, writes meta (m: language, memory_mb,
 * qemu_version, save_ms set; the rest is filled in), fsyncs, and renames it to KEY. Never trusts
 * the sources' sizes beyond m->memory_mb and SNAPSHOT_STATE_MAX. 0 or -errno. */
int snapshot_ingest(SnapshotStore *s, const char *key, SnapshotMeta *m, int ram_fd, int state_fd);

/* Re-hashes KEY's RAM and state files against meta. 1 good, 0 absent, -EBADMSG bad (reason set). */
int snapshot_verify(SnapshotStore *s, const char *key, const char **ret_reason);
