/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* sbxctl cache ls|purge: the L1 snapshot cache in state_dir/cache/l1 (docs/snapshots.md). Works on
 * the directory directly (no bus): run it as the user that owns the cache (root by default). */
int sbxctl_cache(int argc, char **argv);
