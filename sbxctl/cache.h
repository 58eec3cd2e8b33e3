/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* sbxctl cache ls|purge: the L1 snapshot cache in state_dir/cache/l1 (docs/snapshots.md). Works on
 * the directory directly (no bus): run it as the user that owns the cache (root by default). */
int sbxctl_cache(int argc, char **argv);

/* The most recently used valid snapshot of this language in the cache (SBX_CONFIG's state_dir):
 * its RAM file's apparent and on-disk size and its device state size, in bytes. -ENOENT when
 * there is none (or the cache is not readable by this user). */
#include <stdint.h>
int sbxctl_cache_snapshot_size(const char *language, uint64_t *ret_apparent, uint64_t *ret_disk,
                               uint64_t *ret_state);
