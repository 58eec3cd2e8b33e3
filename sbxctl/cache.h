/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

/* sbxctl cache ls|purge|verify: asks sbx-cache over its socket (docs/snapshots.md). Listing is for
 * root, the workers' uid and the admin group; purge and verify for root and the admin group. */
int sbxctl_cache(int argc, char **argv);

/* The most recently used valid snapshot of this language: its RAM file's apparent and on-disk size
 * and its device state size, in bytes. -ENOENT when there is none, or sbx-cache's errors. */
int sbxctl_cache_snapshot_size(const char *language, uint64_t *ret_apparent, uint64_t *ret_disk, uint64_t *ret_state);
