/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Domain names and allowlist patterns. A pattern is an exact name
 * ("example.com") or "*." followed by a name ("*.example.com"), which matches
 * every name below it but not the name itself. Names are compared in their
 * normal form: lower case, no trailing dot. */

#define DOMAIN_NAME_MAX 253
#define DOMAIN_LABEL_MAX 63

/* Validates a textual name (letters, digits, '-', '_', labels of 1-63
 * characters, at most 253 in all; one trailing dot allowed) and writes its
 * normal form to out. Returns its length or -EINVAL. */
int domain_normalize(const char *in, size_t n, char out[static DOMAIN_NAME_MAX + 1]);

/* Normalises a pattern in place ("*.Example.COM." -> "*.example.com").
 * A bare "*", a "*" inside a name and a wildcard over a single label (a
 * top-level domain, "*.com") are refused. Returns 0 or -EINVAL. */
int domain_pattern_normalize(const char *in, char out[static DOMAIN_NAME_MAX + 3]);

/* Both arguments must be in normal form. */
bool domain_pattern_match(const char *pattern, const char *name);
