/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The pure, lexical half of checking a file path from the host (file
 * operations of session VMs, docs/guest.md). No dependencies beyond libc, so
 * it can be unit tested and fuzzed on its own. Symlinks are the caller's
 * job: it opens the result with openat2(RESOLVE_BENEATH) under the home. */

#include <stddef.h>

#define PATH_CHECK_MAX 4096u          /* == SBX_PATH_MAX */
#define PATH_CHECK_COMPONENT_MAX 255u /* == SBX_PATH_COMPONENT_MAX */

/* Checks `len` bytes of `path` (not NUL-terminated, may contain anything)
 * and writes the normalised relative path, NUL-terminated, to out: components
 * joined by single '/', empty and "." components dropped, "" for the home
 * itself. out_size must be at least len + 1 (PATH_CHECK_MAX + 1 always works).
 *
 * Returns 0, or
 *   -EINVAL        absolute path, a ".." component, or a NUL byte
 *   -ENAMETOOLONG  more than PATH_CHECK_MAX bytes, or a component of more
 *                  than PATH_CHECK_COMPONENT_MAX bytes
 *   -ENOBUFS       out_size too small (a caller bug)
 * On error out is set to "" (when out_size > 0). */
int path_check(const char *path, size_t len, char *out, size_t out_size);

/* Splits a normalised non-empty path in place into its parent ("" for the
 * home) and last component. Returns a pointer to the last component. */
char *path_split_last(char *normalised, const char **ret_parent);
