/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/* Returns a NUL-terminated copy of the bytes that is valid UTF-8 and has no
 * NUL bytes: every invalid sequence or NUL becomes U+FFFD. D-Bus strings must
 * be valid UTF-8, while program output is arbitrary bytes. NULL on OOM. */
char *utf8_sanitize(const char *data, size_t n);
